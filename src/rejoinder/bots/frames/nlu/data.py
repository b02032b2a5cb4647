"""NLU training data: utterances labelled with an intent and the slot values they contain.

The format users write (YAML, or JSON with the same structure)::

    language: en
    intents:
      block_card:
        - block my card
        - please freeze my [visa](card_type) card right now
        - I lost my card yesterday in [London](city)
      balance:
        - what's my balance
        - how much money is on my [savings](account) account

An example is a string; ``[words](slot)`` marks the words that fill ``slot``. Each intent needs
at least one example; intent and slot names are identifiers. Errors name the file, the line and
what is wrong there.

Examples are :class:`~rejoinder.datasets.nlu.Example` objects, the type the public benchmarks
(BANKING77, SNIPS: :mod:`rejoinder.datasets.nlu`) load into as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rejoinder.datasets.nlu import Example, Span
from rejoinder.errors import SourceError

_ANNOTATION = re.compile(r"\[([^\[\]]+)\]\(([A-Za-z_][A-Za-z0-9_]*)\)")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_TOKEN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]", re.UNICODE)


@dataclass
class NLUData:
    language: str = "en"
    examples: list[Example] = field(default_factory=list)

    @property
    def intents(self) -> list[str]:
        return sorted({e.intent for e in self.examples if e.intent})

    @property
    def slots(self) -> list[str]:
        return sorted({s.slot for e in self.examples for s in e.spans})


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Words and punctuation marks with their character offsets."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def bio_tags(example: Example) -> tuple[list[str], list[str]]:
    """Tokens of an example and their BIO tags (``B-slot``, ``I-slot``, ``O``)."""
    tokens = tokenize(example.text)
    tags = []
    for _word, start, end in tokens:
        tag = "O"
        for span in example.spans:
            if span.start <= start and end <= span.end:
                tag = (
                    "B-" if start == span.start or not tags or not tags[-1].endswith(span.slot) else "I-"
                ) + span.slot
                break
        tags.append(tag)
    return [t for t, _, _ in tokens], tags


def parse_annotated(text: str, intent: str | None = None) -> Example:
    """``"fly to [Paris](city)"`` -> Example with the plain text and a span over "Paris"."""
    plain, spans, cursor = [], [], 0
    offset = 0
    for match in _ANNOTATION.finditer(text):
        plain.append(text[cursor : match.start()])
        offset += match.start() - cursor
        words = match.group(1)
        spans.append(Span(offset, offset + len(words), match.group(2)))
        plain.append(words)
        offset += len(words)
        cursor = match.end()
    plain.append(text[cursor:])
    return Example("".join(plain), intent, tuple(spans))


def _line_of(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def load_nlu_data(path: str | Path) -> NLUData:
    """Read training data in the YAML/JSON format above."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read the training data: {exc.strerror}", path=p) from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"not valid JSON: {exc.msg}", path=p, line=exc.lineno, column=exc.colno) from None
        return _from_data(data, p, lambda *_, **__: None)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourceError.from_yaml(exc, p) from None

    def line(*keys: Any, at_key: bool = False) -> int | None:
        node = root
        for n, key in enumerate(keys):
            if isinstance(node, yaml.MappingNode):
                pair = next(((k, v) for k, v in node.value if k.value == key), None)
                node = None if pair is None else pair[0] if at_key and n == len(keys) - 1 else pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                return _line_of(node)
        return _line_of(node)

    return _from_data(data, p, line)


def _from_data(data: Any, path: Path, line: Any) -> NLUData:
    def fail(message: str, *keys: Any, at_key: bool = False) -> SourceError:
        where = "/" + "/".join(str(k) for k in keys) if keys else "/"
        return SourceError(f"{where}: {message}", path=path, line=line(*keys, at_key=at_key))

    if not isinstance(data, dict):
        raise fail("expected a mapping with 'language' and 'intents'")
    unknown = sorted(set(data) - {"language", "intents"})
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; expected 'language' and 'intents'", unknown[0], at_key=True)
    language = data.get("language", "en")
    if language not in ("en", "ru"):
        raise fail(f"language must be 'en' or 'ru', found {language!r}", "language")
    intents = data.get("intents")
    if not isinstance(intents, dict) or not intents:
        raise fail("expected 'intents': a mapping from intent name to a list of examples", "intents")
    examples = []
    for name, items in intents.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(f"intent name {name!r} must be an identifier", "intents", name, at_key=True)
        if not isinstance(items, list) or not items:
            raise fail("expected a non-empty list of example utterances", "intents", name)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise fail("an example must be a non-empty string", "intents", name, i)
            if item.count("[") != item.count("]"):
                raise fail("unbalanced [ ] in a slot annotation; write [words](slot)", "intents", name, i)
            example = parse_annotated(item.strip(), name)
            if "[" in example.text or "](" in example.text:
                raise fail(
                    "malformed slot annotation; write [words](slot) with an identifier as slot", "intents", name, i
                )
            examples.append(example)
    return NLUData(language, examples)


def iter_texts(examples: Iterable[Example]) -> list[str]:
    return [e.text for e in examples]
