"""Either that, or prompt a large language model: an NLU for the frame bot that asks an LLM.

:class:`LLMNLU` is a drop-in replacement for the classic :class:`~rejoinder.bots.frames.nlu.pipeline.NLU`
(the same ``parse(text, now) -> Parse``), so the frame bot needs no special casing. It formats the
domain - its intents (the frames' intents and the intents that have a plain response) and its slots
with their types, choices and questions - into a system prompt, adds a few examples from the domain's
NLU training data as earlier turns, and asks the backend's chat template for ONE JSON object::

    {"intent": "<one of the intents, or none>", "slots": {"<slot name>": "<the user's words>"}}

The JSON is guaranteed to parse by constrained decoding, with one schema (:class:`OutputSchema`) for
every backend:

- ``torch``: :class:`ConstrainedDecoder`, a token-masking logits hook. :class:`OutputGrammar` is a
  character-level state machine for exactly this object shape (the intent an enum; slot names those
  of the intent's frame, any frame's for ``none`` and plain-response intents, each at most once;
  values JSON strings without escapes, at most ``max_value_chars`` characters). Every vocabulary
  id's text is decoded once (:class:`TokenTable`); at each step only the tokens whose whole text
  keeps the output a valid prefix are allowed, and EOS only once the object is complete. Allowed
  sets are cached per state; tokens are prefiltered by their first character, and inside a string
  value (where most of the vocabulary is allowed) a precomputed length-sorted list of "plain
  string" tokens is sliced instead of testing each token. For SmolLM2's 49k vocabulary the table
  takes ~0.2 s once and every state of a whole answer ~0.2 s together, then nothing (cached).
  The system prompt and examples are the same for every utterance, so their key/value cache is
  computed once and reused (:class:`PrefixCachedDecoder`); each turn prefills only the user's
  message (``prefix_cache=False`` goes through the backend's batching loop, ``stream_ids`` with
  the hook, instead).
- ``llama.cpp``: a GBNF grammar from the same JSON Schema (``LlamaGrammar.from_json_schema``).
- ``openai``: ``response_format`` of type ``json_schema`` with the same schema (servers such as vLLM
  and llama.cpp's enforce it); output that still fails to parse reads as intent ``none``.
- any other backend (tests' fakes): plain chat, the first JSON object in the reply, else ``none``.

Mapping to a :class:`Parse`: the intent (``none`` -> no intent); every slot string is located in
the utterance - verbatim (case-insensitive), else as the same value under the slot's typed parser
(``values.extract``: "Moscow" finds "из Москвы", "credit" finds "my mastercard"), else by fuzzy
alignment (typos) - and becomes a tagged span, so the tracker normalises and fills it exactly as it
does the slot tagger's spans (and its typed parsers still read the whole utterance for what the
LLM missed). Strings found nowhere in the utterance are dropped: the tracker only takes values the
user said. Dialogue acts (yes, no, cancel...) keep coming from the word rules of the pipeline.

Confidence: with the torch backend, the probability of the intent under the constraint - the
product, over the tokens that spelt the intent, of each chosen token's probability among the
allowed tokens (greedy decoding, so this is how sure the model was of the label it gave). The
other backends return no token probabilities here: a valid enum-constrained choice counts 1.0, an
unparseable reply 0.0.

The LLM sees one utterance at a time, like the classic pipeline (``parse`` has no dialogue
state): a bare "Paris" answered to "Where to?" is ``none`` with a ``to``/``from`` guess, and the
tracker's role and asked-slot rules decide.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import weakref
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from rejoinder.bots.frames import values as typed
from rejoinder.bots.frames.domain import DEFAULT_RESPONSES, Domain
from rejoinder.bots.frames.nlu.data import Example, Span
from rejoinder.bots.frames.nlu.pipeline import ACTS, Parse, dialogue_acts
from rejoinder.bots.frames.schema import Slot
from rejoinder.bots.llm.backends import Backend, Messages
from rejoinder.bots.llm.generation import GenerationParams

NONE = "none"
MAX_VALUE_CHARS = 48
MAX_SLOTS = 6
FUZZY_SCORE = 80.0
"""Least rapidfuzz partial-ratio score for a slot string that is not verbatim in the utterance."""

State = tuple[Any, ...]


# ------------------------------------------------------------------------------------------------
# The output's schema


@dataclass(frozen=True)
class OutputSchema:
    """What the LLM may answer: the intent labels and, per intent, the slot names it may fill."""

    intents: tuple[str, ...]
    """Intent names, without ``none`` (which is always allowed)."""
    keys: tuple[tuple[str, tuple[str, ...]], ...]
    """(intent, slot names) for every label including ``none``."""
    max_value_chars: int = MAX_VALUE_CHARS
    max_slots: int = MAX_SLOTS

    @classmethod
    def build(
        cls,
        frame_slots: dict[str, Sequence[str]],
        other_intents: Sequence[str] = (),
        *,
        max_value_chars: int = MAX_VALUE_CHARS,
        max_slots: int = MAX_SLOTS,
    ) -> OutputSchema:
        """``frame_slots``: intent -> the slots of the frame it opens; ``other_intents`` open no frame.

        The other intents and ``none`` may fill any slot (an answer to the open frame's question).
        """
        everything = tuple(dict.fromkeys(name for names in frame_slots.values() for name in names))
        keys = {intent: tuple(names) for intent, names in frame_slots.items()}
        for intent in (*other_intents, NONE):
            keys.setdefault(intent, everything)
        intents = tuple(dict.fromkeys(i for i in (*frame_slots, *other_intents) if i != NONE))
        return cls(intents, tuple(keys.items()), max_value_chars, max_slots)

    @classmethod
    def for_domain(cls, domain: Domain, **limits: int) -> OutputSchema:
        frame_slots: dict[str, list[str]] = {}
        for frame in domain.frames:
            for intent in frame.intents or [frame.name]:
                frame_slots.setdefault(intent, [s.name for s in frame.slots])
        return cls.build(frame_slots, response_intents(domain), **limits)

    @property
    def labels(self) -> tuple[str, ...]:
        return (*self.intents, NONE)

    def slots_of(self, intent: str) -> tuple[str, ...]:
        return dict(self.keys).get(intent, ())

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for _, names in self.keys for name in names))

    def max_chars(self) -> int:
        """The longest output the grammar admits, in characters (bounds the tokens to generate)."""
        longest_intent = max(len(label) for label in self.labels)
        longest_key = max((len(name) for name in self.slot_names), default=0)
        slots = min(self.max_slots, max((len(names) for _, names in self.keys), default=0))
        # {"intent": "<intent>", "slots": { "<key>": "<value>", ... }}
        return 30 + longest_intent + slots * (longest_key + self.max_value_chars + 9)

    def json_schema(self, *, per_intent: bool = True) -> dict[str, Any]:
        """The JSON Schema of the output; ``per_intent`` ties slot names to intents (``anyOf``)."""

        def shape(labels: Sequence[str], names: Sequence[str]) -> dict[str, Any]:
            string = {"type": "string", "maxLength": self.max_value_chars}
            return {
                "type": "object",
                "properties": {
                    "intent": {"type": "string", "enum": list(labels)},
                    "slots": {
                        "type": "object",
                        "properties": {name: dict(string) for name in names},
                        "additionalProperties": False,
                    },
                },
                "required": ["intent", "slots"],
                "additionalProperties": False,
            }

        if not per_intent:
            return shape(self.labels, self.slot_names)
        groups: dict[tuple[str, ...], list[str]] = {}
        for intent, names in self.keys:
            groups.setdefault(names, []).append(intent)
        if len(groups) == 1:
            [(names, labels)] = groups.items()
            return shape(labels, names)
        return {"anyOf": [shape(labels, names) for names, labels in groups.items()]}


def response_intents(domain: Domain) -> list[str]:
    """Intents the domain answers with a plain response (not the built-in texts nor dialogue acts)."""
    builtin = set(DEFAULT_RESPONSES.get(domain.language, {})) | set(ACTS)
    return [key for key in domain.responses if key not in builtin and re.fullmatch(r"[A-Za-z_]\w*", key)]


# ------------------------------------------------------------------------------------------------
# The character-level state machine

DONE: State = ("done",)


def _is_content(char: str) -> bool:
    """Whether ``char`` may stand unescaped inside the JSON strings we allow (no escapes at all)."""
    return char != '"' and char != "\\" and ord(char) >= 0x20


class OutputGrammar:
    """Exactly the objects of an :class:`OutputSchema`, as a deterministic character automaton.

    The accepted language is ``{"intent":_"<label>",_"slots":_{_"<key>":_"<value>",_...}}`` where
    each ``_`` is an optional single space (so ``json.dumps`` output is accepted), keys are the
    intent's slot names, each at most once and at most ``max_slots`` of them, and values hold at
    most ``max_value_chars`` characters, none of them ``"``, ``\\`` or a control character. States
    are hashable tuples; :meth:`step` is memoised.
    """

    def __init__(self, schema: OutputSchema) -> None:
        self.schema = schema
        self.labels = schema.labels
        self._keys = {intent: frozenset(names) for intent, names in schema.keys}
        self.start: State = self._lit('{"intent":', self._ws(self._lit('"', ("intent", ""))))
        self.step = lru_cache(maxsize=1 << 18)(self._step)

    # -- building states -----------------------------------------------------------------------
    @staticmethod
    def _lit(text: str, then: State) -> State:
        """Expect ``text`` exactly, then go on in ``then``."""
        return ("lit", text, 0, then)

    @staticmethod
    def _ws(then: State) -> State:
        """An optional single space, then ``then``."""
        return ("ws", then)

    def _available(self, intent: str, used: frozenset[str]) -> frozenset[str]:
        if len(used) >= self.schema.max_slots:
            return frozenset()
        return self._keys.get(intent, frozenset()) - used

    # -- transitions ---------------------------------------------------------------------------
    def _step(self, state: State, char: str) -> State | None:
        kind = state[0]
        if kind == "lit":
            _, text, i, then = state
            if char != text[i]:
                return None
            return then if i + 1 == len(text) else ("lit", text, i + 1, then)
        if kind == "ws":
            then = state[1]
            return then if char == " " else self.step(then, char)
        if kind == "intent":
            prefix = state[1]
            if char == '"':
                if prefix not in self.labels:
                    return None
                after = ("keys", prefix, frozenset(), False)
                return self._lit(",", self._ws(self._lit('"slots":', self._ws(self._lit("{", after)))))
            grown = prefix + char
            return ("intent", grown) if any(label.startswith(grown) for label in self.labels) else None
        if kind == "keys":
            _, intent, used, spaced = state
            if char == " " and not spaced:
                return ("keys", intent, used, True)
            if char == "}":
                return self._lit("}", DONE)
            if char == '"' and self._available(intent, used):
                return ("key", "", intent, used)
            return None
        if kind == "key":
            _, prefix, intent, used = state
            available = self._available(intent, used)
            if char == '"':
                if prefix not in available:
                    return None
                return self._lit(":", self._ws(self._lit('"', ("value", 0, intent, used | {prefix}))))
            grown = prefix + char
            return ("key", grown, intent, used) if any(k.startswith(grown) for k in available) else None
        if kind == "value":
            _, length, intent, used = state
            if char == '"':
                return ("next", intent, used)
            if _is_content(char) and length < self.schema.max_value_chars:
                return ("value", length + 1, intent, used)
            return None
        if kind == "next":
            _, intent, used = state
            if char == "," and self._available(intent, used):
                return self._ws(self._lit('"', ("key", "", intent, used)))
            if char == "}":
                return self._lit("}", DONE)
            return None
        return None  # DONE accepts nothing more

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
        return self.advance(self.start, text) == DONE

    @staticmethod
    def is_complete(state: State | None) -> bool:
        return state == DONE

    @staticmethod
    def in_intent(state: State | None) -> bool:
        return state is not None and state[0] == "intent"


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
    """Which token ids keep the output inside an :class:`OutputGrammar`, per state (cached)."""

    def __init__(self, grammar: OutputGrammar, table: TokenTable) -> None:
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

        if state == DONE:
            return (self.table.eos,)
        table, grammar = self.table, self.grammar
        if state[0] == "value":
            _, length, intent, used = state
            room = grammar.schema.max_value_chars - length
            plain = table.plain_ids[: bisect_right(table.plain_lengths, room)]
            after: State = ("next", intent, used)
            closing = [i for i, run, rest in table.closing if run <= room and grammar.advance(after, rest) is not None]
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
        parts = [p for p in parts if p.numel()]
        return tuple(parts) if parts else (table.eos,)

    def hook(self) -> MaskHook:
        """A fresh logits hook for one generation."""
        return MaskHook(self)


class MaskHook:
    """The logits hook of one constrained generation: ``hook(generated_ids, logits) -> logits``.

    Follows the grammar over the tokens generated so far, sets every disallowed logit to -inf, and
    sums the log-probability (among the allowed tokens) of each chosen token that spelt the intent.
    """

    def __init__(self, decoder: ConstrainedDecoder) -> None:
        self.decoder = decoder
        self.state: State | None = decoder.grammar.start
        self.seen = 0
        self.intent_logprob = 0.0
        self._logprobs: Any = None

    def __call__(self, generated: list[int], logits: Any) -> Any:
        import torch

        grammar, texts = self.decoder.grammar, self.decoder.table.texts
        for token in generated[self.seen :]:
            text = texts[token] if token < len(texts) else ""
            touches_intent = False
            state = self.state
            for char in text:
                if state is None:
                    break
                touches_intent = touches_intent or grammar.in_intent(state)
                state = grammar.step(state, char)
            if touches_intent and self._logprobs is not None:
                self.intent_logprob += float(self._logprobs[token])
            self.state = state
        self.seen = len(generated)
        masked = torch.full_like(logits, float("-inf"))
        for ids in self.decoder.allowed(self.state):
            masked[ids] = logits[ids]
        self._logprobs = torch.log_softmax(masked, dim=-1)
        return masked

    @property
    def complete(self) -> bool:
        return self.decoder.grammar.is_complete(self.state)


class PrefixCachedDecoder:
    """Constrained decoding on a torch backend's model that prefills the prompt's constant part once.

    Every utterance is sent after the same system prompt and examples (hundreds of tokens); their
    key/value cache is computed on the first call and kept, and each call feeds only the rest of
    the prompt, decodes under the mask, then crops the cache back to the constant part. One
    sequence at a time (a lock), outside the backend's batching loop; sampling honours
    ``temperature`` (0: greedy) and ``top_p``.
    """

    def __init__(self, model: Any, eos_ids: Iterable[int]) -> None:
        import inspect
        import threading

        self.model = model
        self.eos_ids = set(eos_ids)
        parameters = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        self._lock = threading.Lock()
        self._prefix: list[int] | None = None
        self._cache: Any = None

    def generate(self, ids: Sequence[int], prefix: int, hook: MaskHook, params: GenerationParams) -> list[int]:
        """Token ids continuing ``ids``, whose first ``prefix`` ids are the constant part."""
        import torch

        ids = list(ids)
        with self._lock, torch.inference_mode():
            if self._prefix != ids[:prefix] or self._cache is None:
                self._cache = None
                output = self.model(input_ids=torch.tensor([ids[:prefix]]), use_cache=True, **self._keep_last)
                self._cache, self._prefix = self._cache_of(output), ids[:prefix]
            cache = self._cache
            try:
                output = self.model(
                    input_ids=torch.tensor([ids[prefix:]]),
                    use_cache=True,
                    **self._keep_last,
                    **{self._cache_arg: cache},
                )
                generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
                generated: list[int] = []
                for _ in range(params.max_new_tokens):
                    logits = hook(generated, output.logits[0, -1].float())
                    token = self._choose(logits, params, generator)
                    if token in self.eos_ids:
                        break
                    generated.append(token)
                    output = self.model(input_ids=torch.tensor([[token]]), use_cache=True, **{self._cache_arg: cache})
                return generated
            finally:
                extra = cache.get_seq_length() - prefix
                if extra > 0 and getattr(cache, "is_croppable", True) and hasattr(cache, "crop"):
                    cache.crop(-extra)  # a negative count removes that many (transformers 4 and 5 alike)
                elif extra != 0:
                    self._cache = self._prefix = None

    @staticmethod
    def _cache_of(output: Any) -> Any:
        cache = getattr(output, "cache", None)
        return cache if cache is not None else output.past_key_values

    @staticmethod
    def _choose(logits: Any, params: GenerationParams, generator: Any) -> int:
        import torch

        if params.temperature == 0:
            return int(torch.argmax(logits))
        logits = logits / params.temperature
        if params.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True)
            probs = torch.softmax(ordered, dim=-1)
            ordered[torch.cumsum(probs, dim=-1) - probs > params.top_p] = float("-inf")
            logits = torch.full_like(logits, float("-inf")).scatter(0, order, ordered)
        return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))


# ------------------------------------------------------------------------------------------------
# The NLU


@dataclass
class Understanding:
    """What the LLM answered for one utterance."""

    intent: str = NONE
    slots: dict[str, str] = field(default_factory=dict)
    confidence: float = 0.0
    raw: str = ""
    valid: bool = False


_TYPE_WORDS = {
    "city": "a city",
    "location": "a place",
    "date": "a date",
    "time": "a time of day",
    "datetime": "a date and time",
    "number": "a number",
    "integer": "a whole number",
    "money": "an amount with its currency",
    "phone": "a phone number",
    "email": "an e-mail address",
    "card_number": "a card number",
    "account_number": "an account number",
    "person": "a person's name",
    "text": "free text",
    "regex": "a code",
    "lookup": "a name from a list",
}
_YES = {"en": "yes, that's right", "ru": "да, всё верно"}


class LLMNLU:
    """Intent and slots from an LLM, constrained to one JSON object; dialogue acts from word rules.

    ``shots`` examples per intent from the domain's NLU training data are shown as earlier turns
    (plus a few bare answers as ``none``); ``params`` default to greedy decoding without a
    repetition penalty (JSON repeats quotes by nature).
    """

    def __init__(
        self,
        domain: Domain,
        backend: Backend,
        *,
        shots: int = 2,
        max_value_chars: int = MAX_VALUE_CHARS,
        max_slots: int = MAX_SLOTS,
        params: GenerationParams | None = None,
        examples: Sequence[Example] | None = None,
        prefix_cache: bool = True,
    ) -> None:
        self.domain = domain
        self.prefix_cache = prefix_cache
        self.language = domain.language
        self.backend = backend
        self.schema = OutputSchema.for_domain(domain, max_value_chars=max_value_chars, max_slots=max_slots)
        self.grammar = OutputGrammar(self.schema)
        self.params = (params or GenerationParams(temperature=0.0, repetition_penalty=1.0)).with_(
            max_new_tokens=self.schema.max_chars() + 2
        )
        if examples is None:
            examples = _training_examples(domain)
        self.shots = self._shots(examples, shots)
        self.system = self._system_prompt()
        self._decoder: ConstrainedDecoder | None = None
        self._prefixed: PrefixCachedDecoder | None = None
        self._prefix_ids: list[int] | None = None
        self._llama_grammar: Any = None

    # -- the prompt ----------------------------------------------------------------------------
    def _slot_for(self, name: str, intent: str | None = None) -> Slot | None:
        """The slot called ``name``: in the frame ``intent`` opens, else the first frame that has one."""
        frame = self.domain.frame_for_intent(intent) if intent and intent != NONE else None
        frames = ([frame] if frame is not None else []) + list(self.domain.frames)
        for candidate in frames:
            for slot in candidate.slots:
                if slot.name == name:
                    return slot
        return None

    def _system_prompt(self) -> str:
        lines = [
            f"You understand messages to the assistant of {self.domain.name.replace('_', ' ')}. Read the user's"
            ' message and answer with one JSON object: {"intent": "<intent>", "slots": {"<slot>": "<words>"}}.',
            "",
            "Intents:",
        ]
        for frame in self.domain.frames:
            for intent in frame.intents or [frame.name]:
                lines.append(f"- {intent}: {self.domain.title(frame.name)}")
        for intent in response_intents(self.domain):
            lines.append(f"- {intent}: a question about {intent.replace('_', ' ')}")
        lines.append(f"- {NONE}: none of these (an answer to a question, yes, no, thanks, a greeting)")
        lines += ["", "Slots (copy the user's own words; leave out what the message does not say):"]
        described: set[str] = set()
        for frame in self.domain.frames:
            for slot in frame.slots:
                if slot.name in described:
                    continue
                described.add(slot.name)
                users = [i for f in self.domain.frames if any(s.name == slot.name for s in f.slots)
                         for i in (f.intents or [f.name])]  # fmt: skip
                what = _TYPE_WORDS.get(slot.type, slot.type)
                if slot.type == "enum":
                    what = "one of " + ", ".join(c.value for c in slot.choice_values())
                role = slot.role or typed.default_role(slot.name)
                detail = f" ({role})" if role and slot.type in ("city", "location") else ""
                asked = f' - asked as "{slot.prompt}"' if slot.prompt else ""
                lines.append(f"- {slot.name} ({', '.join(users)}): {what}{detail}{asked}")
        lines += ["", "Answer with the JSON object only."]
        return "\n".join(lines)

    def _shots(self, examples: Sequence[Example], per_intent: int) -> list[tuple[str, str]]:
        """(user text, JSON answer) pairs: ``per_intent`` examples per intent, then bare answers."""
        chosen: list[tuple[str, str]] = []
        if per_intent <= 0:
            return chosen
        by_intent: dict[str, list[Example]] = {}
        for example in examples:
            if example.intent in self.schema.intents:
                by_intent.setdefault(example.intent, []).append(example)
        bare: list[tuple[str, str]] = []
        for intent in self.schema.intents:
            pool = by_intent.get(intent, [])
            # the richest annotated example first, then the first plain one, then the rest in order
            ordered = sorted(pool, key=lambda e: -len(e.spans))[:1] + [e for e in pool if not e.spans][:1] + pool
            taken: list[Example] = []
            for example in ordered:
                if len(taken) >= per_intent:
                    break
                if example in taken:
                    continue
                said = {s.slot: example.text[s.start : s.end] for s in example.spans}
                answer = self._answer(example.text, intent, said)
                if answer is not None:
                    taken.append(example)
                    chosen.append((example.text, answer))
            own = set(self.schema.slots_of(intent))
            for example in pool:
                if example.spans and len(bare) < 3 and {s.slot for s in example.spans} <= own:
                    span = example.spans[-1]
                    words = example.text[span.start : span.end]
                    answer = self._answer(words, NONE, {span.slot: words})
                    if answer is not None and all(words != b[0] for b in bare):
                        bare.append((words, answer))
                        break
        yes = _YES.get(self.language, _YES["en"])
        return [*chosen, *bare, (yes, self._answer(yes, NONE, {}) or "")]

    def _answer(self, text: str, intent: str, slots: dict[str, str]) -> str | None:
        """The JSON answer for an example, or None when the grammar would not allow it."""
        answer = json.dumps({"intent": intent, "slots": slots}, ensure_ascii=False)
        return answer if self.grammar.accepts(answer) else None

    def messages(self, text: str) -> list[dict[str, str]]:
        """The chat sent to the model for ``text``."""
        chat = [{"role": "system", "content": self.system}]
        for said, answer in self.shots:
            chat += [{"role": "user", "content": said}, {"role": "assistant", "content": answer}]
        chat.append({"role": "user", "content": text})
        return chat

    # -- asking the model ----------------------------------------------------------------------
    def understand(self, text: str) -> Understanding:
        """The LLM's intent and slot strings for ``text`` (intent ``none`` when the reply is unusable)."""
        raw, confidence = self._generate(self.messages(text))
        return self.read(raw, confidence)

    def read(self, raw: str, confidence: float | None = None) -> Understanding:
        """Check a reply against the schema: unknown intents read as none, unknown or empty slots go."""
        data = _first_json_object(raw)
        if not isinstance(data, dict) or not isinstance(data.get("intent"), str):
            return Understanding(raw=raw)
        intent = data["intent"] if data["intent"] in self.schema.labels else NONE
        allowed = set(self.schema.slots_of(intent))
        slots: dict[str, str] = {}
        given = data.get("slots")
        for name, value in (given if isinstance(given, dict) else {}).items():
            if name in allowed and isinstance(value, str | int | float) and str(value).strip():
                slots[name] = str(value).strip()[: self.schema.max_value_chars]
        valid = intent == data["intent"]
        return Understanding(intent, slots, confidence if confidence is not None else float(valid), raw, valid)

    def _generate(self, messages: Messages) -> tuple[str, float | None]:
        from rejoinder.bots.llm.backends.llamacpp import LlamaCppBackend
        from rejoinder.bots.llm.backends.openai import OpenAIBackend
        from rejoinder.bots.llm.backends.torch import TorchBackend

        backend = self.backend
        if isinstance(backend, TorchBackend):
            return self._generate_torch(backend, messages)
        if isinstance(backend, LlamaCppBackend):
            return self._generate_llamacpp(backend, messages), None
        if isinstance(backend, OpenAIBackend):
            return self._generate_openai(backend, messages), None
        return backend.chat(messages, self.params), None

    def constrained_decoder(self) -> ConstrainedDecoder:
        """The token-masking decoder for the torch backend (built on first use)."""
        if self._decoder is None:
            backend: Any = self.backend
            eos = backend.engine.eos_ids if hasattr(backend, "engine") else {backend.tokenizer.eos_token_id}
            self._decoder = ConstrainedDecoder(self.grammar, token_table(backend.tokenizer, eos))
        return self._decoder

    def _constant_prefix(self, backend: Any) -> list[int]:
        """The prompt ids every utterance shares (system prompt, examples, the user turn's opening)."""
        if self._prefix_ids is None:
            one, other = backend.chat_ids(self.messages("0")), backend.chat_ids(self.messages("Z"))
            common = 0
            while common < min(len(one), len(other)) and one[common] == other[common]:
                common += 1
            self._prefix_ids = one[:common]
        return self._prefix_ids

    def _generate_torch(self, backend: Any, messages: Messages) -> tuple[str, float | None]:
        hook = self.constrained_decoder().hook()
        ids = backend.chat_ids(messages)
        prefix = self._constant_prefix(backend) if self.prefix_cache else []
        room = backend.context_window - len(ids)
        if prefix and ids[: len(prefix)] == prefix and len(ids) > len(prefix) and room >= self.params.max_new_tokens:
            if self._prefixed is None:
                self._prefixed = PrefixCachedDecoder(backend.model, self.constrained_decoder().table.eos.tolist())
            out = self._prefixed.generate(ids, len(prefix), hook, self.params)
        else:
            out = list(backend.stream_ids(ids, self.params, hook=hook))
        raw = backend.tokenizer.decode(out, skip_special_tokens=True)
        return raw, math.exp(hook.intent_logprob) if hook.complete else None

    def _generate_llamacpp(self, backend: Any, messages: Messages) -> str:
        from llama_cpp import LlamaGrammar

        if self._llama_grammar is None:
            self._llama_grammar = LlamaGrammar.from_json_schema(json.dumps(self.schema.json_schema()), verbose=False)
        tokens = backend.llm.tokenize(backend._chat_prompt(messages).encode(), add_bos=True, special=True)
        options = backend._options(self.params, len(tokens))
        with backend._lock:
            output = backend.llm.create_completion(tokens, grammar=self._llama_grammar, **options)
        return str(output["choices"][0]["text"])

    def _generate_openai(self, backend: Any, messages: Messages) -> str:
        body = {
            **backend._body(self.params),
            "messages": [dict(m) for m in messages],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "nlu", "schema": self.schema.json_schema(per_intent=False), "strict": True},
            },
        }
        return "".join(backend._texts(backend._events("/chat/completions", body, None), "delta"))

    # -- the Parse -----------------------------------------------------------------------------
    def parse(self, text: str, now: datetime | None = None) -> Parse:
        """Intent, confidence and tagged slot spans from the LLM; dialogue acts from word rules."""
        parse = Parse(text, acts=dialogue_acts(text, self.language))
        if not text.strip():
            return parse
        understood = self.understand(text)
        parse.intent = None if understood.intent == NONE else understood.intent
        parse.confidence = understood.confidence
        parse.tagged = self.spans(text, understood, now or datetime.now())
        return parse

    def spans(self, text: str, understood: Understanding, now: datetime) -> list[Span]:
        """Where each slot string of ``understood`` is in ``text``, as the slot tagger's spans."""
        spans: list[Span] = []
        for name, said in understood.slots.items():
            slot = self._slot_for(name, understood.intent)
            if slot is None:
                continue
            where = locate(text, said, slot, [(s.start, s.end) for s in spans], language=self.language, now=now)
            if where is not None:
                spans.append(Span(where[0], where[1], name))
        return sorted(spans, key=lambda s: s.start)


def _first_json_object(raw: str) -> Any:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", raw):
        try:
            value, _ = decoder.raw_decode(raw[match.start() :])
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _fold(text: str) -> str:
    """Lower case keeping every offset, ``ё`` as ``е``."""
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text).replace("ё", "е")


def _free(start: int, end: int, taken: Sequence[tuple[int, int]]) -> bool:
    return all(end <= s or start >= e for s, e in taken)


def locate(
    text: str,
    said: str,
    slot: Slot | None,
    taken: Sequence[tuple[int, int]] = (),
    *,
    language: str = "en",
    now: datetime | None = None,
) -> tuple[int, int] | None:
    """The (start, end) in ``text`` of the words the LLM gave as ``said`` for ``slot``, or None.

    Verbatim first (case-insensitive; whole words preferred), then the same typed value (the
    slot's parser reads ``said`` and ``text`` alike), then a fuzzy match widened to whole words.
    Spans in ``taken`` are not used twice.
    """
    said = said.strip().strip(".,;:!?\"'").strip()
    if not said:
        return None
    haystack, needle = _fold(text), _fold(said)
    found = [(m.start(), m.start() + len(needle)) for m in re.finditer(re.escape(needle), haystack)]
    found = [(s, e) for s, e in found if _free(s, e, taken)]
    if found:
        whole = [
            (s, e)
            for s, e in found
            if (s == 0 or not text[s - 1].isalnum()) and (e == len(text) or not text[e].isalnum())
        ]
        return (whole or found)[0]
    if slot is not None and slot.type != "text":
        meant = typed.extract(said, slot.type, lang=language, now=now, slot=slot)
        if meant:
            for value in typed.extract(text, slot.type, lang=language, now=now, slot=slot):
                if value.value == meant[0].value and _free(value.start, value.end, taken):
                    return value.start, value.end
    from rapidfuzz import fuzz

    if len(needle) < 3:
        return None
    alignment = fuzz.partial_ratio_alignment(needle, haystack)
    if alignment is None or alignment.score < FUZZY_SCORE:
        return None
    start, end = alignment.dest_start, alignment.dest_end
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    if start >= end or not _free(start, end, taken):
        return None
    return start, end


def _training_examples(domain: Domain) -> list[Example]:
    if domain.nlu_path is None:
        return []
    from rejoinder.bots.frames.nlu.data import load_nlu_data

    return load_nlu_data(domain.nlu_path).examples


def build_llm_nlu(
    domain: Domain,
    *,
    model: str | None = None,
    backend: str = "auto",
    base_url: str | None = None,
    api_key: str | None = None,
    threads: int | None = None,
    **options: Any,
) -> LLMNLU:
    """An :class:`LLMNLU` for ``domain`` over the backend ``load_backend`` gives for these options."""
    from rejoinder.bots.llm.backends import load_backend

    extra = {"threads": threads} if threads else {}
    loaded = load_backend(backend, model=model or None, base_url=base_url or None, api_key=api_key, **extra)
    return LLMNLU(domain, loaded, **options)


class QuestionPhraser:
    """Words the question for a missing slot with a language model, from the slot's own prompt.

    The model gets the prompt and the values known so far and answers with one question; an answer
    that is empty, longer than :attr:`max_chars`, not a question, or a failure of the backend falls
    back to the prompt as written, so the bot never asks something unintelligible.
    """

    max_chars = 200

    def __init__(self, backend: Backend, language: str = "en", params: GenerationParams | None = None) -> None:
        self.backend = backend
        self.language = language
        self.params = params or GenerationParams(max_new_tokens=48, temperature=0.3, top_p=0.9, stop=("\n",))

    def messages(self, frame: Any, slot: Any, prompt: str, values: dict[str, Any]) -> list[dict[str, str]]:
        language = "Russian" if self.language == "ru" else "English"
        known = ", ".join(f"{name}: {value}" for name, value in values.items() if value not in (None, ""))
        system = (
            f"You help a customer service bot ({frame.description or frame.name}). Rewrite the bot's question "
            f"as one short, friendly question in {language}. Keep its meaning, add no facts, answer with the "
            "question only."
        )
        user = f"Question: {prompt}" + (f"\nAlready known: {known}" if known else "")
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def __call__(self, frame: Any, slot: Any, prompt: str, values: dict[str, Any]) -> str:
        from rejoinder.errors import RejoinderError

        try:
            text = self.backend.chat(self.messages(frame, slot, prompt, values), self.params).strip().strip('"')
        except RejoinderError:
            return prompt
        if not text or len(text) > self.max_chars or not text.rstrip().endswith("?"):
            return prompt
        return text
