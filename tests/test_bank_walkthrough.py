"""The lost-card report of the shipped bank bot, in English and Russian, word for word: a card named
by a synonym, a past weekday, a correction at the read-back, a typo in a negated choice, a change of
date, and an elliptical follow-up ("and my credit card too?") that reuses the other values.

The transcripts are the README's: one fast test checks that the README shows exactly these lines,
another runs them with the quick stand-ins (hashing embedder, no NER), and a slow one runs them
with the bot users get (``create_bank`` with its defaults: MiniLM, NER on)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from rejoinder.bots.frames.bot import EXAMPLES, FrameBot, build_nlu, create_bank
from rejoinder.bots.frames.domain import load_domain
from rejoinder.dialogue import Dialogue, Message

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # Thursday: "Monday" of a loss is 23 November
README = Path(__file__).resolve().parents[1] / "README.md"

GREETING = {
    "en": "Hi, this is the Rejoinder Bank assistant. How can I help today?",
    "ru": "Здравствуйте! Я ассистент банка. Что у вас случилось?",
}

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
    ("yes", "Done: your debit card is blocked. Reference LO-E12E7D. Replacement: no new card."),
    (
        "and my credit card too?",
        "Report your credit card lost on Friday 20 November 2026 in Rome and block it? Replacement: no new card.",
    ),
    ("yes", "Done: your credit card is blocked. Reference LO-390014. Replacement: no new card."),
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
    ("да", "Готово: карта заблокирована. Номер заявления LO-B11F5F. Перевыпуск: без перевыпуска."),
    (
        "а дебетовую тоже?",
        "Проверим: дебетовая карта, потеряна 24 ноября 2026 (город: Казань), перевыпуск: без перевыпуска. "
        "Заблокировать её и оформить заявление о потере?",
    ),
    ("да", "Готово: карта заблокирована. Номер заявления LO-0DC614. Перевыпуск: без перевыпуска."),
]

SCRIPTS = {"en": ENGLISH, "ru": RUSSIAN}


def readme_transcripts() -> dict[str, list[str]]:
    """The README's bank transcripts (code blocks of ``bot>``/``you>`` lines), by language."""
    found = {}
    for block in re.findall(r"```\n(bot> .*?)```", README.read_text(encoding="utf-8"), flags=re.S):
        lines = block.strip().splitlines()
        for language, greeting in GREETING.items():
            if lines[0] == f"bot> {greeting}":
                found[language] = lines
    return found


def as_lines(language: str) -> list[str]:
    lines = [f"bot> {GREETING[language]}"]
    for said, expected in SCRIPTS[language]:
        lines += [f"you> {said}", f"bot> {expected}"]
    return lines


def walk(bot: FrameBot, language: str, conversation: str) -> list[dict]:
    """Play the script against ``bot`` on the fixed clock; every reply must be the script's, word for word."""
    dialogue = Dialogue(bot="bank", conversation_id=conversation)
    assert bot.greet(dialogue).text == GREETING[language]
    submitted = []
    for said, expected in SCRIPTS[language]:
        dialogue.messages.append(Message("user", said, created_at=NOW))
        reply = bot.respond(dialogue)
        dialogue.messages.append(Message("assistant", reply.text, meta=reply.meta))
        assert reply.text == expected, said
        if reply.meta["action"] == "submitted":
            submitted.append({k: v["value"] for k, v in dialogue.state["last"]["slots"].items()})
    return submitted


def lost_cards(bot: FrameBot) -> int:
    return httpx.get(f"{bot.demo_backend_url}/_stats").json()["done"].get("lost_card", 0)


def check_two_reports(bot: FrameBot, language: str, conversation: str) -> None:
    before = lost_cards(bot)
    first, second = walk(bot, language, conversation)
    assert lost_cards(bot) - before == 2  # two reports, each sent once
    assert first["when"] == second["when"] and first["where"] == second["where"]
    assert first["card"] != second["card"]


def test_the_readme_shows_the_golden_transcripts_word_for_word():
    assert readme_transcripts() == {language: as_lines(language) for language in SCRIPTS}


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_lost_card_is_reported_with_corrections_and_ellipsis(language):
    domain = load_domain(EXAMPLES / f"bank_{language}" / "domain.yaml")
    bot = FrameBot(domain, build_nlu(domain, embedder="hashing", ner=False), name="bank", demo_backend_port=0)
    bot.prepare()
    check_two_reports(bot, language, f"walk-quick-{language}")


@pytest.mark.slow
@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_default_bank_bot_says_the_readme_transcript_word_for_word(language):
    """``rejoinder chat --bot bank [-o language=ru]`` as users get it: MiniLM intents, NER on."""
    bot = create_bank(language)
    bot.prepare()
    check_two_reports(bot, language, f"walk-default-{language}")  # a new conversation: sent anew


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
