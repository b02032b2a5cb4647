"""What the terminal front ends share: Ctrl-C, a bot's preparation with progress, and the piped chat.

Ctrl-C never kills a turn half-way: while a reply streams, it cancels the reply (the part shown is
stored, marked cancelled); while a bot prepares, it stops the preparation at a point it resumes
from on the next start. The interactive chat then goes on; a piped chat exits with status 130.
"""

from __future__ import annotations

import signal
import sys
import threading
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
    """Run the bot's preparation with a progress bar (count of total, rate, time left) on ``console``.

    Returns False when Ctrl-C stopped it (what was done is kept and resumed on the next start).
    """
    if not isinstance(bot, PreparingBot) or bot.readiness().complete:
        return True
    cancel = Cancel()
    tasks: dict[str, TaskID] = {}
    with (
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[detail]}"),
            console=console,
            transient=not console.is_terminal,
        ) as bar,
        sigint_calls(cancel.set) as pressed,
    ):

        def progress(event: PrepProgress) -> None:
            task = tasks.get(event.stage)
            if task is None:
                task = tasks[event.stage] = bar.add_task(event.stage, total=event.total, rate="", detail="")
            speed = bar.tasks[task].speed
            bar.update(
                task,
                completed=event.done,
                total=event.total,
                rate=f"{speed:,.0f}/s" if speed else "",
                detail=event.detail,
            )

        bot.prepare(progress, cancel)
    if pressed[0]:
        readiness = bot.readiness()
        console.print(
            f"[yellow]stopped[/]: {readiness.detail or 'preparation incomplete'}; it resumes where it stopped "
            "on the next start",
            highlight=False,
        )
        return False
    return True


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
