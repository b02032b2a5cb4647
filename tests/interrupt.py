"""Run a command on a pipe and press Ctrl-C (SIGINT) once its output has begun: for tests of what a
process does when it is interrupted mid-reply (no abort, what it stores, how it exits)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ABORTED = (-signal.SIGABRT, 128 + signal.SIGABRT)
"""Exit statuses of a process that aborted (``terminate called ...``), as subprocess and a shell see them."""


@dataclass
class Interrupted:
    returncode: int
    stdout: str
    stderr: str
    before_signal: str
    """What the process had written to stdout when it was interrupted."""
    seconds_to_exit: float
    """From the signal to the process's end."""

    @property
    def aborted(self) -> bool:
        return self.returncode in ABORTED or "terminate called" in self.stderr


def interrupt_after_output(
    command: list[str],
    stdin: str = "",
    *,
    after_chars: int = 1,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    start_timeout: float = 120.0,
    exit_timeout: float = 60.0,
) -> Interrupted:
    """Start ``command`` with ``stdin`` on its standard input; once its standard output holds
    ``after_chars`` non-blank characters, send SIGINT; wait for it to end and say how it ended.

    Raises AssertionError if the output never begins within ``start_timeout`` seconds, or if the
    process is still running ``exit_timeout`` seconds after the signal (it is killed then).
    """
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(stdin.encode())
    process.stdin.close()
    process.stdin = None  # communicate() must not flush it again
    os.set_blocking(process.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + start_timeout
    while len(seen.strip()) < after_chars:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            rest, err = process.communicate()
            raise AssertionError(
                f"no output to interrupt (exit {process.returncode}): {(seen + rest).decode(errors='replace')!r}\n"
                + err.decode(errors="replace")[-2000:]
            )
        chunk = process.stdout.read()
        if chunk:
            seen += chunk
        else:
            time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    os.set_blocking(process.stdout.fileno(), True)
    try:
        rest, err = process.communicate(timeout=exit_timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        rest, err = process.communicate()
        tail = err.decode(errors="replace")[-2000:]
        raise AssertionError(f"still running {exit_timeout} s after Ctrl-C: {tail}") from None
    return Interrupted(
        process.returncode,
        (seen + rest).decode(errors="replace"),
        err.decode(errors="replace"),
        seen.decode(errors="replace"),
        time.monotonic() - signalled,
    )


def python_command(script: str) -> list[str]:
    """The command that runs ``script`` in this interpreter, with tests/ importable."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n{script}"]
