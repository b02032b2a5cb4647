"""Prompting a language model for a task: zero-shot and few-shot, as in GPT-3 and T0.

A task is described by a *prompt template*, a YAML data file (the shipped ones are in
``templates/`` of the ``rejoinder.llm`` package; ``rejoinder prompt NAME`` finds them by name)::

    name: intent-few-shot-base
    description: Intent classification for base models, GPT-3 style.
    mode: text                 # chat: instruct models, through their chat template
                               # text: base models, one raw prompt to complete
    instruction: |             # the task description; {choices} lists the allowed answers
      Classify each banking customer message into one of these intents: {choices}.
    examples:                  # optional demonstrations (few-shot): the input's fields and the output
      - text: Where is my new card? I ordered it two weeks ago.
        output: card_arrival
    input: "Input: {text}"     # rendered with each JSONL record's fields
    output_prefix: "Intent:"   # text mode: what precedes each answer
    stop: ["\\n"]
    max_new_tokens: 16
    choices_from: labels       # or choices: [a, b, c]; answers are mapped to the closest choice

Zero-shot is the instruction and the input; few-shot puts k demonstrations in between (Brown et
al. 2020, "Language Models are Few-Shot Learners"); the template *is* the task, so one model can be
asked for many tasks by writing templates (Sanh et al. 2022, T0). In ``chat`` mode the instruction
is the system message and each demonstration a user/assistant pair; in ``text`` mode one prompt::

    <instruction>

    Input: <example 1>
    Intent: <output 1>

    Input: <the record>
    Intent:

When a template has choices (a classification task), every completion is mapped to the closest
choice - exact, then normalised (case, ``_``/``-``/camelCase as spaces), then a choice spelled out
inside the completion, then the best fuzzy match (rapidfuzz) above a cutoff - and the raw completion
is kept beside it; a completion that maps to no choice counts as an invalid answer.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rejoinder.datasets.nlu import DATASETS
from rejoinder.errors import ConfigError, InvalidMessage, SourceError
from rejoinder.llm.backends import Backend, load_backend
from rejoinder.llm.generation import GenerationParams
from rejoinder.resources import package_path

TEMPLATES_DIR = package_path("llm", "templates")
"""The shipped templates, one ``NAME.yaml`` each."""

MODES = ("chat", "text")
DATASET_DEFAULT_LIMIT = 200
"""How many test utterances of ``banking77``/``snips`` are scored (sampled by the seed) unless --limit says."""
DEFAULT_SHOTS = 5
"""Examples drawn from an ``--examples`` file when neither ``--shots`` nor the template says how many."""
FUZZY_CUTOFF = 80.0
"""Least similarity (0-100, rapidfuzz ``ratio`` of the normalised texts) for an answer to mean a choice.

A whole-string ratio, not a partial one: a chatty sentence that merely shares words with a label
must count as no choice (an invalid answer), while a misspelt or pluralised label still maps."""

NLU_REFERENCE = {
    "banking77": {
        "intent_accuracy": 0.9386,
        "source": "the trained NLU (rejoinder eval nlu, default pipeline), full test split",
    },
    "snips": {
        "intent_accuracy": 0.9700,
        "source": "the trained NLU (rejoinder eval nlu, default pipeline), full test split",
    },
}
"""Intent accuracy the default classic NLU pipeline measured (README, bench/results/nlu_*_embedding.json)."""

_KEYS = (
    "name",
    "description",
    "mode",
    "instruction",
    "examples",
    "input",
    "output_prefix",
    "stop",
    "max_new_tokens",
    "temperature",
    "choices",
    "choices_from",
)
_REQUIRED = ("name", "mode", "instruction", "input")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORDS = re.compile(r"[^\W_]+")

Record = dict[str, Any]
Progress = Callable[[int, int | None], None]
"""Called after each completion with (done, total); total is None for an unsized input."""


# -- safe formatting -------------------------------------------------------------------------------
class MissingFields(KeyError):
    """A template needs fields the values lack."""

    def __init__(self, missing: Sequence[str], available: Iterable[str]) -> None:
        self.missing = tuple(missing)
        self.available = tuple(available)
        super().__init__(", ".join(self.missing))

    def describe(self) -> str:
        names = ", ".join(repr(m) for m in self.missing)
        has = ", ".join(repr(a) for a in self.available) or "no fields"
        return f"missing field{'s' if len(self.missing) > 1 else ''} {names} (the record has {has})"


def placeholders(text: str) -> list[str]:
    """The ``{field}`` names of ``text`` in order (``{{`` and ``}}`` are literal braces).

    Raises ValueError for anything but plain names: unbalanced braces, ``{0}``, ``{a.b}``,
    ``{a[0]}``, ``{a!r}``, ``{a:>5}``.
    """
    names = []
    for _literal, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if not _FIELD.match(name) or spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"placeholder {{{shown}}} is not a plain {{field}} name")
        names.append(name)
    return names


def render(text: str, values: Mapping[str, Any]) -> str:
    """``text`` with each ``{field}`` replaced by ``str(values[field])``; nothing else is evaluated."""
    pieces, missing = [], []
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        pieces.append(literal)
        if name is None:
            continue
        if name not in values:
            missing.append(name)
            continue
        pieces.append(str(values[name]))
    if missing:
        raise MissingFields(list(dict.fromkeys(missing)), values.keys())
    return "".join(pieces)


# -- templates -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """A prompt template (see the module docstring); build it with :func:`load_template`."""

    name: str
    mode: str
    instruction: str
    input: str
    description: str = ""
    examples: tuple[dict[str, str], ...] = ()
    output_prefix: str = ""
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 32
    temperature: float = 0.0
    choices: tuple[str, ...] | None = None
    choices_from: str | None = None
    path: Path | None = None

    @property
    def input_fields(self) -> tuple[str, ...]:
        """The record fields the input needs."""
        return tuple(dict.fromkeys(placeholders(self.input)))

    @property
    def classifies(self) -> bool:
        """Whether answers are mapped to choices (``choices`` or ``choices_from``)."""
        return self.choices is not None or self.choices_from is not None

    @property
    def shots(self) -> int:
        return len(self.examples)

    def with_examples(self, examples: Iterable[Mapping[str, Any]]) -> Template:
        """This template with ``examples`` (each: the input's fields and ``output``) as its demonstrations."""
        chosen = []
        for i, example in enumerate(examples, start=1):
            if "output" not in example:
                raise ConfigError(f"template {self.name}: example {i} has no 'output'")
            try:
                render(self.input, example)
            except MissingFields as exc:
                raise ConfigError(f"template {self.name}: example {i}: {exc.describe()}") from None
            chosen.append({k: str(v) for k, v in example.items()})
        return replace(self, examples=tuple(chosen))

    def with_choices(self, labels: Iterable[str]) -> Template:
        """This template with its ``choices_from: labels`` resolved to ``labels`` (sorted, unique).

        A template with a fixed ``choices`` list, or without choices, is returned unchanged.
        """
        if self.choices_from is None or self.choices is not None:
            return self
        resolved = tuple(sorted({str(label) for label in labels if str(label).strip()}))
        if not resolved:
            raise ConfigError(f"template {self.name}: takes its choices from the data's labels, and there are none")
        return replace(self, choices=resolved)

    def params(self, seed: int | None = None) -> GenerationParams:
        """Sampling for this task: greedy unless the template sets a temperature, no repetition penalty.

        (A repetition penalty would push the model away from the labels it has just read.)
        """
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=1.0,
            repetition_penalty=1.0,
            stop=self.stop,
            seed=seed,
        )

    def rendered_instruction(self) -> str:
        """The instruction with ``{choices}`` filled in."""
        values = {}
        if "choices" in placeholders(self.instruction):
            if self.choices is None:
                raise ConfigError(
                    f"template {self.name}: takes its choices from the data's labels (choices_from: labels); "
                    "give labelled data (--eval, or --examples TRAIN.jsonl)"
                )
            values["choices"] = ", ".join(self.choices)
        return render(self.instruction, values).strip()

    def render_input(self, record: Mapping[str, Any]) -> str:
        """The input part of the prompt for ``record`` (raises :class:`MissingFields`)."""
        return render(self.input, record)

    def chat_messages(self, record: Mapping[str, Any]) -> list[dict[str, str]]:
        """``chat`` mode: the system instruction, one user/assistant pair per example, then the record."""
        messages = [{"role": "system", "content": self.rendered_instruction()}]
        for example in self.examples:
            messages.append({"role": "user", "content": self.render_input(example)})
            messages.append({"role": "assistant", "content": example["output"]})
        messages.append({"role": "user", "content": self.render_input(record)})
        return messages

    def text_prompt(self, record: Mapping[str, Any]) -> str:
        """``text`` mode: instruction, blank line, examples separated by blank lines, the record, the prefix."""
        prefix = self.output_prefix.rstrip()
        blocks = [self.rendered_instruction()]
        for example in self.examples:
            blocks.append(f"{self.render_input(example)}\n{prefix} {example['output']}")
        blocks.append(f"{self.render_input(record)}\n{prefix}")
        return "\n\n".join(blocks)

    def prompt(self, record: Mapping[str, Any]) -> list[dict[str, str]] | str:
        """What the model is given for ``record``: chat messages or a text prompt, by mode."""
        return self.chat_messages(record) if self.mode == "chat" else self.text_prompt(record)

    def clean(self, completion: str) -> str:
        """The answer in a completion: first non-empty line, without an echoed output prefix or quotes."""
        lines = [line.strip() for line in completion.strip().splitlines() if line.strip()]
        text = lines[0] if lines else ""
        prefix = self.output_prefix.strip()
        if prefix and text.lower().startswith(prefix.lower()):
            text = text[len(prefix) :].strip()
        return text.strip("\"'`*. ")


def shipped_templates() -> list[str]:
    """Names of the templates that ship with Rejoinder."""
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.yaml"))


def load_template(spec: str | Path) -> Template:
    """The template at path ``spec``, or the shipped template named ``spec``.

    A malformed file raises :class:`SourceError` naming the file, the line, the key and the fault.
    """
    path = Path(spec).expanduser()
    if not path.is_file():
        shipped = TEMPLATES_DIR / f"{spec}.yaml"
        if isinstance(spec, str) and _FIELD.match(spec.replace("-", "_")) and shipped.is_file():
            path = shipped
        else:
            raise ConfigError(
                f"template {str(spec)!r}: no such file, and not a shipped template ({', '.join(shipped_templates())})"
            )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read the template: {exc}", path=path) from None
    return parse_template(text, path)


def parse_template(text: str, path: str | Path | None = None) -> Template:
    """A template from YAML ``text``; ``path`` names it in errors."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourceError.from_yaml(exc, path, "the template is not valid YAML") from None
    return _TemplateReader(data, root, path).read()


class _TemplateReader:
    """Checks a template's data, raising errors positioned at the offending key."""

    def __init__(self, data: Any, root: Any, path: str | Path | None) -> None:
        self.data = data
        self.root = root
        self.path = Path(path) if path is not None else None

    def fail(self, reason: str, *keys: str | int, at_key: bool = False) -> SourceError:
        line, column = self._position(keys, at_key)
        where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
        return SourceError(f"key '{where}': {reason}" if keys else reason, path=self.path, line=line, column=column)

    def _position(self, keys: Sequence[str | int], at_key: bool) -> tuple[int | None, int | None]:
        import yaml

        node = self.root
        for n, key in enumerate(keys):
            if isinstance(node, yaml.MappingNode):
                pair = next(((k, v) for k, v in node.value if k.value == key), None)
                if pair is None:
                    break
                node = pair[0] if at_key and n == len(keys) - 1 else pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                break
        mark = getattr(node, "start_mark", None)
        return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)

    def text(self, key: str, *, required: bool = False, default: str = "") -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(f"missing required key '{key}'")
            return default
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.fail("expected a non-empty string" if required else "expected a string", key)
        return value

    def template_text(self, key: str, allowed: set[str] | None = None) -> str:
        value = self.text(key, required=True)
        try:
            names = placeholders(value)
        except ValueError as exc:
            raise self.fail(f"{exc} (write {{{{ and }}}} for literal braces)", key) from None
        if allowed is not None:
            unknown = [n for n in names if n not in allowed]
            if unknown:
                ok = ", ".join(f"{{{a}}}" for a in sorted(allowed)) or "none"
                raise self.fail(f"unknown placeholder {{{unknown[0]}}}; this key takes: {ok}", key)
        return value

    def read(self) -> Template:
        if not isinstance(self.data, dict):
            found = "an empty file" if self.data is None else type(self.data).__name__
            raise self.fail(f"a template must be a mapping of keys ({', '.join(_REQUIRED)}, ...), found {found}")
        for key in self.data:
            if key not in _KEYS:
                raise self.fail(f"unknown key; expected one of: {', '.join(_KEYS)}", str(key), at_key=True)
        for key in _REQUIRED:
            if key not in self.data:
                raise self.fail(f"missing required key '{key}'")
        name = self.text("name", required=True).strip()
        mode = self.data["mode"]
        if mode not in MODES:
            raise self.fail(f"expected 'chat' (instruct models) or 'text' (base models), found {mode!r}", "mode")
        instruction = self.template_text("instruction", allowed={"choices"})
        input_text = self.template_text("input")
        fields = placeholders(input_text)
        if not fields:
            raise self.fail("the input must use at least one {field} of the records", "input")
        output_prefix = self.text("output_prefix")
        if mode == "text" and not output_prefix.strip():
            raise self.fail("a text-mode template needs an output prefix such as 'Intent:'", "output_prefix")
        choices, choices_from = self._choices()
        if "choices" in placeholders(instruction) and choices is None and choices_from is None:
            raise self.fail("{choices} is used but the template has no 'choices' nor 'choices_from'", "instruction")
        return Template(
            name=name,
            mode=mode,
            instruction=instruction,
            input=input_text,
            description=self.text("description").strip(),
            examples=self._examples(fields, choices),
            output_prefix=output_prefix,
            stop=self._stop(),
            max_new_tokens=self._number("max_new_tokens", int, 32, minimum=1),
            temperature=float(self._number("temperature", float, 0.0, minimum=0)),
            choices=choices,
            choices_from=choices_from,
            path=self.path,
        )

    def _number(self, key: str, kind: type, default: float, *, minimum: float) -> Any:
        value = self.data.get(key, default)
        ok = isinstance(value, int) if kind is int else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or value < minimum:
            what = "an integer" if kind is int else "a number"
            raise self.fail(f"expected {what} of at least {minimum}, found {value!r}", key)
        return value

    def _stop(self) -> tuple[str, ...]:
        value = self.data.get("stop", [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.fail("expected a list of stop sequences", "stop")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.fail("a stop sequence must be a non-empty string", "stop", i)
        return tuple(value)

    def _choices(self) -> tuple[tuple[str, ...] | None, str | None]:
        choices, choices_from = self.data.get("choices"), self.data.get("choices_from")
        if choices is not None and choices_from is not None:
            raise self.fail("give 'choices' or 'choices_from', not both", "choices_from", at_key=True)
        if choices_from is not None and choices_from != "labels":
            raise self.fail(
                f"the only source of choices is 'labels' (the data's labels), found {choices_from!r}", "choices_from"
            )
        if choices is None:
            return None, choices_from
        if not isinstance(choices, list) or not choices:
            raise self.fail("expected a non-empty list of the allowed answers", "choices")
        seen: set[str] = set()
        for i, item in enumerate(choices):
            if not isinstance(item, str | int | float) or isinstance(item, bool) or not str(item).strip():
                raise self.fail("a choice must be a non-empty string", "choices", i)
            if str(item) in seen:
                raise self.fail(f"duplicate choice {str(item)!r}", "choices", i)
            seen.add(str(item))
        return tuple(str(c) for c in choices), None

    def _examples(self, fields: Sequence[str], choices: tuple[str, ...] | None) -> tuple[dict[str, str], ...]:
        value = self.data.get("examples", [])
        if value is None:
            value = []
        if not isinstance(value, list):
            raise self.fail("expected a list of examples, each with the input's fields and 'output'", "examples")
        examples = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail("an example must be a mapping of the input's fields and 'output'", "examples", i)
            for key, field_value in item.items():
                if not isinstance(field_value, str | int | float) or isinstance(field_value, bool):
                    raise self.fail("expected a string", "examples", i, str(key))
            if "output" not in item:
                raise self.fail("missing 'output' (the answer this example demonstrates)", "examples", i)
            missing = [f for f in fields if f not in item]
            if missing:
                raise self.fail(f"missing field {missing[0]!r}, which the input uses", "examples", i)
            if choices is not None and str(item["output"]) not in choices:
                raise self.fail(f"{str(item['output'])!r} is not one of the choices", "examples", i, "output")
            examples.append({str(k): str(v) for k, v in item.items()})
        return tuple(examples)


# -- choices ---------------------------------------------------------------------------------------
def normalise_label(text: str) -> str:
    """Lower-case words of a label or answer: ``card_arrival``, ``Card arrival`` and ``CardArrival`` agree."""
    return " ".join(_WORDS.findall(_CAMEL.sub(" ", text).lower()))


def map_choice(answer: str, choices: Sequence[str], cutoff: float = FUZZY_CUTOFF) -> tuple[str | None, str | None]:
    """The choice ``answer`` means and how it was found (``exact``, ``normalised``, ``contained``, ``fuzzy``).

    ``(None, None)`` when it means none of them (an invalid answer).
    """
    answer = answer.strip()
    if not answer or not choices:
        return None, None
    if answer in choices:
        return answer, "exact"
    target = normalise_label(answer)
    if not target:
        return None, None
    normalised = [normalise_label(c) for c in choices]
    for choice, norm in zip(choices, normalised, strict=True):
        if norm == target:
            return choice, "normalised"
    padded = f" {target} "
    inside = [
        (-len(n), padded.find(f" {n} "), c)
        for c, n in zip(choices, normalised, strict=True)
        if n and f" {n} " in padded
    ]
    if inside:
        return min(inside)[2], "contained"
    best = _fuzzy_best(target, normalised, cutoff)
    return (choices[best], "fuzzy") if best is not None else (None, None)


def _fuzzy_best(target: str, candidates: Sequence[str], cutoff: float) -> int | None:
    try:
        from rapidfuzz import fuzz, process
    except ImportError:  # rapidfuzz comes with the frames extra; difflib is a slower stand-in
        import difflib

        scores = [100 * difflib.SequenceMatcher(None, target, c).ratio() for c in candidates]
        best = max(range(len(scores)), key=scores.__getitem__)
        return best if scores[best] >= cutoff else None
    found = process.extractOne(target, candidates, scorer=fuzz.ratio, score_cutoff=cutoff)
    return found[2] if found is not None else None


# -- data ------------------------------------------------------------------------------------------
def read_jsonl(path: str | Path, required: Iterable[str] = ()) -> list[Record]:
    """The JSON objects of a JSONL file (blank lines skipped), each checked for the ``required`` fields.

    Errors name the file and line: broken JSON, a line that is not an object, a missing field.
    """
    p = Path(path)
    needed = tuple(dict.fromkeys(required))
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read the records: {getattr(exc, 'strerror', None) or exc}", path=p) from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"not valid JSON: {exc.msg}", path=p, line=number, column=exc.colno) from None
        if not isinstance(record, dict):
            raise SourceError(f"expected a JSON object, found {type(record).__name__}", path=p, line=number)
        missing = [name for name in needed if name not in record]
        if missing:
            raise SourceError(MissingFields(missing, record.keys()).describe(), path=p, line=number)
        records.append(record)
    if not records:
        raise SourceError("no records (expected one JSON object per line)", path=p)
    return records


def dataset_records(name: str) -> tuple[list[Record], list[Record]]:
    """(train, test) records ``{"text", "label"}`` of ``banking77`` or ``snips`` (shared data)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    from rejoinder.datasets.nlu import load_dataset

    train, test = load_dataset(name)

    def as_records(examples: Sequence[Any]) -> list[Record]:
        return [{"text": e.text, "label": e.intent} for e in examples if e.intent]

    return as_records(train), as_records(test)


def sample_examples(
    records: Sequence[Mapping[str, Any]], k: int, *, seed: int = 0, label_field: str = "label"
) -> list[dict[str, Any]]:
    """``k`` demonstrations drawn from labelled ``records``, balanced across labels where possible.

    Labels are visited in a seeded random order, one example each, round after round, so ``k`` at
    most the number of labels gives ``k`` different labels. Each result carries ``output`` = its label.
    """
    if k <= 0:
        return []
    rng = random.Random(seed)
    by_label: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get(label_field) is not None:
            by_label[str(record[label_field])].append(record)
    if sum(len(v) for v in by_label.values()) < k:
        raise ConfigError(f"asked for {k} examples, and only {sum(len(v) for v in by_label.values())} are labelled")
    labels = sorted(by_label)
    rng.shuffle(labels)
    pools = {label: rng.sample(by_label[label], len(by_label[label])) for label in labels}
    chosen: list[dict[str, Any]] = []
    while len(chosen) < k:
        for label in labels:
            if pools[label] and len(chosen) < k:
                chosen.append({**pools[label].pop(), "output": label})
    rng.shuffle(chosen)
    return chosen


def sample_records(records: Sequence[Record], limit: int, seed: int = 0) -> list[Record]:
    """``limit`` records drawn at random by ``seed``, kept in their original order."""
    if limit >= len(records):
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


# -- running ---------------------------------------------------------------------------------------
@dataclass
class Completion:
    """One record's result: the raw completion and, for classification, the choice it maps to."""

    record: Record
    completion: str
    choice: str | None = None
    match: str | None = None
    seconds: float = 0.0
    tokens: int | None = None

    def as_record(self, classifies: bool) -> Record:
        """The input fields plus ``completion`` (and ``choice`` when the template has choices)."""
        out = {**self.record, "completion": self.completion}
        if classifies:
            out["choice"] = self.choice
        return out


def run_template(
    backend: Backend,
    template: Template,
    records: Iterable[Mapping[str, Any]],
    params: GenerationParams | None = None,
    progress: Progress | None = None,
) -> Iterator[Completion]:
    """Prompt ``backend`` with ``template`` for each record, in order; yields :class:`Completion` objects.

    ``params`` defaults to :meth:`Template.params` (greedy). A ``choices_from: labels`` template must
    have its choices resolved first (:meth:`Template.with_choices`).
    """
    if template.mode == "chat" and not backend.has_chat_template:
        text_templates = ", ".join(n for n in shipped_templates() if n.endswith("-base")) or "a text-mode template"
        raise ConfigError(
            f"template {template.name} is for instruct models (mode: chat), and {backend.model_name} has no chat "
            f"template (a base model); use a text-mode template such as {text_templates}"
        )
    if template.choices_from is not None and template.choices is None:
        raise ConfigError(
            f"template {template.name}: takes its choices from the data's labels; resolve them first "
            "(Template.with_choices, or give labelled data)"
        )
    params = params or template.params()
    total = len(records) if isinstance(records, Sized) else None
    count_tokens = _token_counter(backend)
    for number, record in enumerate(records, start=1):
        try:
            prompt = template.prompt(record)
        except MissingFields as exc:
            raise ConfigError(f"record {number}: {exc.describe()}, which template {template.name} uses") from None
        started = time.perf_counter()
        try:
            raw = backend.complete(prompt, params) if isinstance(prompt, str) else backend.chat(prompt, params)
        except InvalidMessage as exc:
            raise InvalidMessage(f"record {number}: {exc}") from None
        seconds = time.perf_counter() - started
        choice, how = map_choice(template.clean(raw), template.choices) if template.choices else (None, None)
        tokens = count_tokens(raw) if count_tokens is not None else None
        yield Completion(dict(record), raw, choice, how, seconds, tokens)
        if progress is not None:
            progress(number, total)


def _token_counter(backend: Backend) -> Callable[[str], int] | None:
    """Counts a completion's tokens with the backend's tokenizer, where it has one in reach."""
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None or not callable(tokenizer):
        return None

    def count(text: str) -> int:
        if not text:
            return 0
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


@dataclass
class EvalReport:
    """How well a template does on labelled records."""

    template: str
    model: str
    examples: int
    shots: int
    accuracy: float
    invalid_rate: float | None
    """Share of completions that map to no choice (None when the template has no choices)."""
    per_label: dict[str, dict[str, int]]
    """For each gold or predicted label: ``gold`` (how often it is the answer), ``correct``, ``predicted``."""
    confusions: list[tuple[str, str, int]]
    """The ten commonest (gold, predicted, count) mistakes; an invalid answer is predicted ``(no choice)``."""
    seconds: float
    seconds_per_example: float
    tokens_per_second: float | None = None
    """Completion tokens per second of request time (prompt reading included); None without a tokenizer."""
    dataset: str | None = None
    reference: dict[str, Any] | None = None
    completions: list[Completion] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "model": self.model,
            "dataset": self.dataset,
            "examples": self.examples,
            "shots": self.shots,
            "accuracy": self.accuracy,
            "invalid_rate": self.invalid_rate,
            "seconds": round(self.seconds, 3),
            "seconds_per_example": round(self.seconds_per_example, 4),
            "tokens_per_second": round(self.tokens_per_second, 2) if self.tokens_per_second is not None else None,
            "per_label": self.per_label,
            "confusions": [list(c) for c in self.confusions],
            "reference": self.reference,
        }


INVALID = "(no choice)"


def evaluate_template(
    backend: Backend,
    template: Template,
    records: Sequence[Mapping[str, Any]],
    label_field: str = "label",
    text_field: str = "text",
    *,
    params: GenerationParams | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Accuracy of ``template`` on ``records`` labelled in ``label_field``.

    ``text_field`` names the field that holds the text when it is not ``text`` (the template sees it
    as ``{text}``). With choices, a prediction is the mapped choice; without, the cleaned completion
    compared to the label after normalisation. ``choices_from: labels`` is resolved from the labels
    of ``records`` when not resolved already.
    """
    rows = []
    for number, record in enumerate(records, start=1):
        for name in (label_field, text_field):
            if name not in record:
                raise ConfigError(f"record {number}: {MissingFields([name], record.keys()).describe()}")
        rows.append({**record, "text": record[text_field]} if text_field != "text" else dict(record))
    if not rows:
        raise ConfigError("nothing to evaluate: no records")
    gold = [str(r[label_field]) for r in rows]
    template = template.with_choices(gold)
    started = time.perf_counter()
    completions = list(run_template(backend, template, rows, params, progress))
    seconds = time.perf_counter() - started
    predicted: list[str | None] = []
    for completion in completions:
        if template.choices is not None:
            predicted.append(completion.choice)
        else:
            predicted.append(template.clean(completion.completion) or None)
    right = [p is not None and normalise_label(p) == normalise_label(g) for p, g in zip(predicted, gold, strict=True)]
    per_label: dict[str, dict[str, int]] = defaultdict(lambda: {"gold": 0, "correct": 0, "predicted": 0})
    for g, p, ok in zip(gold, predicted, right, strict=True):
        per_label[g]["gold"] += 1
        per_label[g]["correct"] += int(ok)
        if p is not None:
            per_label[p]["predicted"] += 1
    mistakes = Counter(
        (g, p if p is not None else INVALID) for g, p, ok in zip(gold, predicted, right, strict=True) if not ok
    )
    token_counts = [c.tokens for c in completions]
    generating = sum(c.seconds for c in completions)
    tokens_per_second = (
        sum(t for t in token_counts if t is not None) / generating
        if generating > 0 and all(t is not None for t in token_counts)
        else None
    )
    return EvalReport(
        template=template.name,
        model=backend.model_name,
        examples=len(rows),
        shots=template.shots,
        accuracy=sum(right) / len(rows),
        invalid_rate=(sum(p is None for p in predicted) / len(rows)) if template.choices is not None else None,
        per_label={label: per_label[label] for label in sorted(per_label)},
        confusions=[(g, p, n) for (g, p), n in mistakes.most_common(10)],
        seconds=seconds,
        seconds_per_example=seconds / len(rows),
        tokens_per_second=tokens_per_second,
        completions=completions,
    )


# -- the command line's job ------------------------------------------------------------------------
@dataclass
class PromptJob:
    """What ``rejoinder prompt`` runs: the template (examples and choices resolved) and the records."""

    template: Template
    records: list[Record]
    dataset: str | None = None
    label_field: str = "label"
    notes: list[str] = field(default_factory=list)

    @property
    def reference(self) -> dict[str, Any] | None:
        """The trained NLU's figure on the same dataset, and the published anchor, where known."""
        if self.dataset not in NLU_REFERENCE:
            return None
        from rejoinder.datasets.nlu import ANCHORS

        return {"nlu": NLU_REFERENCE[self.dataset], "published": ANCHORS.get(self.dataset)}


def prepare_job(
    template: str | Path | Template,
    source: str | Path,
    *,
    shots: int | None = None,
    examples: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    evaluate: bool = False,
    label_field: str = "label",
) -> PromptJob:
    """Load the template and the records, pick the demonstrations and resolve the choices.

    ``source`` is a JSONL file, or ``banking77``/``snips`` (their test split, ``limit`` records sampled
    by ``seed``, :data:`DATASET_DEFAULT_LIMIT` by default; demonstrations from their train split).
    ``shots`` overrides how many demonstrations: the template's first ``shots`` examples, or ``shots``
    sampled (balanced across labels) from the labelled ``examples`` file or the dataset's train split.
    """
    chosen = template if isinstance(template, Template) else load_template(template)
    if shots is not None and shots < 0:
        raise ConfigError("--shots: expected 0 or more")
    if limit is not None and limit < 1:
        raise ConfigError("--limit: expected at least 1")
    notes: list[str] = []
    train: list[Record] | None = None
    dataset = None
    path = Path(source)
    if not path.exists() and str(source) in DATASETS:
        dataset = str(source)
        train, test = dataset_records(dataset)
        records = sample_records(test, limit or DATASET_DEFAULT_LIMIT, seed)
        notes.append(f"{dataset}: {len(records)} of {len(test)} test utterances (sampled with seed {seed})")
    elif not path.is_file():
        raise ConfigError(f"input {str(source)!r}: no such file, and not a dataset ({', '.join(DATASETS)})")
    else:
        required = [*chosen.input_fields, *([label_field] if evaluate else [])]
        records = read_jsonl(path, required)
        if limit:
            records = records[:limit]
    if examples is not None:
        train = read_jsonl(examples, [*chosen.input_fields, label_field])
    wanted = shots if shots is not None else (chosen.shots or (DEFAULT_SHOTS if examples is not None else 0))
    if train is not None and (examples is not None or wanted > 0):
        picked = sample_examples(train, wanted, seed=seed, label_field=label_field)
        where = str(examples) if examples is not None else f"the {dataset} train split"
        notes.append(f"{len(picked)} demonstration(s) sampled from {where} (seed {seed})")
        chosen = chosen.with_examples(picked)
    elif wanted > chosen.shots:
        raise ConfigError(
            f"--shots {wanted}: template {chosen.name} has {chosen.shots} example(s); "
            "give --examples TRAIN.jsonl to sample more"
        )
    else:
        chosen = replace(chosen, examples=chosen.examples[:wanted])
    if chosen.choices_from is not None and chosen.choices is None:
        labels = {str(r[label_field]) for r in [*(train or []), *records] if r.get(label_field) is not None}
        if not labels:
            raise ConfigError(
                f"template {chosen.name} takes its choices from the labels of the data (choices_from: labels), "
                f"and the input has no {label_field!r} field: give --examples TRAIN.jsonl with labelled records"
            )
        chosen = chosen.with_choices(labels)
    return PromptJob(chosen, records, dataset, label_field, notes)


def open_backend(
    backend: str = "auto",
    model: str | None = None,
    base_url: str | None = None,
    threads: int | None = None,
    **options: Any,
) -> Backend:
    """The backend to prompt (:func:`~rejoinder.llm.backends.load_backend`).

    ``threads`` matters on a busy CPU: fewer threads than cores avoids oversubscription, which can
    slow PyTorch down many times over.
    """
    if threads is not None and threads < 1:
        raise ConfigError("--threads: expected at least 1")
    if threads is not None and backend != "openai" and not base_url:
        options["threads"] = threads
    return load_backend(backend, model=model, base_url=base_url, **options)
