"""Alignment data records in TRL's formats, and reading and writing them as JSON Lines or CSV.

Four record types, one per kind of training data, each with the fields TRL's trainers read, so a
dataset made for TRL loads unchanged and what Rejoinder writes loads into TRL:

- :class:`Demonstration` ``{"messages": [{"role", "content"}, ...]}``: a conversation, the last
  assistant turn being what supervised fine-tuning learns (TRL's "conversational language modeling").
- :class:`PromptCompletion` ``{"prompt", "completion"}``: both plain strings, or both lists of
  messages (TRL's "prompt-completion", standard or conversational).
- :class:`Preference` ``{"prompt", "chosen", "rejected"}``: a pairwise preference, strings or
  message lists (TRL's "preference" with an explicit prompt). A line with only ``chosen`` and
  ``rejected`` (TRL's "implicit prompt") is read too: message lists are split at their common
  first turns; strings in the Anthropic ``"\\n\\nHuman: ... \\n\\nAssistant: ..."`` form at the last
  ``"\\n\\nAssistant:"``.
- :class:`Ranking` ``{"prompt", "completions": [best, ..., worst], "ranks": [0, 1, 1, 2]}``: a
  K-way ranking (InstructGPT's labelers ranked K = 4..9 outputs). ``completions`` are best first;
  ``ranks`` is optional and aligned with them: 0 for the best, equal numbers for ties, never
  decreasing. Without ``ranks`` the order is strict. TRL has no K-way format; a ranking expands
  into the C(K,2) preferences it implies (:meth:`Ranking.pairs`, ties skipped).

Every record also carries, all optional: ``id``; ``source`` (where it came from: ``oasst``,
``hh-rlhf``, ``store`` or a file's stem); ``user_id`` (who wrote the prompt: the unit of the
per-user cap and of the train/validation/test split); ``red_team`` (true for adversarial content,
such as HH-RLHF's harmless split: never a supervised fine-tuning target, see :func:`sft_example`);
``use_case`` (the InstructGPT category of the prompt, filled in by curation) and ``meta`` (an
object of anything else): extra columns beside TRL's.

A message is ``{"role": "system" | "user" | "assistant", "content": non-empty string}``.

JSON Lines: UTF-8, one object per line, blank lines ignored. CSV: UTF-8 with a header row naming
the same fields; a cell of ``messages``, ``completions`` or ``ranks`` is a JSON array, and a
``prompt``/``completion``/``chosen``/``rejected`` cell holding a JSON array of messages is read
as conversational, any other text as a plain string; ``meta`` is a JSON object; ``red_team`` is
``true``/``false``/empty. The format of each line is detected from its fields (``messages``;
``completions``; ``chosen`` and ``rejected``; ``completion``), or forced with ``format=``.

A bad record is a :class:`~rejoinder.errors.SourceError` naming the file, the line, the field and
what is accepted. Pass a list as ``skipped`` to skip bad records instead: each one's error is
appended to it (and so counted) and reading goes on.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any, ClassVar, Literal

from rejoinder.errors import ConfigError, SourceError

ROLES = ("system", "user", "assistant")
FORMATS = ("messages", "prompt_completion", "preference", "ranking")
Format = Literal["messages", "prompt_completion", "preference", "ranking"]
HH_ASSISTANT = "\n\nAssistant:"
HH_HUMAN = "\n\nHuman:"
_HH_MARKER = re.compile(r"\n\n(Human|Assistant):")


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, as TRL and chat templates want it: ``{"role", "content"}``."""

    role: str
    content: str

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


Text = str | tuple[Turn, ...]
"""A prompt or a completion: a plain string, or conversational (a tuple of turns)."""


@dataclass(frozen=True)
class _Common:
    id: str | None = field(default=None, kw_only=True)
    source: str | None = field(default=None, kw_only=True)
    user_id: str | None = field(default=None, kw_only=True)
    red_team: bool = field(default=False, kw_only=True)
    use_case: str | None = field(default=None, kw_only=True)
    meta: dict[str, Any] = field(default_factory=dict, kw_only=True, compare=False, hash=False)

    def _common_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("id", "source", "user_id", "use_case"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.red_team:
            out["red_team"] = True
        if self.meta:
            out["meta"] = self.meta
        return out

    def texts(self) -> list[str]:
        """Every text of the record, prompt first (what PII masking and deduplication read)."""
        raise NotImplementedError

    def prompt_turns(self) -> tuple[Turn, ...]:
        """The prompt as turns (a plain-string prompt is one user turn)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Demonstration(_Common):
    """A conversation whose assistant turns are demonstrations (``{"messages": [...]}``)."""

    messages: tuple[Turn, ...]
    format: ClassVar[Format] = "messages"

    def to_json(self) -> dict[str, Any]:
        return {"messages": [t.to_json() for t in self.messages], **self._common_json()}

    def texts(self) -> list[str]:
        return [t.content for t in self.messages]

    def prompt_turns(self) -> tuple[Turn, ...]:
        """The turns before the last assistant turn (the whole conversation when there is none)."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].role == "assistant":
                return self.messages[:i]
        return self.messages


@dataclass(frozen=True)
class PromptCompletion(_Common):
    """A prompt and the completion to learn for it (``{"prompt", "completion"}``)."""

    prompt: Text
    completion: Text
    format: ClassVar[Format] = "prompt_completion"

    def to_json(self) -> dict[str, Any]:
        return {"prompt": _text_json(self.prompt), "completion": _text_json(self.completion), **self._common_json()}

    def texts(self) -> list[str]:
        return [*_contents(self.prompt), *_contents(self.completion)]

    def prompt_turns(self) -> tuple[Turn, ...]:
        return _as_turns(self.prompt)


@dataclass(frozen=True)
class Preference(_Common):
    """A pairwise preference (``{"prompt", "chosen", "rejected"}``)."""

    prompt: Text
    chosen: Text
    rejected: Text
    format: ClassVar[Format] = "preference"

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": _text_json(self.prompt),
            "chosen": _text_json(self.chosen),
            "rejected": _text_json(self.rejected),
            **self._common_json(),
        }

    def texts(self) -> list[str]:
        return [*_contents(self.prompt), *_contents(self.chosen), *_contents(self.rejected)]

    def prompt_turns(self) -> tuple[Turn, ...]:
        return _as_turns(self.prompt)


@dataclass(frozen=True)
class Ranking(_Common):
    """A K-way ranking: ``completions`` best first; ``ranks`` (optional) aligned, 0 = best, equal = tied."""

    prompt: Text
    completions: tuple[Text, ...]
    ranks: tuple[int, ...] | None = None
    format: ClassVar[Format] = "ranking"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt": _text_json(self.prompt),
            "completions": [_text_json(c) for c in self.completions],
        }
        if self.ranks is not None:
            out["ranks"] = list(self.ranks)
        return {**out, **self._common_json()}

    def texts(self) -> list[str]:
        return [*_contents(self.prompt), *(text for c in self.completions for text in _contents(c))]

    def prompt_turns(self) -> tuple[Turn, ...]:
        return _as_turns(self.prompt)

    @property
    def k(self) -> int:
        return len(self.completions)

    def rank_of(self, index: int) -> int:
        return self.ranks[index] if self.ranks is not None else index

    def pairs(self) -> list[tuple[int, int]]:
        """Every (better, worse) pair of completion indices; tied completions make no pair."""
        return [(i, j) for i, j in combinations(range(self.k), 2) if self.rank_of(i) < self.rank_of(j)]

    def preferences(self) -> list[Preference]:
        """The C(K,2) pairwise preferences the ranking implies (ties skipped), for TRL's RewardTrainer."""
        return [
            Preference(
                self.prompt,
                self.completions[i],
                self.completions[j],
                id=f"{self.id}:{i}>{j}" if self.id else None,
                source=self.source,
                user_id=self.user_id,
                red_team=self.red_team,
                use_case=self.use_case,
                meta=self.meta,
            )
            for i, j in self.pairs()
        ]


Record = Demonstration | PromptCompletion | Preference | Ranking


def _text_json(text: Text) -> Any:
    return text if isinstance(text, str) else [t.to_json() for t in text]


def _contents(text: Text) -> list[str]:
    return [text] if isinstance(text, str) else [t.content for t in text]


def _as_turns(text: Text) -> tuple[Turn, ...]:
    return (Turn("user", text),) if isinstance(text, str) else text


def prompt_key(record: Record) -> str:
    """The record's prompt as one string (roles and turns kept apart), for counting distinct prompts."""
    return "\n".join(f"{t.role}: {t.content}" for t in record.prompt_turns())


def first_user_text(record: Record) -> str:
    """The request that opened the conversation: the prompt's first user turn (its first turn when no user spoke)."""
    turns = record.prompt_turns()
    for turn in turns:
        if turn.role == "user":
            return turn.content
    return turns[0].content if turns else ""


def last_user_text(record: Record) -> str:
    """What the completion answers: the prompt's last user turn (its last turn when no user spoke)."""
    turns = record.prompt_turns()
    for turn in reversed(turns):
        if turn.role == "user":
            return turn.content
    return turns[-1].content if turns else ""


def map_texts(record: Record, fn: Any) -> Record:
    """The record with ``fn`` applied to every text (prompts, completions, messages), all else kept."""

    def text(value: Text) -> Text:
        return fn(value) if isinstance(value, str) else tuple(Turn(t.role, fn(t.content)) for t in value)

    if isinstance(record, Demonstration):
        return replace(record, messages=tuple(Turn(t.role, fn(t.content)) for t in record.messages))
    if isinstance(record, PromptCompletion):
        return replace(record, prompt=text(record.prompt), completion=text(record.completion))
    if isinstance(record, Preference):
        return replace(record, prompt=text(record.prompt), chosen=text(record.chosen), rejected=text(record.rejected))
    return replace(record, prompt=text(record.prompt), completions=tuple(text(c) for c in record.completions))


# --------------------------------------------------------------------------------------------
# Supervised fine-tuning targets


def sft_example(record: Record) -> Demonstration | PromptCompletion:
    """The record as a supervised fine-tuning example, or a ConfigError saying why it cannot be one.

    Red-team records (HH-RLHF's harmless split) are refused: their prompts are attacks and even
    the "chosen" replies are only *less harmful*, so they must never be learned as targets.
    Preferences and rankings are not demonstrations (take the best completion yourself if you mean it).
    """
    where = f"{record.source or 'record'}{f' {record.id}' if record.id else ''}"
    if record.red_team:
        raise ConfigError(f"{where} is red-team content: it is never used as a supervised fine-tuning target")
    if isinstance(record, Demonstration | PromptCompletion):
        return record
    raise ConfigError(
        f"{where} is a {record.format} record; supervised fine-tuning takes messages or prompt_completion"
    )


def sft_examples(
    records: Iterable[Record], refused: list[Record] | None = None
) -> Iterator[Demonstration | PromptCompletion]:
    """The demonstrations among ``records`` that may be learned; red-team ones go to ``refused``."""
    for record in records:
        if not isinstance(record, Demonstration | PromptCompletion):
            continue
        if record.red_team:
            if refused is not None:
                refused.append(record)
            continue
        yield record


# --------------------------------------------------------------------------------------------
# Parsing one record from a JSON object


class _Bad(Exception):
    """A field is wrong: ``field`` and ``expected`` make the message."""

    def __init__(self, field: str, expected: str, value: Any = None, *, found: str | None = None) -> None:
        self.field = field
        self.expected = expected
        self.found = found if found is not None else _describe(value)
        super().__init__(f"{field}: expected {expected}, found {self.found}")


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    names = {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def detect_format(record: dict[str, Any]) -> Format:
    """Which of the four formats a JSON object is, from its fields."""
    if "messages" in record:
        return "messages"
    if "completions" in record:
        return "ranking"
    if "chosen" in record or "rejected" in record:
        return "preference"
    if "completion" in record:
        return "prompt_completion"
    keys = ", ".join(map(repr, record)) or "none"
    raise _Bad(
        "fields",
        "'messages', 'prompt'+'completion', 'prompt'+'chosen'+'rejected' or 'prompt'+'completions'",
        found=f"keys {keys}",
    )


def _turns(value: Any, name: str) -> tuple[Turn, ...]:
    if not isinstance(value, list) or not value:
        raise _Bad(name, "a non-empty array of {'role', 'content'} messages", value)
    turns = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _Bad(f"{name}[{i}]", "a {'role', 'content'} object", item)
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise _Bad(f"{name}[{i}].role", f"one of {', '.join(ROLES)}", role, found=repr(role) if role else None)
        if not isinstance(content, str) or not content.strip():
            raise _Bad(f"{name}[{i}].content", "a non-empty string", content)
        turns.append(Turn(role, content))
    return tuple(turns)


def _text(value: Any, name: str) -> Text:
    if isinstance(value, str):
        if not value.strip():
            raise _Bad(name, "a non-empty string or an array of messages", value)
        return value
    if isinstance(value, list):
        return _turns(value, name)
    raise _Bad(name, "a non-empty string or an array of {'role', 'content'} messages", value)


def _same_kind(values: dict[str, Text]) -> None:
    kinds = {name: isinstance(v, str) for name, v in values.items()}
    if len(set(kinds.values())) > 1:
        plain = [n for n, k in kinds.items() if k]
        listed = [n for n, k in kinds.items() if not k]
        raise _Bad(
            "/".join(values),
            "all plain strings or all message arrays (TRL reads one kind per record)",
            found=f"strings in {', '.join(plain)} and message arrays in {', '.join(listed)}",
        )


def _common(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("id", "source", "user_id", "use_case"):
        value = record.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _Bad(key, "a string", value)
        out[key] = str(value)
    red = record.get("red_team", False)
    if red in (None, ""):
        red = False
    if not isinstance(red, bool):
        raise _Bad("red_team", "true or false", red)
    out["red_team"] = red
    meta = record.get("meta") or {}
    if not isinstance(meta, dict):
        raise _Bad("meta", "an object", meta)
    out["meta"] = meta
    return out


def split_hh(text: str) -> tuple[tuple[Turn, ...], str]:
    """An Anthropic HH dialogue cut at its last ``"\\n\\nAssistant:"``: the prompt's turns and the reply."""
    at = text.rfind(HH_ASSISTANT)
    if at < 0:
        raise _Bad("chosen/rejected", "a dialogue with a '\\n\\nAssistant:' turn", text)
    return hh_turns(text[:at]), text[at + len(HH_ASSISTANT) :].strip()


def hh_turns(text: str) -> tuple[Turn, ...]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b"`` as user and assistant turns (blank turns dropped)."""
    parts = _HH_MARKER.split(text)
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        if content.strip():
            turns.append(Turn("user" if speaker == "Human" else "assistant", content.strip()))
    return tuple(turns)


def _implicit_prompt(chosen: Text, rejected: Text) -> tuple[Text, Text, Text]:
    if isinstance(chosen, str) and isinstance(rejected, str):
        prompt_c, reply_c = split_hh(chosen)
        prompt_r, reply_r = split_hh(rejected)
        if prompt_c != prompt_r:
            raise _Bad("chosen/rejected", "the same dialogue before the last '\\n\\nAssistant:' turn", found="two")
        if not reply_c or not reply_r:
            raise _Bad("chosen/rejected", "a non-empty last assistant turn", found="an empty one")
        return prompt_c, (Turn("assistant", reply_c),), (Turn("assistant", reply_r),)
    if isinstance(chosen, tuple) and isinstance(rejected, tuple):
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        if n == 0:
            raise _Bad("prompt", "a prompt, or chosen and rejected sharing their first turns", found="nothing")
        return chosen[:n], chosen[n:], rejected[n:]
    raise _Bad("chosen/rejected", "both strings or both message arrays", found="one of each")


def parse_record(record: dict[str, Any], format: Format | None = None) -> Record:
    """One record from a JSON object (a ``_Bad`` error when a field is wrong; see :func:`read_records`)."""
    kind = format or detect_format(record)
    common = _common(record)
    if kind == "messages":
        return Demonstration(_turns(record.get("messages"), "messages"), **common)
    if kind == "prompt_completion":
        values = {
            "prompt": _text(record.get("prompt"), "prompt"),
            "completion": _text(record.get("completion"), "completion"),
        }
        _same_kind(values)
        return PromptCompletion(values["prompt"], values["completion"], **common)
    if kind == "preference":
        chosen, rejected = _text(record.get("chosen"), "chosen"), _text(record.get("rejected"), "rejected")
        if record.get("prompt") in (None, ""):
            prompt, chosen, rejected = _implicit_prompt(chosen, rejected)
        else:
            prompt = _text(record.get("prompt"), "prompt")
            _same_kind({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        return Preference(prompt, chosen, rejected, **common)
    if kind == "ranking":
        prompt = _text(record.get("prompt"), "prompt")
        raw = record.get("completions")
        if not isinstance(raw, list) or len(raw) < 2:
            raise _Bad("completions", "an array of at least 2 completions, best first", raw)
        completions = tuple(_text(c, f"completions[{i}]") for i, c in enumerate(raw))
        _same_kind({"prompt": prompt, **{f"completions[{i}]": c for i, c in enumerate(completions)}})
        return Ranking(prompt, completions, _ranks(record.get("ranks"), len(completions)), **common)
    raise ConfigError(f"format {kind!r}: expected one of {', '.join(FORMATS)}")


def _ranks(value: Any, k: int) -> tuple[int, ...] | None:
    if value is None or value == "":
        return None
    expected = (
        f"an array of {k} whole numbers aligned with completions, 0 for the best, never decreasing (equal = tied)"
    )
    if not isinstance(value, list) or len(value) != k:
        raise _Bad("ranks", expected, value)
    if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in value):
        raise _Bad("ranks", expected, found=repr(value))
    if any(b < a for a, b in pairwise(value)):
        raise _Bad("ranks", expected, found=f"{value} (completions must be listed best first)")
    return tuple(value)


# --------------------------------------------------------------------------------------------
# Files


def read_records(
    path: str | Path,
    *,
    format: Format | None = None,
    skipped: list[SourceError] | None = None,
    source: str | None = None,
) -> Iterator[Record]:
    """The records of a ``.jsonl`` (``.json``: JSON Lines too) or ``.csv`` file, one at a time.

    ``format`` forces one of :data:`FORMATS` instead of detecting each line's. A bad record raises
    a SourceError (file:line, field, what is accepted), or, when ``skipped`` is a list, is
    appended to it and skipped. ``source`` (default: the file's stem) fills records that have none.
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise ConfigError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise SourceError("no such file", path=path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise SourceError(
            f"unknown kind of file {suffix or '(no suffix)'!r}; expected .jsonl, .json or .csv", path=path
        )
    rows = _csv_objects(path) if suffix == ".csv" else _jsonl_objects(path)
    return _parsed(rows, path, format, skipped, source or path.stem)


def _parsed(
    rows: Iterator[tuple[int, dict[str, Any] | SourceError]],
    path: Path,
    format: Format | None,
    skipped: list[SourceError] | None,
    name: str,
) -> Iterator[Record]:
    for line, obj in rows:
        try:
            if isinstance(obj, SourceError):
                raise obj
            record = parse_record(obj, format)
        except _Bad as bad:
            error = SourceError(str(bad), path=path, line=line)
        except SourceError as error_:
            error = error_
        else:
            yield record if record.source else replace(record, source=name)
            continue
        if skipped is None:
            raise error
        skipped.append(error)


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict[str, Any] | SourceError]]:
    with path.open("rb") as file:
        for line, raw in enumerate(file, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield line, SourceError(f"not UTF-8 text: byte {raw[error.start]:#04x}", path=path, line=line)
                continue
            text = text.removeprefix("\ufeff") if line == 1 else text
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as error:
                yield line, SourceError(f"broken JSON: {error.msg}", path=path, line=line, column=error.colno)
                continue
            if not isinstance(obj, dict):
                hint = " (write one object per line, not a JSON array)" if isinstance(obj, list) else ""
                yield line, SourceError(f"expected a JSON object, found {_describe(obj)}{hint}", path=path, line=line)
                continue
            yield line, obj


_JSON_CELLS = ("messages", "completions", "ranks", "meta")
_TEXT_CELLS = ("prompt", "completion", "chosen", "rejected")


def _csv_objects(path: Path) -> Iterator[tuple[int, dict[str, Any] | SourceError]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        try:
            header = next(reader)
        except StopIteration:
            yield 1, SourceError("empty file; expected a header row", path=path, line=1)
            return
        except csv.Error as error:
            yield 1, SourceError(f"unreadable CSV: {error}", path=path, line=1)
            return
        line = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield reader.line_num, SourceError(f"unreadable CSV: {error}", path=path, line=reader.line_num)
                return
            if any(cell.strip() for cell in cells):
                yield line, _csv_object(dict(zip(header, cells, strict=False)), path, line)
            line = reader.line_num + 1


def _csv_object(row: dict[str, str], path: Path, line: int) -> dict[str, Any] | SourceError:
    obj: dict[str, Any] = {}
    for key, cell in row.items():
        if key in _JSON_CELLS:
            if not cell.strip():
                continue
            try:
                obj[key] = json.loads(cell)
            except json.JSONDecodeError as error:
                return SourceError(
                    f"{key}: expected a JSON {'object' if key == 'meta' else 'array'} ({error.msg})",
                    path=path,
                    line=line,
                )
        elif key in _TEXT_CELLS and cell.lstrip().startswith("[{"):
            try:
                obj[key] = json.loads(cell)
            except json.JSONDecodeError:
                obj[key] = cell
        elif key == "red_team":
            value = cell.strip().lower()
            if value not in ("", "true", "false", "1", "0"):
                return SourceError(f"red_team: expected true or false, found {cell!r}", path=path, line=line)
            obj[key] = value in ("true", "1")
        else:
            obj[key] = cell
    return obj


def write_jsonl(records: Iterable[Record], path: str | Path) -> int:
    """Write records as JSON Lines (UTF-8, one object a line); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


def write_csv(records: Sequence[Record], path: str | Path) -> int:
    """Write records of one format as CSV (message lists and arrays as JSON cells)."""
    kinds = {r.format for r in records}
    if len(kinds) > 1:
        raise ConfigError(f"a CSV file holds one format; got {', '.join(sorted(kinds))}")
    rows = [record.to_json() for record in records]
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(key)) for key in columns])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return len(rows)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
