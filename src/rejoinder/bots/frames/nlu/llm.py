"""Either that, or prompt a large language model: an NLU for the frame bot that asks an LLM.

:class:`LLMNLU` is a drop-in replacement for the classic :class:`~rejoinder.bots.frames.nlu.pipeline.NLU`
(the same ``parse(text, now) -> Parse``), so the frame bot needs no special casing. It formats the
domain - its intents (the frames' intents and the intents that have a plain response) and its slots
with their types, choices and questions - into a system prompt, adds a few examples from the domain's
NLU training data as earlier turns, and asks the backend's chat template for ONE JSON object::

    {"intent": "<one of the intents, or none>", "slots": {"<slot name>": "<the user's words>"}}

The JSON is guaranteed to parse by constrained decoding, a capability of every backend: the NLU
passes the JSON Schema of the answer (:meth:`OutputSchema.json_schema`: the intent an enum; slot
names those of the intent's frame - any frame's for ``none`` and plain-response intents - each at
most once; values strings of at most ``max_value_chars`` characters) with the chat, and the
backend writes only documents of it (a token mask on PyTorch, a grammar on llama.cpp,
``response_format`` on servers). A backend that still answers something else (a server that
ignores the schema, a test's fake) is read leniently: the first JSON object in the reply, else
intent ``none``. The system prompt and examples are the same for every utterance; the PyTorch
backend keeps their key/value cache, so each turn prefills only the user's message.

Mapping to a :class:`Parse`: the intent (``none`` -> no intent); every slot string is located in
the utterance - verbatim (case-insensitive), else as the same value under the slot's typed parser
(``values.extract``: "Moscow" finds "из Москвы", "credit" finds "my mastercard"), else by fuzzy
alignment (typos) - and becomes a tagged span, so the tracker normalises and fills it exactly as it
does the slot tagger's spans (and its typed parsers still read the whole utterance for what the
LLM missed). Strings found nowhere in the utterance are dropped: the tracker only takes values the
user said. Dialogue acts (yes, no, cancel...) keep coming from the word rules of the pipeline.

Confidence: where the backend gives token log-probabilities (PyTorch), the probability of the
intent under the constraint - the product, over the tokens that spelt the intent, of each chosen
token's probability among the allowed tokens (greedy decoding, so this is how sure the model was
of the label it gave). Otherwise a valid enum-constrained choice counts 1.0, an unparseable reply
0.0.

The LLM sees one utterance at a time, like the classic pipeline (``parse`` has no dialogue
state): a bare "Paris" answered to "Where to?" is ``none`` with a ``to``/``from`` guess, and the
tracker's role and asked-slot rules decide.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rejoinder.bots.frames import values as typed
from rejoinder.bots.frames.domain import DEFAULT_RESPONSES, Domain
from rejoinder.bots.frames.nlu.pipeline import ACTS, Parse, dialogue_acts
from rejoinder.bots.frames.schema import Slot
from rejoinder.datasets.nlu import Example, Span
from rejoinder.llm.backends import Backend, Messages
from rejoinder.llm.constrained import JsonGrammar
from rejoinder.llm.generation import GenerationParams, TokenLogprob, drain

NONE = "none"
MAX_VALUE_CHARS = 48
MAX_SLOTS = 6
FUZZY_SCORE = 80.0
"""Least rapidfuzz partial-ratio score for a slot string that is not verbatim in the utterance."""


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
        """The longest output the schema admits, in characters (bounds the tokens to generate)."""
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
                        "maxProperties": self.max_slots,
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
    ) -> None:
        self.domain = domain
        self.language = domain.language
        self.backend = backend
        self.schema = OutputSchema.for_domain(domain, max_value_chars=max_value_chars, max_slots=max_slots)
        self.json_schema = self.schema.json_schema()
        self.grammar = JsonGrammar(self.json_schema)
        self.params = (params or GenerationParams(temperature=0.0, repetition_penalty=1.0)).with_(
            max_new_tokens=self.schema.max_chars() + 2
        )
        if examples is None:
            examples = _training_examples(domain)
        self.shots = self._shots(examples, shots)
        self.system = self._system_prompt()

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
        """The model's answer under the schema and, where the backend tells, the intent's probability."""
        raw, finish = drain(
            self.backend.stream_chat(messages, self.params, json_schema=self.json_schema, logprobs=True)
        )
        if not finish.logprobs or not self.grammar.accepts(raw):
            return raw, None
        return raw, intent_probability(raw, finish.logprobs)

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


def intent_probability(raw: str, logprobs: Sequence[TokenLogprob]) -> float | None:
    """The product of the probabilities of the tokens that spelt the intent's label (with its closing
    quote) in ``raw``, a JSON answer; None when ``raw`` does not start with the intent."""
    opening = re.match(r'\{ ?"intent": ?"', raw)
    if opening is None:
        return None
    start = opening.end()
    end = raw.find('"', start)
    if end < 0:
        return None
    total, offset = 0.0, 0
    for token in logprobs:
        token_start, offset = offset, offset + len(token.text)
        if offset > start and token_start <= end:
            total += token.logprob
    return math.exp(total)


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
    from rejoinder.llm.backends import load_backend

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
