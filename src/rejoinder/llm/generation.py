"""What every backend shares: sampling parameters, stop sequences, how a generation ended.

A backend streams a generation as a :data:`TextStream`: a generator that yields text pieces and
*returns* a :class:`Finish` (why it ended - ``stop``, ``length`` or ``cancelled`` - how many tokens
it made and, where asked for and known, each token's log-probability). ``for piece in stream``
reads the text; :func:`drain` runs a stream to its end and gives the text and the Finish.
Cancellation is :class:`rejoinder.dialogue.Cancel`, set from any thread.
"""

from __future__ import annotations

import queue
from collections.abc import Generator, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from rejoinder.dialogue import Cancel, FinishReason
from rejoinder.errors import ConfigError


@dataclass(frozen=True)
class GenerationParams:
    """How to sample a reply.

    Defaults suit small instruct models: greedy decoding makes them loop, so a moderate temperature
    with nucleus sampling and a mild repetition penalty is used. ``seed`` makes sampling repeatable
    (``None``: a fresh draw every time). ``temperature=0`` means greedy decoding.
    """

    max_new_tokens: int = 256
    temperature: float = 0.6
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.1
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append("max_new_tokens must be at least 1")
        if self.temperature < 0:
            problems.append("temperature must be 0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            problems.append("top_p must be in (0, 1]")
        if self.top_k < 0:
            problems.append("top_k must be 0 (off) or more")
        if self.repetition_penalty <= 0:
            problems.append("repetition_penalty must be positive")
        if any(not s for s in self.stop):
            problems.append("stop sequences must not be empty")
        if problems:
            raise ConfigError("generation parameters: " + "; ".join(problems))

    def with_(self, **changes: Any) -> GenerationParams:
        changes = {k: v for k, v in changes.items() if v is not None}
        if "stop" in changes:
            changes["stop"] = tuple(changes["stop"])
        return replace(self, **changes)


class SequenceState:
    """One sequence in a batching engine's hands: what its reader waits on and why it ended.

    The decoding thread puts token items on ``out`` and, once, the end (None, or the error that
    failed it) through :meth:`finish`; ``stopped`` is whether the decoder should drop it at its
    next step (the caller's Cancel was set, or the reader went away).
    """

    def __init__(self, params: GenerationParams, cancel: Cancel) -> None:
        self.params = params
        self.cancel = cancel
        self.dropped = False  # the reader went away
        self.out: queue.Queue[Any] = queue.Queue()
        self.generated = 0
        self.next_token = 0
        self.reason: FinishReason = "stop"
        self.finished = False

    @property
    def stopped(self) -> bool:
        return self.dropped or self.cancel.is_set

    def finish(self, error: BaseException | None = None, reason: FinishReason | None = None) -> None:
        if not self.finished:
            self.finished = True
            if reason is not None:
                self.reason = reason
            self.out.put(error)


S = TypeVar("S", bound=SequenceState)


def take_arrivals(pending: queue.Queue[S | None], active: int, max_batch: int, closed: bool) -> list[S]:
    """The sequences a batching engine admits now: it waits for one when none is ``active``, then
    takes what else is waiting up to ``max_batch``; those already stopped (or all, once ``closed``)
    are finished as cancelled instead. A None in the queue (closing) wakes an idle engine."""
    arrivals: list[S] = []
    if not active:
        first = pending.get()
        if first is None:  # closing
            return []
        arrivals.append(first)
    while active + len(arrivals) < max_batch:
        try:
            sequence = pending.get_nowait()
        except queue.Empty:
            break
        if sequence is not None:
            arrivals.append(sequence)
    admitted = []
    for sequence in arrivals:
        if sequence.stopped or closed:
            sequence.finish(reason="cancelled")
        else:
            admitted.append(sequence)
    return admitted


class StopScanner:
    """Cuts a stream of text pieces at the first stop sequence.

    Text that might be the beginning of a stop sequence is held back until it is known not to be,
    so a stop sequence never reaches the user, even when it arrives split over several tokens.
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The part of ``piece`` that can be shown now; after a stop sequence, nothing."""
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        text = self.held + piece
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self.held = True, ""
            return text[:cut]
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What was held back, once the stream ended without completing a stop sequence."""
        held, self.held = ("" if self.stopped else self.held), ""
        return held


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: the text it added to the output ("" while it only began a character)
    and the natural log of its probability among the tokens that were allowed."""

    text: str
    logprob: float


@dataclass(frozen=True)
class Finish:
    """How a generation ended: ``stop`` (end of text or a stop sequence), ``length``
    (``max_new_tokens`` or the context window) or ``cancelled``; the tokens generated; and, when the
    caller asked for them and the backend can tell, each token's log-probability."""

    reason: FinishReason
    tokens: int | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None


TextStream = Generator[str, None, Finish]
"""A generation in pieces: iterate for the text; the generator's return value is its Finish."""

Tokens = Generator[tuple[str, float | None], None, FinishReason]
"""A backend's raw output: (text the token adds, its log-probability or None) per token, returning
why the generation ended."""


def cut_at_stops(tokens: Tokens, stops: Iterable[str], *, logprobs: bool = False) -> TextStream:
    """The text of ``tokens`` up to the first stop sequence (the stop sequence itself left out).

    Every backend turns its output into (text, log-probability) per token and streams it through
    here. The source is closed when this stream ends or is closed, so its generation stops too.
    """
    scanner = StopScanner(stops)
    count = 0
    kept: list[TokenLogprob] | None = [] if logprobs else None
    reason: FinishReason = "stop"
    try:
        while True:
            try:
                piece, logprob = next(tokens)
            except StopIteration as end:
                reason = end.value or "stop"
                break
            count += 1
            if kept is not None and logprob is not None:
                kept.append(TokenLogprob(piece, logprob))
            shown = scanner.feed(piece)
            if shown:
                yield shown
            if scanner.stopped:
                reason = "stop"
                break
        rest = scanner.flush()
        if rest:
            yield rest
    finally:
        tokens.close()
    return Finish(reason, count, tuple(kept) if kept else None)


def drain(stream: TextStream) -> tuple[str, Finish]:
    """Run ``stream`` to its end: the whole text and the Finish."""
    pieces: list[str] = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as end:
            finish = end.value if isinstance(end.value, Finish) else Finish("stop")
            return "".join(pieces), finish
