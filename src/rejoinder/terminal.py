"""What the terminal front ends share: Ctrl-C, a bot's preparation with progress, and the piped chat.

Ctrl-C never kills a turn half-way: while a reply streams, it cancels the reply (the part shown is
stored, marked cancelled); while a bot prepares, it stops the preparation at a point it resumes
from on the next start. The interactive chat then goes on; a piped chat exits with status 130.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from rejoinder.chat import ChatSession
from rejoinder.dialogue import Bot, Cancel, PreparingBot, Reply
from rejoinder.dialogue import Progress as PrepProgress
from rejoinder.errors import InvalidMessage, RejoinderError

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


@contextmanager
def sigint_calls(action: Callable[[], None]) -> Iterator[list[bool]]:
    """While the block runs, Ctrl-C calls ``action`` instead of raising KeyboardInterrupt.

    Yields a one-item list that becomes ``[True]`` once Ctrl-C was pressed. A second Ctrl-C raises
    KeyboardInterrupt as usual. Outside the main thread this does nothing (signals go to the main thread).
    """
    pressed = [False]
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def handler(signum: int, frame: Any) -> None:
        if pressed[0]:
            raise KeyboardInterrupt
        pressed[0] = True
        action()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare_in_terminal(bot: Bot, console: Console) -> bool:
    """Run the bot's preparation with its progress (count of total, rate, time left) on ``console``:
    a live bar on a terminal, a line every tenth of the way otherwise.

    Returns False when Ctrl-C stopped it (what was done is kept and resumed on the next start).
    """
    if not isinstance(bot, PreparingBot) or bot.readiness().complete:
        return True
    cancel = Cancel()
    with sigint_calls(cancel.set) as pressed:
        if console.is_terminal:
            with _progress_bar(console) as progress:
                bot.prepare(progress, cancel)
        else:
            bot.prepare(_progress_lines(console), cancel)
    if pressed[0]:
        readiness = bot.readiness()
        console.print(
            f"stopped: {readiness.detail or 'preparation incomplete'}; it resumes where it stopped on the next start",
            highlight=False,
            markup=False,
        )
        return False
    return True


@contextmanager
def _progress_bar(console: Console) -> Iterator[Callable[[PrepProgress], None]]:
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("[dim]{task.fields[detail]}"),
        console=console,
    ) as bar:

        def progress(event: PrepProgress) -> None:
            task = tasks.get(event.stage)
            if task is None:
                task = tasks[event.stage] = bar.add_task(event.stage, total=event.total, rate="", detail="")
            speed = bar.tasks[task].speed
            rate = f"{speed:,.0f}/s" if speed else ""
            bar.update(task, completed=event.done, total=event.total, rate=rate, detail=event.detail)

        yield progress


def _progress_lines(console: Console) -> Callable[[PrepProgress], None]:
    """Plain progress lines for a log or a pipe: a stage's start, each tenth of the way, its end."""
    started: dict[str, tuple[float, int]] = {}
    shown: dict[str, int] = {}

    def progress(event: PrepProgress) -> None:
        now = time.monotonic()
        first = event.stage not in started
        if first:
            started[event.stage] = (now, event.done)
        tenth = (10 * event.done // event.total) if event.total else -1
        finished = event.total is not None and event.done >= event.total
        if not first and not finished and tenth == shown.get(event.stage):
            return
        shown[event.stage] = tenth
        begun, base = started[event.stage]
        rate = (event.done - base) / (now - begun) if now > begun else 0.0
        line = f"{event.stage}: {event.done:,}" + (f" of {event.total:,}" if event.total else "")
        if rate and not first:
            if event.total is None or event.total >= 100:  # a rate of items, not of a few steps
                line += f", {rate:,.0f}/s" if rate >= 10 else f", {rate:.1f}/s"
            if event.total and not finished:
                line += f", about {(event.total - event.done) / rate:,.0f} s left"
        if event.detail:
            line += f" ({event.detail})"
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    return progress


def _decoded(line: bytes | str, number: int) -> str:
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})") from None


def run_piped(
    session: ChatSession,
    opening: Reply | None,
    stdin: BinaryIO | TextIO,
    stdout: TextIO,
    stderr: TextIO,
    *,
    explain: bool = False,
) -> int:
    """One user message per input line, one reply per output line; blank lines are skipped.

    Returns the exit status: 0; 1 if any line was refused (the reason goes to stderr with the line
    number, and the other lines are still answered); 2 on a store or bot error; 130 after Ctrl-C
    (the reply being streamed is stored as far as it got, marked cancelled).
    """
    status = 0
    if opening is not None:
        stdout.write(opening.text + "\n")
        stdout.flush()
    current: list[Any] = [None]

    def interrupt() -> None:
        turn = current[0]
        if turn is None:
            raise KeyboardInterrupt
        turn.cancel()

    try:
        with sigint_calls(interrupt) as pressed:
            for number, raw in enumerate(stdin, start=1):
                try:
                    line = _decoded(raw, number).rstrip("\r\n")
                    if not line.strip():
                        continue
                    turn = current[0] = session.stream(line)
                    started = False
                    for piece in turn:
                        piece = piece.replace("\r", "").replace("\n", " ")  # one reply per output line
                        stdout.write(piece.lstrip() if not started else piece)
                        started = started or bool(piece.strip())
                        stdout.flush()
                    current[0] = None
                    stdout.write("\n")
                    stdout.flush()
                    if turn.reply is not None and turn.reply.finish_reason == "length":
                        stderr.write(f"line {number}: the reply was cut at the length limit\n")
                    if explain and turn.reply is not None:
                        stderr.write(f"  {turn.reply.meta}\n")
                except InvalidMessage as exc:
                    current[0] = None
                    stderr.write(f"line {number}: {exc}\n")
                    status = 1
                    continue
                except RejoinderError as exc:
                    stderr.write(f"line {number}: error: {exc}\n")
                    return 2
                if pressed[0]:
                    stderr.write(f"line {number}: stopped (Ctrl-C); the reply so far is stored, marked cancelled\n")
                    return INTERRUPTED
    except KeyboardInterrupt:
        stdout.write("\n")
        stdout.flush()
        stderr.write("stopped (Ctrl-C)\n")
        return INTERRUPTED
    return status


def piped_stdin() -> BinaryIO | TextIO:
    """Standard input as bytes, so that each line is decoded (and a bad one reported) on its own."""
    return getattr(sys.stdin, "buffer", sys.stdin)
