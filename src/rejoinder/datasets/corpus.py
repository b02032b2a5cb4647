"""Conversation corpora read as context -> reply exchanges (what the retrieval bot learns from).

Every turn of a conversation after the first becomes the ``reply`` to the (up to ``window``)
turns before it, oldest first. Text is whitespace-normalised (stripped, inner runs of whitespace
collapsed to one space) and blank turns are skipped. Every reader streams: it yields exchanges
as it reads and keeps at most one conversation in memory.

Corpora (``read_corpus`` specs):

- ``chitchat`` (default): the Chit Chat Challenge dataset from the ``chitchat-dataset`` package
  (MIT). The messages a person sent in a row form one turn, joined with a space.
- ``self-dialogue`` (the copy in the shared data, ``dialogues/self_dialogue_corpus``: see
  :func:`rejoinder.resources.shared_data`) or a path to its folder: the Self-dialogue Corpus
  (BSD-3-Clause; Krause et al. 2017): ``corpus/<topic>/*.csv`` MTurk batch files, turns in ``Answer.sentence1`` ..
  ``Answer.sentenceN``. Rows by workers listed in ``blocked_workers.txt`` are skipped; only the
  sentence columns are read, worker ids are never kept.
- ``chatterbot`` or ``chatterbot:<language>``: the YAML files of the ``chatterbot-corpus``
  package. Malformed conversation entries are skipped and counted in a logged warning.
- a path to a ``.jsonl``, ``.json`` or ``.csv`` file in one of the generic formats below.

JSON Lines (``.jsonl``; ``.json`` files are read as JSON Lines too)
    UTF-8, one JSON object per line; blank lines are ignored. A line is either one conversation::

        {"id": "c1", "turns": ["Hi there.", "Hello! How are you?", "Fine, thanks."]}
        {"id": "c2", "turns": [{"speaker": "a", "text": "Hi."}, {"speaker": "b", "text": "Hey."}]}

    or one exchange::

        {"context": ["Hi there.", "Hello! How are you?"], "reply": "Fine, thanks."}
        {"id": "c3", "context": "How are you?", "reply": "Fine, thanks."}

    ``id`` is optional (a conversation without one is named by its line number; an exchange
    without one has no conversation). ``turns`` items are strings or objects with a string
    ``text`` and an optional string ``speaker``; consecutive turns by the same speaker are joined
    into one turn. ``context`` is a string (one turn) or a list of strings, oldest first; only its
    last ``window`` turns are kept. Other keys are ignored. The source name is the file's stem.

CSV (``.csv``)
    UTF-8, comma-separated, with a header row. Either one turn per row::

        conversation_id,turn,speaker,text
        c1,1,a,Hi there.
        c1,2,b,"Hello! How are you?"

    with required columns ``conversation_id`` and ``text``, optional ``turn`` (a whole number
    ordering the turns of a conversation; without it, file order) and optional ``speaker``
    (consecutive turns by the same speaker are joined into one turn). The rows of a conversation
    must be contiguous (sort the file by ``conversation_id``). Or one exchange per row::

        context,reply
        Hi there. ||| Hello! How are you?,"Fine, thanks."

    where ``context`` holds one or more turns, oldest first, separated by ``|||``. Other columns
    are ignored. The source name is the file's stem.

Errors name the file, the line (and column for broken JSON or YAML) or the field, and what
would have been accepted.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from rejoinder.dialogue import storable
from rejoinder.errors import ConfigError, SourceError
from rejoinder.resources import shared_data

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 3
CONTEXT_SEPARATOR = "|||"
SELF_DIALOGUE = ("dialogues", "self_dialogue_corpus")
"""Where the Self-dialogue Corpus is inside the shared data."""
CORPUS_SPECS = ("chitchat", "self-dialogue", "self-dialogue:<folder>", "chatterbot", "chatterbot:<language>")
FILE_SUFFIXES = (".jsonl", ".json", ".csv")


@dataclass(frozen=True)
class Exchange:
    """One thing a human said next, with what had been said before it.

    ``context`` holds the preceding utterances, oldest first; its last element is the utterance
    that ``reply`` answers. ``source`` names the corpus (or ``learned``); ``conversation`` is the
    conversation's id within the source, when it has one.
    """

    context: tuple[str, ...]
    reply: str
    source: str
    conversation: str | None = None


# --------------------------------------------------------------------------------------------
# Turns to exchanges


def normalise(text: str) -> str:
    """Strip ``text`` and collapse every inner run of whitespace to one space; drop what no database
    can store (NUL characters, lone surrogates)."""
    return " ".join(storable(text).split())


def conversation_exchanges(
    turns: Sequence[str], *, source: str, conversation: str | None, window: int = DEFAULT_WINDOW
) -> Iterator[Exchange]:
    """Yield one exchange per turn after the first, with up to ``window`` turns before it as context."""
    _check_window(window)
    kept = [text for text in map(normalise, turns) if text]
    for i in range(1, len(kept)):
        yield Exchange(tuple(kept[max(0, i - window) : i]), kept[i], source, conversation)


def _exchange(
    context: Sequence[str], reply: str, *, source: str, conversation: str | None, window: int
) -> Exchange | None:
    """One ready-made exchange, normalised and cut to ``window``; None when nothing is left of it."""
    kept = [text for text in map(normalise, context) if text][-window:]
    reply = normalise(reply)
    if not kept or not reply:
        return None
    return Exchange(tuple(kept), reply, source, conversation)


def _join_speakers(turns: Iterable[tuple[str | None, str]]) -> list[str]:
    """Drop blank turns and join consecutive turns by the same (named) speaker with a space."""
    joined: list[str] = []
    last: str | None = None
    for speaker, text in turns:
        text = normalise(text)
        if not text:
            continue
        if joined and speaker is not None and speaker == last:
            joined[-1] += " " + text
        else:
            joined.append(text)
        last = speaker
    return joined


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"window must be a whole number of turns, at least 1; got {window!r}")


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise SourceError("no such file", path=path)


# --------------------------------------------------------------------------------------------
# Chit Chat Challenge (chitchat-dataset)


def read_chitchat(window: int = DEFAULT_WINDOW) -> Iterator[Exchange]:
    """Exchanges of the Chit Chat Challenge dataset (package ``chitchat-dataset``, MIT)."""
    _check_window(window)
    try:
        import chitchat_dataset
    except ImportError:
        raise ConfigError(
            "the chitchat corpus needs the chitchat-dataset package: pip install chitchat-dataset"
        ) from None
    return _chitchat_exchanges(Path(chitchat_dataset._PATH), window)


def _chitchat_exchanges(path: Path, window: int) -> Iterator[Exchange]:
    for conversation_id, conversation in _json_object_items(path):
        try:
            turns = [" ".join(message["text"] for message in turn) for turn in conversation["messages"]]
        except (KeyError, TypeError) as error:
            raise SourceError(
                f"conversation {conversation_id!r}: expected messages as lists of {{'text': ...}} objects ({error!r})",
                path=path,
            ) from None
        yield from conversation_exchanges(turns, source="chitchat", conversation=conversation_id, window=window)


class _JsonObjectStream:
    """Reads the members of a top-level JSON object one at a time, holding one member in memory."""

    def __init__(self, path: Path, chunk_size: int) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.decoder = json.JSONDecoder()
        self.buffer = ""
        self.pos = 0
        self.eof = False

    def fill(self, file: Any) -> bool:
        """Append the next chunk; False at the end of the file."""
        chunk = file.read(self.chunk_size)
        self.buffer = self.buffer[self.pos :] + chunk
        self.pos = 0
        self.eof = not chunk
        return bool(chunk)

    def peek(self, file: Any) -> str:
        """The next non-whitespace character ('' at the end of the file), left unread."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos].isspace():
                self.pos += 1
            if self.pos < len(self.buffer) or not self.fill(file):
                return self.buffer[self.pos : self.pos + 1]

    def expect(self, file: Any, chars: str) -> str:
        char = self.peek(file)
        if not char or char not in chars:
            raise SourceError(f"expected one of {chars!r}, found {char or 'the end of the file'!r}", path=self.path)
        self.pos += 1
        return char

    def value(self, file: Any) -> Any:
        """Decode the next JSON value, reading more of the file until it is complete."""
        self.peek(file)
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as error:
                if self.fill(file):
                    continue
                raise SourceError(f"broken JSON: {error.msg}", path=self.path) from None
            if end == len(self.buffer) and self.fill(file):
                continue  # a number may go on in the next chunk
            self.pos = end
            return value


def _json_object_items(path: Path, chunk_size: int = 1 << 20) -> Iterator[tuple[str, Any]]:
    """Yield (key, value) for each member of the JSON object in ``path``, streaming."""
    stream = _JsonObjectStream(path, chunk_size)
    with path.open(encoding="utf-8") as file:
        stream.expect(file, "{")
        if stream.peek(file) == "}":
            return
        while True:
            key = stream.value(file)
            stream.expect(file, ":")
            yield key, stream.value(file)
            if stream.expect(file, ",}") == "}":
                return


# --------------------------------------------------------------------------------------------
# Reading files line by line, with positions for errors


def _text_lines(path: Path, file: Iterable[bytes]) -> Iterator[str]:
    """Decode ``file`` line by line as UTF-8 (a leading BOM dropped), naming the line of bad bytes."""
    for number, raw in enumerate(file, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SourceError(
                f"not UTF-8 text: byte {raw[error.start]:#04x} cannot be decoded",
                path=path,
                line=number,
                column=error.start + 1,
            ) from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line where the record starts, cells) for each record of the CSV file ``path``."""
    _require_file(path)
    with path.open("rb") as file:
        reader = csv.reader(_text_lines(path, file))
        line = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise SourceError(f"unreadable CSV: {error}", path=path, line=reader.line_num) from None
            yield line, cells
            line = reader.line_num + 1


# --------------------------------------------------------------------------------------------
# Self-dialogue Corpus

_SENTENCE_COLUMN = re.compile(r"Answer\.sentence(\d+)")


def read_self_dialogue(root: Path | None = None, window: int = DEFAULT_WINDOW) -> Iterator[Exchange]:
    """Exchanges of the Self-dialogue Corpus folder ``root`` (``corpus/<topic>/*.csv``, ``blocked_workers.txt``).

    Without ``root``, the copy in the shared data (``dialogues/self_dialogue_corpus``).

    Only the ``Answer.sentenceN`` columns are kept; rows whose ``WorkerId`` is blocked are skipped
    and worker ids never leave this function.
    """
    _check_window(window)
    root = shared_data(*SELF_DIALOGUE, required=True) if root is None else Path(root)
    if not (root / "corpus").is_dir():
        raise ConfigError(f"no Self-dialogue Corpus at {root}: expected a folder holding corpus/<topic>/*.csv")
    return _self_dialogue_exchanges(root, window)


def _self_dialogue_exchanges(root: Path, window: int) -> Iterator[Exchange]:
    blocked = _blocked_workers(root / "blocked_workers.txt")
    corpus = root / "corpus"
    for path in sorted(corpus.rglob("*.csv")):
        prefix = f"{path.parent.relative_to(corpus).as_posix()}/{path.stem}"
        for row_number, turns in _self_dialogue_rows(path, blocked):
            yield from conversation_exchanges(
                turns, source="self_dialogue", conversation=f"{prefix}/{row_number}", window=window
            )


def _blocked_workers(path: Path) -> frozenset[str]:
    """Worker ids listed one a line; none when the file is absent."""
    if not path.is_file():
        return frozenset()
    return frozenset(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _sentence_columns(header: list[str], path: Path) -> list[int]:
    """Indexes of Answer.sentence1 .. Answer.sentenceN in ``header``, in turn order (not header order)."""
    numbered = sorted(
        (int(match[1]), index) for index, name in enumerate(header) if (match := _SENTENCE_COLUMN.fullmatch(name))
    )
    if not numbered:
        raise SourceError(
            f"no Answer.sentence1 .. Answer.sentenceN columns; found columns: {', '.join(header) or 'none'}",
            path=path,
            line=1,
        )
    numbers = [number for number, _ in numbered]
    missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if missing or len(set(numbers)) != len(numbers):
        raise SourceError(
            f"expected columns Answer.sentence1 .. Answer.sentence{numbers[-1]} once each; "
            f"missing: {', '.join(f'Answer.sentence{n}' for n in missing) or 'none'}",
            path=path,
            line=1,
        )
    return [index for _, index in numbered]


def _self_dialogue_rows(path: Path, blocked: frozenset[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield (row number, sentence cells) for each row not written by a blocked worker."""
    with closing(_csv_rows(path)) as rows:
        _, header = next(rows, (1, []))
        if not header:
            raise SourceError("empty file; expected an MTurk batch-results CSV with a header row", path=path, line=1)
        sentences = _sentence_columns(header, path)
        worker = header.index("WorkerId") if "WorkerId" in header else None
        if blocked and worker is None:
            raise SourceError("no WorkerId column, needed to skip blocked workers", path=path, line=1)
        for row_number, (_, cells) in enumerate(rows, start=1):
            if worker is not None and worker < len(cells) and cells[worker].strip() in blocked:
                continue
            yield row_number, [cells[index] for index in sentences if index < len(cells)]


# --------------------------------------------------------------------------------------------
# chatterbot-corpus YAML files


def read_chatterbot_corpus(
    language: str = "english", path: Path | None = None, window: int = DEFAULT_WINDOW
) -> Iterator[Exchange]:
    """Exchanges of the ``chatterbot-corpus`` YAML files of ``language``.

    ``path`` replaces the package's data: a ``.yml`` file or a folder of them (``language`` then
    only names the source). Malformed conversation entries are skipped and counted in a warning.
    """
    _check_window(window)
    if path is None:
        path = _chatterbot_data() / language
        if not path.is_dir():
            languages = sorted(p.name for p in _chatterbot_data().iterdir() if p.is_dir())
            raise ConfigError(f"no chatterbot corpus for language {language!r}; available: {', '.join(languages)}")
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.yml"), *path.glob("*.yaml")])
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"no chatterbot corpus at {path}: expected a .yml file or a folder of them")
    return _chatterbot_exchanges(files, f"chatterbot:{language}", window)


def _chatterbot_data() -> Path:
    try:
        import chatterbot_corpus
    except ImportError:
        raise ConfigError(
            "the chatterbot corpus needs the chatterbot-corpus package: pip install chatterbot-corpus"
        ) from None
    return Path(chatterbot_corpus.__file__).parent / "data"


def _chatterbot_exchanges(files: Sequence[Path], source: str, window: int) -> Iterator[Exchange]:
    for path in files:
        skipped = 0
        for index, turns in enumerate(_chatterbot_conversations(path)):
            if turns is None:
                skipped += 1
                continue
            yield from conversation_exchanges(turns, source=source, conversation=f"{path.stem}/{index}", window=window)
        if skipped:
            log.warning("%s: skipped %d malformed conversation entries (expected lists of texts)", path, skipped)


def _chatterbot_conversations(path: Path) -> Iterator[list[str] | None]:
    """Each entry of the file's ``conversations`` list as texts, or None for a malformed entry."""
    try:
        with path.open(encoding="utf-8-sig") as file:
            root = yaml.compose(file, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise SourceError.from_yaml(error, path, "not YAML") from None
    except UnicodeDecodeError as error:
        raise SourceError(f"not YAML: {error}", path=path) from None
    conversations = None
    if isinstance(root, yaml.MappingNode):
        conversations = next((value for key, value in root.value if key.value == "conversations"), None)
    if conversations is None:
        raise SourceError(
            "no 'conversations' field; expected a mapping with a 'conversations' list of lists of texts",
            path=path,
            line=root.start_mark.line + 1 if root is not None else 1,
        )
    if not isinstance(conversations, yaml.SequenceNode):
        raise SourceError(
            "'conversations' must be a list of conversations (lists of texts)",
            path=path,
            line=conversations.start_mark.line + 1,
            column=conversations.start_mark.column + 1,
        )
    for entry in conversations.value:
        if isinstance(entry, yaml.SequenceNode) and all(isinstance(item, yaml.ScalarNode) for item in entry.value):
            yield [_scalar_text(item) for item in entry.value]
        else:
            yield None


def _scalar_text(node: Any) -> str:
    """A YAML scalar's text as written (``yes`` stays ``yes``); null is blank."""
    return "" if node.tag == "tag:yaml.org,2002:null" else str(node.value)


# --------------------------------------------------------------------------------------------
# Generic JSON Lines


def read_jsonl(path: Path, window: int = DEFAULT_WINDOW) -> Iterator[Exchange]:
    """Exchanges of a JSON Lines file in the generic format (see the module docstring)."""
    _check_window(window)
    path = Path(path)
    _require_file(path)
    return _jsonl_exchanges(path, window)


def _jsonl_exchanges(path: Path, window: int) -> Iterator[Exchange]:
    source = path.stem
    with path.open("rb") as file:
        for line, text in enumerate(_text_lines(path, file), start=1):
            if not text.strip():
                continue
            record = _json_line(text, path, line)
            if "turns" in record:
                conversation = _optional_str(record, "id", path, line) or str(line)
                turns = _jsonl_turns(record["turns"], path, line)
                yield from conversation_exchanges(turns, source=source, conversation=conversation, window=window)
            elif "context" in record or "reply" in record:
                exchange = _jsonl_exchange(record, source, window, path, line)
                if exchange is not None:
                    yield exchange
            else:
                raise SourceError(
                    "expected an object with 'turns' (a conversation) or with 'context' and 'reply' (an exchange); "
                    f"found keys: {', '.join(map(repr, record)) or 'none'}",
                    path=path,
                    line=line,
                )


def _json_line(text: str, path: Path, line: int) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise SourceError(f"broken JSON: {error.msg}", path=path, line=line, column=error.colno) from None
    if not isinstance(record, dict):
        hint = " (write one object per line, not a JSON array)" if isinstance(record, list) else ""
        raise SourceError(f"expected a JSON object, got {_json_type(record)}{hint}", path=path, line=line)
    return record


def _jsonl_turns(turns: Any, path: Path, line: int) -> list[str]:
    if not isinstance(turns, list):
        raise _shape_error("turns", "a list of texts or of {'speaker', 'text'} objects", turns, path, line)
    spoken: list[tuple[str | None, str]] = []
    for index, turn in enumerate(turns):
        if isinstance(turn, str):
            spoken.append((None, turn))
        elif isinstance(turn, dict):
            text = turn.get("text")
            if not isinstance(text, str):
                raise _shape_error(f"turns[{index}].text", "a string", text, path, line)
            speaker = turn.get("speaker")
            if speaker is not None and not isinstance(speaker, str):
                raise _shape_error(f"turns[{index}].speaker", "a string", speaker, path, line)
            spoken.append((speaker, text))
        else:
            raise _shape_error(f"turns[{index}]", "a string or a {'speaker', 'text'} object", turn, path, line)
    return _join_speakers(spoken)


def _jsonl_exchange(record: dict[str, Any], source: str, window: int, path: Path, line: int) -> Exchange | None:
    context = record.get("context")
    if isinstance(context, str):
        context = [context]
    elif not isinstance(context, list):
        raise _shape_error("context", "a string or a list of strings", context, path, line)
    for index, turn in enumerate(context):
        if not isinstance(turn, str):
            raise _shape_error(f"context[{index}]", "a string", turn, path, line)
    reply = record.get("reply")
    if not isinstance(reply, str):
        raise _shape_error("reply", "a string", reply, path, line)
    conversation = _optional_str(record, "id", path, line)
    return _exchange(context, reply, source=source, conversation=conversation, window=window)


def _optional_str(record: dict[str, Any], key: str, path: Path, line: int) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise _shape_error(key, "a string", value, path, line)
    return value


def _shape_error(field: str, expected: str, value: Any, path: Path, line: int) -> SourceError:
    found = "null or nothing" if value is None else _json_type(value)
    return SourceError(f"{field}: expected {expected}, found {found}", path=path, line=line)


def _json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# Generic CSV

_TURN_COLUMNS = ("conversation_id", "text")
_EXCHANGE_COLUMNS = ("context", "reply")


@dataclass
class _CsvTurn:
    line: int
    order: int
    speaker: str | None
    text: str


def read_csv(path: Path, window: int = DEFAULT_WINDOW) -> Iterator[Exchange]:
    """Exchanges of a CSV file in the generic format (see the module docstring)."""
    _check_window(window)
    path = Path(path)
    _require_file(path)
    return _csv_exchanges(path, window)


def _csv_exchanges(path: Path, window: int) -> Iterator[Exchange]:
    with closing(_csv_rows(path)) as rows:
        _, header = next(rows, (1, []))
        columns = {name.strip(): index for index, name in enumerate(header)}
        if all(name in columns for name in _EXCHANGE_COLUMNS):
            yield from _csv_exchange_rows(rows, columns, path.stem, window)
        elif all(name in columns for name in _TURN_COLUMNS):
            yield from _csv_conversations(rows, columns, path, window)
        else:
            raise SourceError(
                f"found columns {', '.join(columns) or 'none'}; expected conversation_id,text "
                "(and optionally turn, speaker) or context,reply",
                path=path,
                line=1,
            )


def _cell(cells: list[str], columns: dict[str, int], name: str) -> str | None:
    """The cell of column ``name``: None when the file has no such column, '' when the row is short."""
    index = columns.get(name)
    if index is None:
        return None
    return cells[index] if index < len(cells) else ""


def _csv_exchange_rows(
    rows: Iterator[tuple[int, list[str]]], columns: dict[str, int], source: str, window: int
) -> Iterator[Exchange]:
    for _, cells in rows:
        context = (_cell(cells, columns, "context") or "").split(CONTEXT_SEPARATOR)
        exchange = _exchange(
            context, _cell(cells, columns, "reply") or "", source=source, conversation=None, window=window
        )
        if exchange is not None:
            yield exchange


def _csv_conversations(
    rows: Iterator[tuple[int, list[str]]], columns: dict[str, int], path: Path, window: int
) -> Iterator[Exchange]:
    """Group contiguous rows by conversation_id, order them by ``turn`` and yield their exchanges."""
    finished: dict[str, int] = {}  # conversation id -> line where it started
    current: str | None = None
    turns: list[_CsvTurn] = []
    for line, cells in rows:
        conversation = _cell(cells, columns, "conversation_id") or ""
        if not conversation.strip() and not any(cell.strip() for cell in cells):
            continue  # a blank row
        if not conversation.strip():
            raise SourceError("conversation_id is empty; expected the id of the conversation", path=path, line=line)
        if conversation != current:
            if current is not None:
                yield from _csv_conversation(current, turns, path, window)
                finished[current] = turns[0].line
            if conversation in finished:
                raise SourceError(
                    f"conversation {conversation!r} goes on here after other rows (it began at line "
                    f"{finished[conversation]}); the rows of a conversation must be contiguous: sort the file by "
                    "conversation_id",
                    path=path,
                    line=line,
                )
            current, turns = conversation, []
        order = _turn_order(_cell(cells, columns, "turn"), len(turns), path, line)
        speaker = _cell(cells, columns, "speaker")
        turns.append(
            _CsvTurn(line, order, speaker.strip() if speaker is not None else None, _cell(cells, columns, "text") or "")
        )
    if current is not None:
        yield from _csv_conversation(current, turns, path, window)


def _turn_order(value: str | None, position: int, path: Path, line: int) -> int:
    """The ``turn`` cell as a number; the row's position in the file when there is no turn column."""
    if value is None:
        return position
    try:
        return int(value.strip())
    except ValueError:
        raise SourceError(f"turn must be a whole number, got {value!r}", path=path, line=line) from None


def _csv_conversation(conversation: str, turns: list[_CsvTurn], path: Path, window: int) -> Iterator[Exchange]:
    turns = sorted(turns, key=lambda turn: turn.order)
    for before, after in pairwise(turns):
        if before.order == after.order:
            raise SourceError(
                f"conversation {conversation!r} has turn {after.order} twice (lines {before.line} and {after.line})",
                path=path,
                line=max(before.line, after.line),
            )
    texts = _join_speakers((turn.speaker or None, turn.text) for turn in turns)
    yield from conversation_exchanges(texts, source=path.stem, conversation=conversation, window=window)


# --------------------------------------------------------------------------------------------
# Corpus specs


def read_corpus(
    spec: str = "chitchat", *, window: int = DEFAULT_WINDOW, language: str = "english"
) -> Iterator[Exchange]:
    """Exchanges of the corpus named by ``spec`` (see the module docstring for the accepted specs)."""
    name, _, argument = spec.partition(":")
    if spec == "chitchat":
        return read_chitchat(window=window)
    if spec == "self-dialogue":
        return read_self_dialogue(window=window)
    if name == "self-dialogue" and argument:
        return read_self_dialogue(Path(argument), window=window)
    if spec == "chatterbot":
        return read_chatterbot_corpus(language, window=window)
    if name == "chatterbot" and argument:
        return read_chatterbot_corpus(argument, window=window)
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path, window=window)
    if suffix == ".csv":
        return read_csv(path, window=window)
    if (path / "corpus").is_dir():
        return read_self_dialogue(path, window=window)
    raise ConfigError(
        f"unknown corpus {spec!r}; accepted: {', '.join(CORPUS_SPECS)}, a Self-dialogue Corpus folder, "
        f"or a file ending {', '.join(FILE_SUFFIXES)}"
    )
