"""Word lists: the entry syntax, the shipped English and Russian lists, and their compiled regexes.

The lists themselves are ``wordlists/<lang>.txt`` inside this package (written for Rejoinder;
the format is described in ``wordlists/README.md``). Entries are matched against the normalised
text (:func:`~rejoinder.moderation.obfuscation.normalise`): ``word``, ``word*``, ``*word``,
``*word*``, several words, ``[abc]`` letter classes, ``re:REGEX``, and ``!ENTRY`` for exceptions.
Many entries are compiled into one regular expression (:func:`combine`), their shared first
letters factored out, so clean text costs one scan per list.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rejoinder.errors import ConfigError, SourceError
from rejoinder.moderation.obfuscation import DELETE_TABLE, RUN_RE, strip_diacritics
from rejoinder.resources import package_path

SHIPPED_WORDLISTS = ("en", "ru")
"""Languages with a list shipped in ``wordlists/``."""

_WORD_START = r"(?<![\w*])"
_WORD_END = r"(?![\w*])"
_WILDCARD_BODY_RE = re.compile(r"(?:[^\W_]|\[[^\W_]+\]| )+")
_CLASS_OR_CHAR_RE = re.compile(r"\[([^\W_]+)\]|(.)")


class EntryError(ValueError):
    """An entry of a word list (or an allow term) is malformed; the caller says where it is."""


@dataclass(frozen=True)
class Entry:
    """A compiled entry. ``regex`` finds where a hit is; hits are widened to whole words later.

    ``anchored`` entries must start at a word start (the combined regex checks that once for all
    of them); ``first`` is their literal first letter (escaped) when they have one, so entries
    sharing it are tried only where it occurs.
    """

    text: str  # as written, without a leading "!"
    regex: str
    exception: bool
    anchored: bool
    first: str = ""


def _normalise_entry(body: str) -> str:
    body = unicodedata.normalize("NFKC", body).translate(DELETE_TABLE).casefold()
    if not body.isascii():
        body = strip_diacritics(body)
    body = re.sub(r"[\s\-]+", " ", body).strip()
    return RUN_RE.sub(r"\1\1", body)


def _wildcard_regex(body: str) -> str:
    """Letters, spaces and [classes] as a regex over normalised text (no boundaries).

    Every letter may be doubled (runs of three or more are already shortened to two), and in a
    single word of three letters or more any letter but the first and last may be masked with "*".
    """
    units: list[tuple[str, int]] = []  # (letter or "[class]" or " ", run length)
    for m in _CLASS_OR_CHAR_RE.finditer(body):
        unit = f"[{m.group(1)}]" if m.group(1) else m.group(2)
        if units and units[-1][0] == unit and len(unit) == 1 and unit != " ":
            units[-1] = (unit, units[-1][1] + 1)
        else:
            units.append((unit, 1))
    maskable = " " not in body and sum(k for _, k in units) >= 3
    parts = []
    for i, (unit, k) in enumerate(units):
        if unit == " ":
            parts.append(" ")
            continue
        atom = unit if len(unit) > 1 else re.escape(unit)
        plain = f"{atom}{atom}?" if k == 1 else f"{atom}{{{k}}}"
        if maskable and 0 < i < len(units) - 1:
            parts.append(f"(?:{plain}|\\*{{1,{k}}})")
        else:
            parts.append(plain)
    return "".join(parts)


def parse_entry(raw: str, *, allow_term: bool = False) -> Entry:
    """One line of a word list: ``word``, ``word*``, ``*word``, ``*word*``, ``re:REGEX``, ``!ENTRY``.

    With ``allow_term`` the entry is an exception (a term never flagged) whether or not it
    starts with "!".
    """
    if not isinstance(raw, str):
        raise EntryError(f"expected a string, found {type(raw).__name__}")
    text = raw.strip()
    exception = allow_term
    if text.startswith("!"):
        exception, text = True, text[1:].strip()
    if not text:
        raise EntryError("the entry is empty; expected a word, a word with '*' at either end, or re:REGEX")
    if text.startswith("re:"):
        source = text[3:].strip()
        if not source:
            raise EntryError("expected a regular expression after 're:'")
        try:
            compiled = re.compile(f"(?:{source})")
        except re.error as error:
            raise EntryError(f"{source!r} is not a valid regular expression ({error})") from None
        if compiled.groups:
            raise EntryError(f"{source!r} has a capturing group; use non-capturing groups (?:...) in word lists")
        if compiled.search("") is not None:
            raise EntryError(f"{source!r} matches empty text, so it would flag (or allow) everything")
        return Entry(text, source, exception, anchored=False)
    prefix = text.startswith("*")
    suffix = len(text) > 1 and text.endswith("*")
    body = _normalise_entry(text[1 if prefix else 0 : len(text) - 1 if suffix else len(text)])
    if not body or not _WILDCARD_BODY_RE.fullmatch(body):
        raise EntryError(
            f"{text!r} is not a word list entry; expected letters and spaces with optional [classes] "
            "and '*' at either end (like 'bitch*' or '*ху[йея]*'), or re:REGEX"
        )
    core = _wildcard_regex(body) + ("" if suffix else _WORD_END)
    first = re.escape(body[0]) if body[0] not in "[ " else ""
    if not core.startswith(first) or core[len(first) : len(first) + 1] == "{":
        first = ""
    return Entry(text, core, exception, anchored=not prefix, first=first)


def combine(entries: Iterable[Entry]) -> re.Pattern[str] | None:
    """One regex for many entries: word-start entries share one look-behind."""
    entries = list(entries)
    anchored = _factor([e for e in entries if e.anchored])
    branches = [_WORD_START + "(?:" + "|".join(anchored) + ")"] if anchored else []
    branches.extend(_factor([e for e in entries if not e.anchored]))
    return re.compile("|".join(branches)) if branches else None


def _factor(entries: list[Entry]) -> list[str]:
    """Alternatives with their shared first letter taken out: f(?:uck|art) rather than fuck|fart."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        if entry.first:
            groups.setdefault(entry.first, []).append(entry.regex[len(entry.first) :])
        else:
            groups.setdefault("", []).append(entry.regex)
    out = [f"{first}(?:{'|'.join(rests)})" for first, rests in groups.items() if first]
    out.extend(f"(?:{r})" for r in groups.get("", []))
    return out


def token_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a hit to the whole words it touches."""
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "*"):
        start -= 1
    n = len(text)
    while end < n and (text[end].isalnum() or text[end] == "*"):
        end += 1
    return start, end


@dataclass
class WordList:
    """One language's blocked entries and exceptions, compiled.

    ``lang`` names the list in reasons (``wordlist:<lang>:<word>``). Build one with
    :meth:`shipped`, :meth:`from_file` or :meth:`parse`; :meth:`extend` adds entries.
    """

    lang: str
    entries: list[Entry] = field(default_factory=list)
    source: str | None = None

    @classmethod
    def parse(cls, text: str, lang: str, path: str | Path | None = None) -> WordList:
        """Read list text: one entry a line, blank lines and lines starting with '#' ignored."""
        wordlist = cls(lang, source=str(path) if path is not None else None)
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                wordlist.entries.append(parse_entry(stripped))
            except EntryError as error:
                raise SourceError(str(error), path=path, line=number) from None
        return wordlist

    @classmethod
    def from_file(cls, path: str | Path, lang: str | None = None) -> WordList:
        path = Path(path)
        return cls.parse(read_text(path, "word list"), lang or path.stem, path)

    @classmethod
    def shipped(cls, lang: str) -> WordList:
        """A list shipped with Rejoinder (``en``, ``ru``)."""
        if lang not in SHIPPED_WORDLISTS:
            raise ConfigError(f"no shipped word list {lang!r}; shipped lists: {', '.join(SHIPPED_WORDLISTS)}")
        path = package_path("moderation", "wordlists", f"{lang}.txt")
        return cls.parse(path.read_text(encoding="utf-8"), lang, f"wordlists/{lang}.txt")

    def extend(self, raw_entries: Iterable[str], *, where: str = "extra_words") -> None:
        """Add entries given as strings; errors name ``where[i]``."""
        for i, raw in enumerate(raw_entries):
            try:
                self.entries.append(parse_entry(raw))
            except EntryError as error:
                raise ConfigError(f"{where}[{i}]: {error}") from None

    def blocked(self) -> list[Entry]:
        return [e for e in self.entries if not e.exception]

    def exceptions(self) -> list[Entry]:
        return [e for e in self.entries if e.exception]


def read_text(path: Path, what: str) -> str:
    """A UTF-8 file's text, or an error naming the file and what is wrong with it."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise SourceError(f"not UTF-8 text ({error.reason} at byte {error.start})", path=path) from None
