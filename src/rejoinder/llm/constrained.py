"""Constrained decoding for in-process models: the output is a JSON document of a given schema.

:class:`JsonGrammar` compiles a JSON Schema into a character automaton that accepts only documents
of the schema, written the way ``json.dumps`` writes them: no line breaks, at most one space after
``{``, ``[``, ``:`` and ``,``; an object's required properties first, in the order the schema
declares them, then its optional ones in any order, each at most once; strings without escapes
(no ``"``, ``\\`` or control characters inside them). Every document it accepts satisfies the
schema; the restrictions only narrow how it may be spelt. Supported keywords: ``type`` (object,
array, string, integer, number, boolean, null, or a list of them), ``properties``, ``required``,
``additionalProperties`` (no other property is ever written), ``minProperties``/``maxProperties``,
``items``, ``minItems``/``maxItems``, ``minLength``/``maxLength``, ``enum``, ``const`` and
``anyOf`` (alternatives are followed side by side until the text tells them apart); a keyword of
another type than the value's does not apply to it, as in JSON Schema; annotations (``title``,
``description``, ...) are ignored, and anything else (``pattern``, ``minimum``, ``$ref``,
``oneOf``, ...) is refused with its place in the schema, since the output could not be guaranteed
to satisfy it.

The token mask: :class:`TokenTable` holds the text each vocabulary id adds to the output, indexed
by first character and, for the inside of strings (where most of the vocabulary is allowed), as a
length-sorted list of "plain" tokens that is sliced instead of testing each token.
:class:`ConstrainedDecoder` gives the allowed ids in each automaton state (cached per state, so a
schema used again costs nothing after its first answers), and :meth:`ConstrainedDecoder.hook` a
fresh :class:`MaskHook` for one generation: it follows the automaton over the tokens generated so
far and sets every logit it forbids to -inf, allowing EOS only where the document may end. For
SmolLM2's 49k vocabulary the table takes ~0.2 s once.
"""

from __future__ import annotations

import contextlib
import json
import math
import weakref
from bisect import bisect_right
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from rejoinder.errors import ConfigError

State = tuple[Any, ...]
DONE: State = ("done",)

MAX_DIGITS = 16
"""Digits in an integer, and in a number's fraction, at most."""

_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly"}
)
_KEYWORDS = {
    "object": {"type", "properties", "required", "additionalProperties", "minProperties", "maxProperties"},
    "array": {"type", "items", "minItems", "maxItems"},
    "string": {"type", "minLength", "maxLength"},
    "integer": {"type"},
    "number": {"type"},
    "boolean": {"type"},
    "null": {"type"},
}
_SUPPORTED = frozenset().union(*_KEYWORDS.values(), {"enum", "const", "anyOf"})


def _is_content(char: str) -> bool:
    """Whether ``char`` may stand unescaped inside the JSON strings we allow (no escapes at all)."""
    return char != '"' and char != "\\" and ord(char) >= 0x20


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


class JsonGrammar:
    """The documents of a JSON Schema as a character automaton (see the module docstring).

    States are hashable tuples; :meth:`step` is memoised. Raises :class:`ConfigError` naming the
    place in the schema of a keyword it cannot guarantee.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.nodes: list[tuple[Any, ...]] = []
        root = self._compile(schema, "#")
        self.step = lru_cache(maxsize=1 << 18)(self._step)
        self.start: State = self._enter(root, DONE)

    # -- compiling the schema into nodes ---------------------------------------------------------
    def _add(self, node: tuple[Any, ...]) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def _compile(self, schema: Any, where: str) -> int:
        if not isinstance(schema, dict):
            raise ConfigError(f"JSON schema {where}: expected an object, found {schema!r}")
        given = set(schema) - _ANNOTATIONS
        unknown = sorted(given - _SUPPORTED)
        if unknown:
            raise ConfigError(
                f"JSON schema {where}: {', '.join(unknown)} cannot be guaranteed by constrained decoding "
                f"(supported: {', '.join(sorted(_SUPPORTED))})"
            )
        if "anyOf" in schema:
            if given != {"anyOf"} or not isinstance(schema["anyOf"], list) or not schema["anyOf"]:
                raise ConfigError(f"JSON schema {where}: anyOf must be a non-empty list and stand alone")
            alternatives = [self._compile(s, f"{where}/anyOf/{i}") for i, s in enumerate(schema["anyOf"])]
            return self._add(("any", tuple(alternatives)))
        if "enum" in schema or "const" in schema:
            values = schema["enum"] if "enum" in schema else [schema["const"]]
            if not isinstance(values, list) or not values:
                raise ConfigError(f"JSON schema {where}: enum must be a non-empty list")
            return self._add(("lits", frozenset(_literal(v) for v in values)))
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind:
                raise ConfigError(f"JSON schema {where}: type must not be an empty list")
            return self._add(("any", tuple(self._compile({**schema, "type": t}, where) for t in kind)))
        if kind not in _KEYWORDS:
            found = f"type {kind!r} is not supported" if kind is not None else "no type given"
            raise ConfigError(
                f"JSON schema {where}: {found}; expected a type among {', '.join(_KEYWORDS)}, or enum, const, anyOf"
            )
        if kind == "object":
            return self._compile_object(schema, where)
        if kind == "array":
            items = self._compile(schema.get("items", {"type": "string"}), f"{where}/items")
            return self._add(("array", items, int(schema.get("minItems", 0)), schema.get("maxItems")))
        if kind == "string":
            return self._add(("string", int(schema.get("minLength", 0)), schema.get("maxLength")))
        if kind == "boolean":
            return self._add(("lits", frozenset({"true", "false"})))
        if kind == "null":
            return self._add(("lits", frozenset({"null"})))
        return self._add((kind,))  # integer, number (keywords of other types do not apply to them)

    def _compile_object(self, schema: dict[str, Any], where: str) -> int:
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise ConfigError(f"JSON schema {where}/properties: expected an object")
        required = schema.get("required", [])
        missing = [name for name in required if name not in properties]
        if missing:
            raise ConfigError(f"JSON schema {where}: required {', '.join(missing)} not among the properties")
        for name in properties:
            if not all(_is_content(c) for c in name):
                raise ConfigError(f"JSON schema {where}/properties: the name {name!r} needs escapes")
        index = self._add(())  # reserved: properties may refer to their object only through the state
        props = {name: self._compile(sub, f"{where}/properties/{name}") for name, sub in properties.items()}
        optional = tuple(name for name in properties if name not in required)
        self.nodes[index] = (
            "object",
            tuple(required),
            optional,
            props,
            int(schema.get("minProperties", 0)),
            schema.get("maxProperties"),
        )
        return index

    # -- entering a value -----------------------------------------------------------------------
    def _enter(self, index: int, then: State) -> State:
        node = self.nodes[index]
        kind = node[0]
        if kind == "lits":
            return ("lits", node[1], then)
        if kind == "string":
            return ("lit", '"', 0, ("str", 0, node[1], node[2], then))
        if kind == "object":
            return ("lit", "{", 0, ("ws", ("mem", index, 0, frozenset(), False, then)))
        if kind == "array":
            return ("lit", "[", 0, ("ws", ("arr", index, 0, False, then)))
        if kind in ("integer", "number"):
            return ("num", kind, "start", 0, then)
        return _union(self._enter(i, then) for i in node[1])  # anyOf

    # -- transitions ---------------------------------------------------------------------------
    def _step(self, state: State, char: str) -> State | None:
        kind = state[0]
        if kind == "lit":
            _, text, i, then = state
            if char != text[i]:
                return None
            return then if i + 1 == len(text) else ("lit", text, i + 1, then)
        if kind == "ws":
            return state[1] if char == " " else self.step(state[1], char)
        if kind == "lits":
            _, rests, then = state
            grown = frozenset(r[1:] for r in rests if r and r[0] == char)
            moved = (then if grown == {""} else ("lits", grown, then)) if grown else None
            ended = self.step(then, char) if "" in rests else None
            return _union((moved, ended))
        if kind == "str":
            _, length, shortest, longest, then = state
            if char == '"':
                return then if length >= shortest else None
            if _is_content(char) and (longest is None or length < longest):
                return ("str", length + 1, shortest, longest, then)
            return None
        if kind == "num":
            return self._number(state, char)
        if kind == "mem":
            return self._member(state, char)
        if kind == "key":
            return self._key(state, char)
        if kind == "arr":
            return self._array(state, char)
        if kind == "any":
            return _union(self.step(s, char) for s in state[1])
        return None  # DONE accepts nothing more

    def _number(self, state: State, char: str) -> State | None:
        _, kind, phase, digits, then = state
        digit = char.isascii() and char.isdigit()
        if phase in ("start", "sign"):
            if char == "-" and phase == "start":
                return ("num", kind, "sign", 0, then)
            if digit:
                return ("num", kind, "zero" if char == "0" else "int", 1, then)
            return None
        if phase == "dot":
            return ("num", kind, "frac", 1, then) if digit else None
        if digit and phase != "zero" and digits < MAX_DIGITS:
            return ("num", kind, phase, digits + 1, then)
        if char == "." and kind == "number" and phase in ("zero", "int"):
            return ("num", kind, "dot", 0, then)
        return self.step(then, char)  # the number ended: the character belongs to what follows

    def _available(self, node: tuple[Any, ...], done: int, used: frozenset[str]) -> tuple[str, ...]:
        _, required, optional, _props, _least, most = node
        if done < len(required):
            return (required[done],)
        if most is not None and done + len(used) >= most:
            return ()
        return tuple(name for name in optional if name not in used)

    def _member(self, state: State, char: str) -> State | None:
        _, index, done, used, comma, then = state
        node = self.nodes[index]
        available = self._available(node, done, used)
        if char == "}" and done == len(node[1]) and done + len(used) >= node[4]:
            return then
        if comma:
            if char == "," and available:
                return ("ws", ("lit", '"', 0, ("key", index, "", done, used, then)))
            return None
        if char == '"' and available:
            return ("key", index, "", done, used, then)
        return None

    def _key(self, state: State, char: str) -> State | None:
        _, index, prefix, done, used, then = state
        node = self.nodes[index]
        available = self._available(node, done, used)
        if char == '"':
            if prefix not in available:
                return None
            after = (index, done + 1, used) if done < len(node[1]) else (index, done, used | {prefix})
            value = self._enter(node[3][prefix], ("mem", *after, True, then))
            return ("lit", ":", 0, ("ws", value))
        grown = prefix + char
        return ("key", index, grown, done, used, then) if any(k.startswith(grown) for k in available) else None

    def _array(self, state: State, char: str) -> State | None:
        _, index, count, comma, then = state
        _, items, least, most = self.nodes[index]
        if char == "]" and count >= least:
            return then
        if most is not None and count >= most:
            return None
        if comma:
            if char == ",":
                return ("ws", self._enter(items, ("arr", index, count + 1, True, then)))
            return None
        return self.step(self._enter(items, ("arr", index, count + 1, True, then)), char)

    # -- reading -------------------------------------------------------------------------------
    def accepting(self, state: State | None) -> bool:
        """Whether the document may end in ``state``."""
        if state is None:
            return False
        kind = state[0]
        if kind == "done":
            return True
        if kind == "ws":
            return self.accepting(state[1])
        if kind == "lits":
            return "" in state[1] and self.accepting(state[2])
        if kind == "num":
            return state[2] in ("zero", "int", "frac") and self.accepting(state[4])
        if kind == "any":
            return any(self.accepting(s) for s in state[1])
        return False

    def advance(self, state: State | None, text: str) -> State | None:
        """The state after ``text``; None when ``text`` leaves the language."""
        for char in text:
            if state is None:
                return None
            state = self.step(state, char)
        return state

    def accepts_prefix(self, text: str) -> bool:
        return self.advance(self.start, text) is not None

    def accepts(self, text: str) -> bool:
        return self.accepting(self.advance(self.start, text))


def _union(states: Iterable[State | None]) -> State | None:
    """One state standing for several alternatives (None when there is none)."""
    members: set[State] = set()
    for state in states:
        if state is None:
            continue
        if state[0] == "any":
            members.update(state[1])
        else:
            members.add(state)
    if not members:
        return None
    if len(members) == 1:
        return next(iter(members))
    return ("any", frozenset(members))


# ------------------------------------------------------------------------------------------------
# Token texts and the logits hook

_BYTE_LEVEL: dict[str, int] | None = None


def _byte_level_table() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character standing for each byte."""
    global _BYTE_LEVEL
    if _BYTE_LEVEL is None:
        printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
        codes = printable[:]
        extra = 0
        for byte in range(256):
            if byte not in printable:
                printable.append(byte)
                codes.append(256 + extra)
                extra += 1
        _BYTE_LEVEL = {chr(code): byte for byte, code in zip(printable, codes, strict=True)}
    return _BYTE_LEVEL


def token_texts(tokenizer: Any) -> tuple[list[str], set[int]]:
    """The text each vocabulary id adds to the output, and the ids of special tokens.

    Byte-level BPE pieces are mapped back to their bytes (a piece that ends inside a multi-byte
    character reads as U+FFFD, which only string values accept); other tokenizers decode each id
    alone, keeping SentencePiece's word-initial space.
    """
    size = len(tokenizer)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special |= {i for i, token in added.items() if getattr(token, "special", False)}
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    byte_level = decoder is not None and "ByteLevel" in repr(decoder)
    table = _byte_level_table()
    texts: list[str] = []
    for i, piece in enumerate(pieces):
        if i in special or piece is None:
            texts.append("")
        elif byte_level and i not in added and all(c in table for c in piece):
            texts.append(bytes(table[c] for c in piece).decode("utf-8", errors="replace"))
        else:
            text = tokenizer.decode([i], skip_special_tokens=False)
            if piece.startswith("▁") and not text.startswith(" "):
                text = " " + text
            texts.append(text)
    return texts, special


class TokenTable:
    """A tokenizer's vocabulary as text, indexed for masking: by first character, and for strings."""

    def __init__(self, tokenizer: Any, eos_ids: Iterable[int]) -> None:
        import torch

        self.texts, self.special = token_texts(tokenizer)
        self.eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long)
        by_first: dict[str, list[int]] = {}
        plain: list[tuple[int, int]] = []  # (length, id) of tokens made only of string content
        self.closing: list[tuple[int, int, str]] = []  # (id, content run, rest after the quote)
        for i, text in enumerate(self.texts):
            if not text or i in self.special:
                continue
            by_first.setdefault(text[0], []).append(i)
            run = 0
            while run < len(text) and _is_content(text[run]):
                run += 1
            if run == len(text):
                plain.append((run, i))
            elif text[run] == '"':
                self.closing.append((i, run, text[run + 1 :]))
        self.by_first = {char: tuple(ids) for char, ids in by_first.items()}
        plain.sort()
        self.plain_lengths = [length for length, _ in plain]
        self.plain_ids = torch.tensor([i for _, i in plain], dtype=torch.long)


_TABLES: weakref.WeakKeyDictionary[Any, TokenTable] = weakref.WeakKeyDictionary()


def token_table(tokenizer: Any, eos_ids: Iterable[int]) -> TokenTable:
    """The (cached) :class:`TokenTable` of a tokenizer."""
    eos = frozenset(eos_ids)
    try:
        table = _TABLES.get(tokenizer)
    except TypeError:
        table = None
    if table is None or set(table.eos.tolist()) != eos:
        table = TokenTable(tokenizer, eos)
        with contextlib.suppress(TypeError):  # a tokenizer that takes no weak reference is not cached
            _TABLES[tokenizer] = table
    return table


class ConstrainedDecoder:
    """Which token ids keep the output inside a :class:`JsonGrammar`, per state (cached)."""

    def __init__(self, grammar: JsonGrammar, table: TokenTable) -> None:
        self.grammar = grammar
        self.table = table
        self._cache: dict[State, tuple[Any, ...]] = {}

    def allowed(self, state: State | None) -> tuple[Any, ...]:
        """The allowed ids in ``state`` as one or more 1-D index tensors (a union)."""
        if state is None:
            return (self.table.eos,)  # cannot happen under the mask; end rather than loop
        cached = self._cache.get(state)
        if cached is None:
            cached = self._cache[state] = self._compute(state)
        return cached

    def _compute(self, state: State) -> tuple[Any, ...]:
        import torch

        table, grammar = self.table, self.grammar
        if state[0] == "str":
            _, length, shortest, longest, after = state
            room = longest - length if longest is not None else math.inf
            plain = table.plain_ids[: bisect_right(table.plain_lengths, room)]
            closing = [
                i
                for i, run, rest in table.closing
                if run <= room and length + run >= shortest and grammar.advance(after, rest) is not None
            ]
            parts = [plain, torch.tensor(closing, dtype=torch.long)]
        else:
            ids = [
                i
                for first, group in table.by_first.items()
                if grammar.step(state, first) is not None
                for i in group
                if grammar.advance(state, table.texts[i]) is not None
            ]
            parts = [torch.tensor(ids, dtype=torch.long)]
        if grammar.accepting(state):
            parts.append(table.eos)
        parts = [p for p in parts if p.numel()]
        return tuple(parts) if parts else (table.eos,)

    def hook(self) -> MaskHook:
        """A fresh logits hook for one generation."""
        return MaskHook(self)


class MaskHook:
    """The logits hook of one constrained generation: ``hook(generated_ids, logits) -> logits``.

    Follows the grammar over the tokens generated so far and sets every disallowed logit to -inf.
    """

    def __init__(self, decoder: ConstrainedDecoder) -> None:
        self.decoder = decoder
        self.state: State | None = decoder.grammar.start
        self.seen = 0

    def __call__(self, generated: list[int], logits: Any) -> Any:
        import torch

        grammar, texts = self.decoder.grammar, self.decoder.table.texts
        for token in generated[self.seen :]:
            self.state = grammar.advance(self.state, texts[token] if token < len(texts) else "")
        self.seen = len(generated)
        masked = torch.full_like(logits, float("-inf"))
        for ids in self.decoder.allowed(self.state):
            masked[ids] = logits[ids]
        return masked


def schema_key(schema: dict[str, Any]) -> str:
    """A canonical text of ``schema``, to cache what is built from it."""
    return json.dumps(schema, sort_keys=True, ensure_ascii=False)
