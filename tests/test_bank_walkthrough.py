"""The lost-card report of the shipped bank bot, in English and Russian, word for word: a card named
by a synonym, a past weekday, a correction at the read-back, a typo in a negated choice, a change of
date, and an elliptical follow-up ("and my credit card too?") that reuses the other values."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from rejoinder.bots.frames.bot import EXAMPLES, FrameBot, _start_demo_backend, build_nlu
from rejoinder.bots.frames.demo_backend import free_port
from rejoinder.bots.frames.domain import load_domain
from rejoinder.dialogue import Dialogue, Message

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # Thursday: "Monday" of a loss is 23 November

ENGLISH = [
    ("hi, I lost my card", "Which card did you lose: your debit card or your credit card?"),
    (
        "it was my visa, I lost it on Monday in Paris",
        "Report your debit card lost on Monday 23 November 2026 in Paris and block it? Replacement: new card.",
    ),
    (
        "no, it was in Rome",
        "Report your debit card lost on Monday 23 November 2026 in Rome and block it? Replacement: new card.",
    ),
    (
        "withuot a replacement",
        "Report your debit card lost on Monday 23 November 2026 in Rome and block it? Replacement: no new card.",
    ),
    (
        "no, change the date: on Friday",
        "Report your debit card lost on Friday 20 November 2026 in Rome and block it? Replacement: no new card.",
    ),
    ("yes", "Done: your debit card is blocked. Reference {ref}. Replacement: no new card."),
    (
        "and my credit card too?",
        "Report your credit card lost on Friday 20 November 2026 in Rome and block it? Replacement: no new card.",
    ),
    ("yes", "Done: your credit card is blocked. Reference {ref}. Replacement: no new card."),
]

RUSSIAN = [
    ("здравствуйте, я потерял карту", "Какую карту вы потеряли: дебетовую или кредитную?"),
    (
        "кредитку, в понедельник в Казани",
        "Проверим: кредитная карта, потеряна 23 ноября 2026 (город: Казань), перевыпуск: перевыпустить. "
        "Заблокировать её и оформить заявление о потере?",
    ),
    (
        "нет, это было во вторник",
        "Проверим: кредитная карта, потеряна 24 ноября 2026 (город: Казань), перевыпуск: перевыпустить. "
        "Заблокировать её и оформить заявление о потере?",
    ),
    (
        "без перевыпуска",
        "Проверим: кредитная карта, потеряна 24 ноября 2026 (город: Казань), перевыпуск: без перевыпуска. "
        "Заблокировать её и оформить заявление о потере?",
    ),
    ("да", "Готово: карта заблокирована. Номер заявления {ref}. Перевыпуск: без перевыпуска."),
    (
        "а дебетовую тоже?",
        "Проверим: дебетовая карта, потеряна 24 ноября 2026 (город: Казань), перевыпуск: без перевыпуска. "
        "Заблокировать её и оформить заявление о потере?",
    ),
    ("да", "Готово: карта заблокирована. Номер заявления {ref}. Перевыпуск: без перевыпуска."),
]


@pytest.fixture(scope="module")
def port():
    return free_port()


def bank_bot(name: str, port: int, home) -> FrameBot:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REJOINDER_HOME", str(home))
        domain = _start_demo_backend(load_domain(EXAMPLES / name / "domain.yaml"), port)
        return FrameBot(domain, build_nlu(domain, embedder="hashing", ner=False))


@pytest.mark.parametrize(("name", "script"), [("bank_en", ENGLISH), ("bank_ru", RUSSIAN)])
def test_a_lost_card_is_reported_with_corrections_and_ellipsis(name, script, port, tmp_path):
    bot = bank_bot(name, port, tmp_path)
    stats = f"http://127.0.0.1:{port}/_stats"
    before = httpx.get(stats).json()["done"].get("lost_card", 0)
    dialogue = Dialogue(bot="bank", conversation_id=f"walk-{name}")
    submitted = []
    for said, expected in script:
        dialogue.messages.append(Message("user", said, created_at=NOW))
        reply = bot.respond(dialogue)
        dialogue.messages.append(Message("assistant", reply.text, meta=reply.meta))
        if reply.meta["action"] == "submitted":
            reference = dialogue.state["last"]["outcome"]["result"]["reference"]
            submitted.append(dict(dialogue.state["last"]["slots"]))
            expected = expected.format(ref=reference)
        assert reply.text == expected, said
    assert httpx.get(stats).json()["done"].get("lost_card", 0) - before == 2  # two reports, each once
    first, second = ({k: v["value"] for k, v in s.items()} for s in submitted)
    assert first["when"] == second["when"] and first["where"] == second["where"]
    assert first["card"] != second["card"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("language", "lines", "done"),
    [
        ("en", ["I lost my visa on Monday in Paris", "no, it was on Tuesday", "without a replacement", "yes"], "Done:"),
        ("ru", ["потерял кредитку в понедельник в Казани", "нет, во вторник", "без перевыпуска", "да"], "Готово:"),
    ],
)
def test_the_cli_bank_bot_with_its_default_nlu_files_the_report(language, lines, done, tmp_path):
    """`rejoinder chat --bot bank` as users run it: a real process, the MiniLM intent classifier."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "REJOINDER_HOME": str(tmp_path / "home"),
        "REJOINDER_DB_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "rejoinder", "chat", "--bot", "bank", "-o", f"language={language}"]
    run = subprocess.run(command, input="\n".join(lines) + "\n", capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    replies = run.stdout.strip().splitlines()[1:]  # after the greeting
    assert len(replies) == len(lines)
    monday, tuesday, final_readback, reported = replies
    assert monday != tuesday  # the correction changed the date read back
    assert ("no new card" in final_readback or "без перевыпуска" in final_readback) and reported.startswith(done)
