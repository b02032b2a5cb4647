"""Ctrl-C in the terminal: a streaming reply stops and is kept; the REPL goes on, a pipe exits 130."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from rejoinder.chat import ChatSession
from rejoinder.repl import run_repl
from rejoinder.store import Store

SLOW_BOT = '''
import time

from rejoinder.dialogue import Reply


class SlowBot:
    """Streams a word every 50 ms, up to 400 words."""

    name = "slowbot"

    def greet(self, dialogue):
        return None

    def respond(self, dialogue):
        return Reply("whole")

    def stream(self, dialogue, cancel):
        words = []
        for number in range(400):
            if cancel.is_set:
                return Reply(" ".join(words), finish_reason="cancelled")
            time.sleep(0.05)
            words.append(f"word{number}")
            yield words[-1] + " "
        return Reply(" ".join(words))


def create():
    """A bot that answers slowly, for interrupt tests."""
    return SlowBot()
'''


def slow_bot_package(folder: Path) -> Path:
    """A module and a dist-info registering it under the rejoinder.bots entry points."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slowbot.py").write_text(textwrap.dedent(SLOW_BOT))
    info = folder / "slowbot-0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slowbot\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[rejoinder.bots]\nslowbot = slowbot:create\n")
    return folder


def test_ctrl_c_on_a_pipe_keeps_the_partial_reply_and_exits_130(tmp_path):
    folder = slow_bot_package(tmp_path / "plugins")
    db = tmp_path / "chat.db"
    env = {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rejoinder.cli", "chat", "--bot", "slowbot", "--db", f"sqlite:///{db}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"tell me a long story\nand another\n")
    process.stdin.close()
    process.stdin = None  # communicate() must not flush it again
    seen = b""
    deadline = time.monotonic() + 60
    while b"word3" not in seen and time.monotonic() < deadline:
        seen += process.stdout.read1(100)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err.decode()
    assert b"terminate called" not in err and b"Traceback" not in err
    assert b"line 1: stopped (Ctrl-C)" in err
    store = Store(f"sqlite:///{db}")
    messages = store.load_dialogue(store.list_conversations()[0].id).messages
    assert [m.text for m in messages if m.role == "user"] == ["tell me a long story"]  # the pipe stops there
    reply = messages[-1]
    assert reply.meta["cancelled"] is True and reply.text.startswith("word0 word1 word2 word3")
    assert (seen + out).decode().strip().startswith(reply.text)


class TickingBot:
    name = "ticker"

    def greet(self, dialogue):
        return None

    def respond(self, dialogue):
        raise AssertionError("streams only")

    def stream(self, dialogue, cancel):
        from rejoinder.dialogue import Reply

        words = []
        for number in range(400):
            if cancel.is_set:
                return Reply(" ".join(words), meta={"ticks": len(words)}, finish_reason="cancelled")
            time.sleep(0.02)
            words.append(f"tick{number}")
            yield words[-1] + " "
        return Reply(" ".join(words))


def test_ctrl_c_in_the_repl_stops_the_reply_keeps_it_and_the_chat_goes_on(store):
    session, _ = ChatSession.start(store, "ticker", bot=TickingBot())
    console = Console(file=io.StringIO(), width=200, color_system=None)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    with create_pipe_input() as pipe:
        pipe.send_text("first\n")
        timer.start()
        prompt = PromptSession(input=pipe, output=DummyOutput())

        def later() -> None:
            time.sleep(1.0)
            pipe.send_text("/quit\n")

        threading.Thread(target=later, daemon=True).start()
        run_repl(session, None, console=console, prompt=prompt)
    shown = console.file.getvalue()
    assert "(stopped)" in shown and "Saved." in shown
    reply = store.load_dialogue(session.conversation_id).messages[-1]
    assert reply.meta["cancelled"] is True and reply.text.startswith("tick0")
    assert reply.meta["ticks"] >= 1  # the bot's own metadata is kept with the cancelled reply
