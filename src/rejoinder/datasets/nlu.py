"""Public NLU benchmarks: BANKING77 and SNIPS as labelled utterances, with their published anchors.

An utterance is an :class:`Example`: its text, its intent and the :class:`Span` of each slot value
in it. BANKING77 (Casanueva et al. 2020) is a ``text,category`` CSV per split; SNIPS (Coucke et al.
2018, the split of Goo et al. 2018) is a folder per split with ``seq.in`` (words), ``seq.out``
(BIO tags) and ``label`` (intents), one utterance a line. Both are read from the shared data
(``rejoinder.resources.shared_data("nlu", ...)``), never copied into the package.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rejoinder.errors import ConfigError, SourceError
from rejoinder.resources import shared_data

DATASETS = ("banking77", "snips")

ANCHORS = {
    "banking77": {"intent_accuracy": 0.9366, "source": "BERT-large, Casanueva et al. 2020"},
    "snips": {"intent_accuracy": 0.986, "slot_f1": 0.970, "source": "Joint BERT, Chen et al. 2019"},
}
"""Published test-set figures: BANKING77, Casanueva et al. 2020 (BERT-large); SNIPS, Joint BERT
(Chen et al. 2019)."""


@dataclass(frozen=True)
class Span:
    """The characters ``text[start:end]`` of an utterance fill ``slot``."""

    start: int
    end: int
    slot: str


@dataclass(frozen=True)
class Example:
    """One labelled utterance: its intent (None when unlabelled) and its slot spans."""

    text: str
    intent: str | None = None
    spans: tuple[Span, ...] = ()


def spans_from_bio(tokens: Sequence[tuple[str, int, int]], tags: Sequence[str]) -> list[Span]:
    """The slot spans of ``(word, start, end)`` tokens tagged ``B-slot`` / ``I-slot`` / ``O``."""
    spans: list[Span] = []
    current: list[Any] | None = None
    for (_word, start, end), tag in zip(tokens, tags, strict=True):
        if tag.startswith("B-") or (tag.startswith("I-") and (current is None or current[2] != tag[2:])):
            if current:
                spans.append(Span(*current))
            current = [start, end, tag[2:]]
        elif tag.startswith("I-") and current is not None:
            current[1] = end
        else:
            if current:
                spans.append(Span(*current))
            current = None
    if current:
        spans.append(Span(*current))
    return spans


def load_banking77(path: str | Path) -> list[Example]:
    """A BANKING77 CSV split (``text,category``)."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"text", "category"} <= set(reader.fieldnames):
                raise SourceError(f"expected columns text,category, found {reader.fieldnames}", path=p, line=1)
            return [Example(row["text"], row["category"]) for row in reader]
    except OSError as exc:
        raise SourceError(f"cannot read a BANKING77 split: {exc.strerror}", path=p) from None


def load_snips(folder: str | Path) -> list[Example]:
    """A SNIPS split folder (``seq.in``, ``seq.out``, ``label``: words, BIO tags and intents per line)."""
    root = Path(folder)
    try:
        words = (root / "seq.in").read_text(encoding="utf-8").splitlines()
        tags = (root / "seq.out").read_text(encoding="utf-8").splitlines()
        labels = (root / "label").read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SourceError(f"cannot read a SNIPS split: {exc.strerror}", path=exc.filename) from None
    if not len(words) == len(tags) == len(labels):
        raise SourceError(
            f"seq.in, seq.out and label differ in length ({len(words)}, {len(tags)}, {len(labels)})", path=root
        )
    out = []
    for n, (sentence, tag_line, label) in enumerate(zip(words, tags, labels, strict=True), start=1):
        tokens, token_tags = sentence.split(), tag_line.split()
        if len(tokens) != len(token_tags):
            raise SourceError(f"{len(tokens)} words but {len(token_tags)} tags", path=root / "seq.out", line=n)
        text, offsets, cursor = " ".join(tokens), [], 0
        for token in tokens:
            offsets.append((token, cursor, cursor + len(token)))
            cursor += len(token) + 1
        out.append(Example(text, label, tuple(spans_from_bio(offsets, token_tags))))
    return out


def load_dataset(name: str) -> tuple[list[Example], list[Example]]:
    """(train, test) of ``banking77`` or ``snips``, their standard splits, from the shared data."""
    if name == "banking77":
        root = shared_data("nlu", "banking77", required=True)
        return load_banking77(root / "train.csv"), load_banking77(root / "test.csv")
    if name == "snips":
        root = shared_data("nlu", "snips", required=True)
        return load_snips(root / "train"), load_snips(root / "test")
    raise ConfigError(f"no dataset {name!r}; expected one of: {', '.join(DATASETS)}")
