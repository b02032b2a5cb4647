"""What every backend shares: sampling parameters, stop sequences and cancellation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from rejoinder.dialogue import Cancel
from rejoinder.errors import ConfigError

__all__ = ["Cancel", "GenerationParams", "StopScanner", "cut_at_stops"]


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


def cut_at_stops(pieces: Iterator[str], stops: Iterable[str]) -> Iterator[str]:
    """``pieces`` up to the first stop sequence (the stop sequence itself left out); the source
    iterator is closed when this one ends or is closed, so its generation stops too."""
    scanner = StopScanner(stops)
    try:
        for piece in pieces:
            shown = scanner.feed(piece)
            if shown:
                yield shown
            if scanner.stopped:
                return
        rest = scanner.flush()
        if rest:
            yield rest
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
