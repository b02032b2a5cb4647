"""A safety screen for what the retrieval bot learns and says.

A retrieval bot that learns replies from its users will repeat whatever they teach it (Microsoft's
Tay learned toxicity in a day). :class:`Moderator` is the screen used when a corpus is imported,
before a user's message is learned and before the bot says anything. Three layers vote, and the
highest evidence wins:

1. **Word lists** (``wordlists/en.txt``, ``wordlists/ru.txt``, written for Rejoinder): English
   profanity and slurs, Russian mat matched by root. Their format is described in
   ``wordlists/README.md``; a hit scores 1.0 and gives the reason ``wordlist:<lang>:<word>``.
2. **Policy rules** (:class:`PolicyRule`): what a bag of words misses, such as threats of violence
   ("I will find you and kill you", "я тебя убью") and dehumanising templates ("<group> are
   vermin"). A hit scores 1.0 and gives ``policy:<name>``. Built-in rules are in
   :data:`BUILTIN_RULES`; :class:`PatternRule` adds more, also from a policy file.
3. **The model** from the optional package ``alt-profanity-check`` (a calibrated linear SVM over
   TF-IDF, English only). It is imported lazily, the first time a :class:`Moderator` wants it;
   without it :attr:`Moderator.model_available` is False and the other layers still work. Its
   probability is the score; at or above the threshold it gives ``model:0.93``.

Before matching, text is normalised (:meth:`Moderator.normalise`) to defeat obfuscation: NFKC,
casefolding, zero-width characters and diacritics removed (Cyrillic й kept, ё read as е), letters
spelled out one by one joined ("f u c k", "п.и.з.д.а"), leetspeak read ("sh1t", "$hit", "e6ать"),
Latin/Cyrillic/Greek look-alike letters read in the script of the word they sit in ("сyка" with
Latin y, "xуй" with Latin x, "fuсk" with Cyrillic с), punctuation turned into spaces (apostrophes
dropped: "I'll" becomes "ill"), and runs of three or more identical letters shortened to two
("fuuuuck" becomes "fuuck"; word-list entries accept each letter once or twice). A letter masked
with ``*`` inside a word ("f*ck") is kept as ``*``, and word-list entries accept it for any letter
but the first and last. The model scores both the original text and the normalised one and the
higher probability counts, because it was trained on ordinary text.

:meth:`Moderator.check_many` is the batch path for corpus imports: one model call for all texts,
and every word list and pattern rule compiled into a few combined regular expressions used as a
prefilter, so clean text costs a handful of regex scans. ``check(t) == check_many([t])[0]``.

A policy file (YAML, or JSON by extension) configures a moderator; see
:meth:`Moderator.from_policy_file`. Errors name the file, the field (``rules[2].pattern``) and,
for YAML, the line, and say what was expected.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rejoinder.errors import ConfigError, SourceError

__all__ = [
    "BUILTIN_RULES",
    "SHIPPED_WORDLISTS",
    "Moderator",
    "PatternRule",
    "PolicyRule",
    "Verdict",
    "WordList",
]

DEFAULT_THRESHOLD = 0.8
SHIPPED_WORDLISTS = ("en", "ru")


@dataclass(frozen=True)
class Verdict:
    """What the moderator decided about one text.

    ``score`` (0..1) is the highest toxicity evidence found: 1.0 for a word-list or policy hit,
    otherwise the model's probability (0.0 without a model). ``reasons`` are machine-readable:
    ``model:0.93`` (only at or above the threshold), ``wordlist:<lang>:<word>`` and
    ``policy:<rule name>``, in that order; they are empty when the text is allowed.
    """

    allowed: bool
    score: float
    reasons: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Normalisation

# Deleted outright: zero-width and invisible formatting characters, the soft hyphen, apostrophes.
_DELETE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
    "'`\u2018\u2019\u02bc\u02b9\u00b4"
)
_DELETE_TABLE = str.maketrans("", "", _DELETE)

# Combining marks after a Latin, Greek or Cyrillic letter (after NFD); other scripts keep theirs.
_DIACRITIC_RE = re.compile(r"(?<=[A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff])[\u0300-\u036f]+")
_SHORT_I, _SHORT_I_UPPER = "\ue000", "\ue001"  # placeholders that keep й/Й through NFD

# Letters (or leet characters) standing alone, three or more in a row, separated by spaces,
# dots, dashes, asterisks, underscores and the like: "f u c k", "f.u.c.k", "х у й".
_SINGLE = r"(?:[^\W_]|[@$])"
_JOIN_SEP = r"[\s.\-*_·•+~/\\|]+"
_JOIN_RE = re.compile(rf"(?<![\w@$]){_SINGLE}(?:{_JOIN_SEP}{_SINGLE}){{2,}}(?![\w@$])")
_JOIN_DROP_RE = re.compile(_JOIN_SEP)

_TOKEN_RE = re.compile(r"[\w@$!]+")
_LEET_CHARS_RE = re.compile(r"[0-9@$!]")
_NOT_CYRILLIC_RE = re.compile(r"[^\u0400-\u04ff]")
_PUNCT_RE = re.compile(r"(?:[^\w*]|_)+")
_STRAY_STAR_RE = re.compile(r"(?<![\w*])\*+|\*+(?![\w*])")
_RUN_RE = re.compile(r"([^\W\d_])\1{2,}")
_SPACES_RE = re.compile(r" {2,}")

# Look-alikes read as Cyrillic inside a Cyrillic word, and as Latin inside a Latin word.
_TO_CYRILLIC = {
    **dict(zip("aAbBcCdDeEHhKkMmnoOpPrTtuwWXxyYzZ", "аАбВсСдДеЕНнКкМмпоОрРгТтишШХхуУзЗ", strict=True)),
    **dict(zip("αΑβΒεΕΗκΚΜοΟρΡτΤΥχΧφΦπΠ", "аАвВеЕНкКМоОрРтТУхХфФпП", strict=True)),
}
_TO_CYRILLIC_LEET = {"0": "о", "3": "з", "4": "ч", "6": "б", "@": "а"}
_TO_LATIN = {
    **dict(zip("аАвВсСеЕнНкКмМоОрРтТуУхХіІјЈѕЅԁԛԝѵгпиьъ", "aAbBcCeEhHkKmMoOpPtTyYxXiIjJsSdqwvrnubb", strict=True)),
    **dict(zip("αΑβΒεΕηΗιΙκΚμΜνΝοΟρΡτΤυΥχΧζΖω", "aAbBeEnHiIkKuMvNoOpPtTuYxXzZw", strict=True)),
}
_TO_LATIN_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a", "$": "s"}
# Letters that occur in only one of the two scripts decide which script a mixed word is in.
_LATIN_AMBIGUOUS = frozenset(k for k in _TO_CYRILLIC if k.isascii())
_CYRILLIC_AMBIGUOUS = frozenset(k for k in _TO_LATIN if "\u0400" <= k <= "\u04ff")


def _is_latin(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("\u00c0" <= ch <= "\u024f" and ch.isalpha())


def _is_cyrillic(ch: str) -> bool:
    return "\u0400" <= ch <= "\u04ff"


def _fix_token(match: re.Match[str]) -> str:
    """Read leetspeak and look-alike letters in one word, in the script most of it is written in."""
    token = match.group()
    if token.isalpha() and (token.isascii() or not _NOT_CYRILLIC_RE.search(token)):
        return token  # one script, no leet: nothing to do
    latin = cyrillic = latin_only = cyrillic_only = 0
    for ch in token:
        if _is_latin(ch):
            latin += 1
            latin_only += ch not in _LATIN_AMBIGUOUS
        elif _is_cyrillic(ch):
            cyrillic += 1
            cyrillic_only += ch not in _CYRILLIC_AMBIGUOUS
    if latin + cyrillic == 0:
        return token  # a number, or a word in another script (Greek, CJK...); Greek look-alikes
        # inside a Latin or Cyrillic word are read as that script below
    # Letters of one script only decide; failing that, the script most letters are written in.
    to_cyrillic = cyrillic_only > latin_only if cyrillic_only != latin_only else cyrillic > latin
    letters, leet = (_TO_CYRILLIC, _TO_CYRILLIC_LEET) if to_cyrillic else (_TO_LATIN, _TO_LATIN_LEET)
    out = []
    last = len(token) - 1
    for i, ch in enumerate(token):
        if ch in letters and not (_is_latin(ch) if not to_cyrillic else _is_cyrillic(ch)):
            out.append(letters[ch])
        elif ch.isdigit():
            # A lone digit among letters is leet ("sh1t"); a run of digits is a number ("mp3", "90s").
            alone = (i == 0 or not token[i - 1].isdigit()) and (i == last or not token[i + 1].isdigit())
            out.append(leet.get(ch, ch) if alone else ch)
        elif ch == "!":
            # Only inside a word ("sh!t"); "wow!" keeps its exclamation mark.
            inside = 0 < i < last and token[i - 1].isalpha() and token[i + 1].isalpha()
            out.append("i" if inside and not to_cyrillic else ch)
        elif ch in "@$":
            out.append(leet.get(ch, ch))
        else:
            out.append(ch)
    return "".join(out)


def _join_letters(match: re.Match[str]) -> str:
    return _JOIN_DROP_RE.sub("", match.group())


def _strip_diacritics(text: str) -> str:
    text = text.replace("й", _SHORT_I).replace("Й", _SHORT_I_UPPER)
    text = unicodedata.normalize("NFC", _DIACRITIC_RE.sub("", unicodedata.normalize("NFD", text)))
    return text.replace(_SHORT_I, "й").replace(_SHORT_I_UPPER, "Й")


def _normalise(text: str) -> str:
    """The matching form of ``text``: see the module docstring for every step."""
    text = unicodedata.normalize("NFKC", text).translate(_DELETE_TABLE)
    ascii_text = text.isascii()
    if not ascii_text:
        text = _strip_diacritics(text)
    text = _JOIN_RE.sub(_join_letters, text)
    if not ascii_text or _LEET_CHARS_RE.search(text):
        text = _TOKEN_RE.sub(_fix_token, text)
    text = text.casefold()
    text = _PUNCT_RE.sub(" ", text)
    if "*" in text:
        text = _STRAY_STAR_RE.sub(" ", text)
        text = _SPACES_RE.sub(" ", text)
    text = _RUN_RE.sub(r"\1\1", text)
    return text.strip()


def _light_form(text: str) -> str:
    """Casefolded text with punctuation as spaces: what the model would see anyway.

    When this equals the normalised text, normalisation changed nothing the model's tokenizer
    cares about, and scoring the original again would give the same probability.
    """
    return _PUNCT_RE.sub(" ", text.casefold()).strip()


# --------------------------------------------------------------------------------------------
# Word lists

_WORD_START = r"(?<![\w*])"
_WORD_END = r"(?![\w*])"
_WILDCARD_BODY_RE = re.compile(r"(?:[^\W_]|\[[^\W_]+\]| )+")
_CLASS_OR_CHAR_RE = re.compile(r"\[([^\W_]+)\]|(.)")


class _EntryError(ValueError):
    """An entry of a word list (or an allow term) is malformed; the caller says where it is."""


@dataclass(frozen=True)
class _Entry:
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
    body = unicodedata.normalize("NFKC", body).translate(_DELETE_TABLE).casefold()
    if not body.isascii():
        body = _strip_diacritics(body)
    body = re.sub(r"[\s\-]+", " ", body).strip()
    return _RUN_RE.sub(r"\1\1", body)


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


def _parse_entry(raw: str, *, allow_term: bool = False) -> _Entry:
    """One line of a word list: ``word``, ``word*``, ``*word``, ``*word*``, ``re:REGEX``, ``!ENTRY``.

    With ``allow_term`` the entry is an exception (a term never flagged) whether or not it
    starts with "!".
    """
    if not isinstance(raw, str):
        raise _EntryError(f"expected a string, found {type(raw).__name__}")
    text = raw.strip()
    exception = allow_term
    if text.startswith("!"):
        exception, text = True, text[1:].strip()
    if not text:
        raise _EntryError("the entry is empty; expected a word, a word with '*' at either end, or re:REGEX")
    if text.startswith("re:"):
        source = text[3:].strip()
        if not source:
            raise _EntryError("expected a regular expression after 're:'")
        try:
            compiled = re.compile(f"(?:{source})")
        except re.error as error:
            raise _EntryError(f"{source!r} is not a valid regular expression ({error})") from None
        if compiled.groups:
            raise _EntryError(f"{source!r} has a capturing group; use non-capturing groups (?:...) in word lists")
        if compiled.search("") is not None:
            raise _EntryError(f"{source!r} matches empty text, so it would flag (or allow) everything")
        return _Entry(text, source, exception, anchored=False)
    prefix = text.startswith("*")
    suffix = len(text) > 1 and text.endswith("*")
    body = _normalise_entry(text[1 if prefix else 0 : len(text) - 1 if suffix else len(text)])
    if not body or not _WILDCARD_BODY_RE.fullmatch(body):
        raise _EntryError(
            f"{text!r} is not a word list entry; expected letters and spaces with optional [classes] "
            "and '*' at either end (like 'bitch*' or '*ху[йея]*'), or re:REGEX"
        )
    core = _wildcard_regex(body) + ("" if suffix else _WORD_END)
    first = re.escape(body[0]) if body[0] not in "[ " else ""
    if not core.startswith(first) or core[len(first) : len(first) + 1] == "{":
        first = ""
    return _Entry(text, core, exception, anchored=not prefix, first=first)


def _combine(entries: Iterable[_Entry]) -> re.Pattern[str] | None:
    """One regex for many entries: word-start entries share one look-behind."""
    entries = list(entries)
    anchored = _factor([e for e in entries if e.anchored])
    branches = [_WORD_START + "(?:" + "|".join(anchored) + ")"] if anchored else []
    branches.extend(_factor([e for e in entries if not e.anchored]))
    return re.compile("|".join(branches)) if branches else None


def _factor(entries: list[_Entry]) -> list[str]:
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


def _token_span(text: str, start: int, end: int) -> tuple[int, int]:
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
    entries: list[_Entry] = field(default_factory=list)
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
                wordlist.entries.append(_parse_entry(stripped))
            except _EntryError as error:
                raise SourceError(str(error), path=path, line=number) from None
        return wordlist

    @classmethod
    def from_file(cls, path: str | Path, lang: str | None = None) -> WordList:
        path = Path(path)
        return cls.parse(_read_text(path, "word list"), lang or path.stem, path)

    @classmethod
    def shipped(cls, lang: str) -> WordList:
        """A list shipped with Rejoinder (``en``, ``ru``)."""
        if lang not in SHIPPED_WORDLISTS:
            raise ConfigError(f"no shipped word list {lang!r}; shipped lists: {', '.join(SHIPPED_WORDLISTS)}")
        resource = resources.files("rejoinder.bots.retrieval").joinpath("wordlists", f"{lang}.txt")
        return cls.parse(resource.read_text(encoding="utf-8"), lang, f"wordlists/{lang}.txt")

    def extend(self, raw_entries: Iterable[str], *, where: str = "extra_words") -> None:
        """Add entries given as strings; errors name ``where[i]``."""
        for i, raw in enumerate(raw_entries):
            try:
                self.entries.append(_parse_entry(raw))
            except _EntryError as error:
                raise ConfigError(f"{where}[{i}]: {error}") from None

    def blocked(self) -> list[_Entry]:
        return [e for e in self.entries if not e.exception]

    def exceptions(self) -> list[_Entry]:
        return [e for e in self.entries if e.exception]


# --------------------------------------------------------------------------------------------
# Policy rules


@runtime_checkable
class PolicyRule(Protocol):
    """A check that a bag of words misses.

    ``check`` gets the original text and its normalised form (see :meth:`Moderator.normalise`)
    and returns a reason (conventionally ``policy:<name>``) when the text breaks the rule.
    """

    name: str
    lang: str

    def check(self, original: str, normalised: str) -> str | None: ...


@dataclass(frozen=True)
class PatternRule:
    """A rule that fires when ``pattern`` is found in the normalised text.

    The normalised text is lowercase, with apostrophes dropped ("I'll" is "ill"), punctuation
    turned into single spaces and leetspeak read, so write patterns for that form. Matching
    ignores case unless ``ignore_case`` is False (the built-in rules, written in lowercase, save
    the cost). ``lang`` is informative ("en", "ru", or "any"). Rules without capturing groups
    share one combined prefilter regex, so many rules cost little on clean text.
    """

    name: str
    pattern: str
    lang: str = "any"
    ignore_case: bool = True
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a pattern rule needs a non-empty name, found {self.name!r}")
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ConfigError(f"rule {self.name!r}: expected a non-empty regular expression, found {self.pattern!r}")
        try:
            regex = re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)
        except re.error as error:
            raise ConfigError(
                f"rule {self.name!r}: {self.pattern!r} is not a valid regular expression ({error})"
            ) from None
        if regex.search("") is not None:
            raise ConfigError(f"rule {self.name!r}: {self.pattern!r} matches empty text, so it would flag everything")
        object.__setattr__(self, "regex", regex)

    @property
    def reason(self) -> str:
        return f"policy:{self.name}"

    def check(self, original: str, normalised: str) -> str | None:
        return self.reason if self.regex.search(normalised) else None


def _any(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


def _any_word(words: str) -> str:
    """Space-separated alternatives; "_" stands for whitespace inside one ("black_people")."""
    return _any(*(w.replace("_", r"\s+") for w in words.split()))


def _at_word_start(*alternatives: str) -> str:
    # One check for all alternatives, and only at word starts (\b would also try word ends).
    return r"(?<!\w)" + _any(*alternatives)


# Threats of violence and telling someone to kill themselves (English). The text is normalised:
# "I'll" is "ill", "I'm" is "im". Up to six words may stand between "I will" and the threat
# ("I will find you and kill you"), but no negation or new subject ("I will never hurt you",
# "I was ill and it hurt you" pass).
_EN_WILL = _any(
    r"(?:i|we)\s+(?:will|shall|(?:am|are)\s+(?:going\s+to|gonna|about\s+to)|gonna|wanna|want\s+to)",
    r"(?:ill|i\s+ll|imma|ima|im\s+(?:going\s+to|gonna|about\s+to)|were\s+(?:going\s+to|gonna))",
)
_EN_FILLER = r"(?:\s+(?!(?:not|never|no|dont|wont|cant|it|that|this|he|she|they|would|could|if|but)\b)\w+){0,6}?"
_EN_HARM = _any_word(
    "kill murder hurt stab shoot strangle choke rape slaughter behead butcher torture kidnap punch gut skin end "
    "break smash beat_up beat_the_shit_out_of hunt_down"
)
_EN_VICTIM = _any(
    _any_word("you u ya yall him her them everyone everybody"),
    r"your\s+" + _any_word("family kids children wife husband mom mum mother dad father sister brother face legs neck"),
)
_EN_YOURSELF = r"(?:your\s*self|urself|yourselves)"
_EN_THREAT = _at_word_start(
    rf"{_EN_WILL}{_EN_FILLER}\s+{_EN_HARM}\s+{_EN_VICTIM}\b",
    r"(?:you|u)\s+(?:should|must|need\s+to|deserve\s+to|ought\s+to|better)\s+(?:just\s+|go\s+)?"
    rf"(?:die|be\s+(?:killed|shot|hanged|raped)|kill\s+{_EN_YOURSELF})\b",
    rf"(?<!dont\s)(?<!not\s)(?:kill|hang|shoot|neck)\s+{_EN_YOURSELF}\b",
    r"kys\b",
    r"(?:i\s+)?hope\s+(?:you|u)\s+(?:die|get\s+(?:killed|raped|shot))\b",
    r"(?:go|just)\s+die\b",
    r"die\s+in\s+a\s+(?:fire|ditch|hole)\b",
)

# The same in Russian: "я тебя убью", "убей себя", "сдохни" (ё is read as е).
_RU_KILL = _any(
    *(
        rf"{stem}(?:{endings})"
        for stem, endings in (
            ("убь", "ю|ем"),
            ("прибь", "ю|ем"),
            ("зареж", "у|ем"),
            ("пристрел", "ю|им"),
            ("застрел", "ю|им"),
            ("уро", "ю|ем"),
            ("задуш", "у|им"),
            ("замоч", "у|им"),
            ("закопа", "ю|ем"),
            ("грохн", "у|ем"),
            ("пореш", "у|им"),
            ("изобь", "ю|ем"),
            ("покалеч", "у|им"),
            ("сожг", "у"),
            ("сожж", "ем"),
            ("приконч", "у|им"),
            ("повеш", "у|ем"),
        )
    )
)
_RU_OBJECT = _any_word("тебя вас тебе вам его ее их")
_RU_THREAT = _at_word_start(
    rf"{_RU_OBJECT}\s+(?:\w+\s+){{0,2}}?{_RU_KILL}\b",
    rf"{_RU_KILL}\s+(?:\w+\s+){{0,2}}?{_RU_OBJECT}\b",
    rf"найд(?:у|ем)\s+(?:тебя\s+|вас\s+)?и\s+{_RU_KILL}\b",
    _any_word("сдохни сдохните сдохнешь сдохнете убейся убейтесь повесься повесьтесь вскройся вскройтесь выпились")
    + r"\b",
    r"убей(?:те)?\s+себя\b",
    r"чтоб(?:ы)?\s+(?:ты|вы)\s+(?:\w+\s+)?сдох",
    r"тебе\s+не\s+жить\b",
)

# Dehumanising templates about identity groups ("<group> are vermin", "gas the <group>").
_EN_GROUP = _any_word(
    "jews muslims christians catholics hindus sikhs atheists black_people blacks white_people whites gays "
    "gay_people lesbians homosexuals trans_people transgenders women men immigrants migrants refugees foreigners "
    "mexicans hispanics latinos arabs africans asians chinese indians gypsies roma russians ukrainians americans "
    "disabled_people"
)
_EN_VERMIN = _any_word(
    "animals vermin subhumans subhuman sub_humans sub_human cockroaches roaches rats parasites apes monkeys pigs "
    "dogs savages insects a_disease a_plague a_cancer a_virus scum trash garbage filth not_human not_even_human "
    "less_than_human inferior"
)
_EN_HATE = _at_word_start(
    rf"(?:all\s+|these\s+|those\s+|the\s+)?{_EN_GROUP}\s+(?:are|r)\s+"
    rf"(?:{_any_word('all just nothing_but like no_better_than basically literally fucking filthy dirty')}\s+)*"
    rf"{_EN_VERMIN}\b",
    rf"{_EN_GROUP}\s+(?:should|must|need\s+to|deserve\s+to|ought\s+to)\s+(?:all\s+)?(?:be\s+)?"
    rf"{_any_word('exterminated gassed killed wiped_out eradicated die burn hang hanged shot lynched')}\b",
    rf"{_any_word('kill exterminate gas eradicate wipe_out lynch hang')}\s+(?:all\s+)?(?:the\s+)?{_EN_GROUP}\b",
)
# Groups named by nouns may stand right before the insult ("мигранты паразиты"); those that are
# also adjectives ("черные", "русские") need a link word, or "черные крысы" (black rats) would match.
_RU_GROUP_NOUN = _any_word(
    "евреи мусульмане христиане негры геи гомосексуалисты лесбиянки трансгендеры женщины бабы мужики мигранты "
    "беженцы иностранцы цыгане кавказцы чеченцы дагестанцы таджики узбеки киргизы армяне азербайджанцы грузины "
    "украинцы американцы китайцы азиаты арабы инвалиды"
)
_RU_GROUP_ADJ = _any_word("черные русские нерусские приезжие")
_RU_VERMIN = _any_word(
    "животные скоты скотина звери зверье паразиты тараканы крысы обезьяны свиньи собаки нелюди недочеловеки "
    "недолюди мрази отбросы мусор зараза чума вирус быдло не_люди"
)
_RU_LINK = _any_word("это все просто как являются сплошные сплошь грязные вонючие поганые")
_RU_GROUP_ACC = _any_word(
    "евреев жидов мусульман черных негров геев пидоров мигрантов приезжих цыган кавказцев чеченцев таджиков "
    "узбеков армян хохлов русских нерусских американцев китайцев чурок хачей"
)
_RU_KILL_ALL = _any_word(
    "убивать мочить вешать резать травить уничтожать истреблять истребить уничтожить перебить сжечь повесить "
    "расстрелять перестрелять вырезать"
)
_RU_HATE = _at_word_start(
    rf"(?:все\s+)?{_RU_GROUP_NOUN}\s+(?:{_RU_LINK}\s+)*{_RU_VERMIN}\b",
    rf"(?:все\s+)?{_RU_GROUP_ADJ}\s+(?:{_RU_LINK}\s+)+{_RU_VERMIN}\b",
    rf"{_RU_KILL_ALL}\s+(?:всех\s+)?{_RU_GROUP_ACC}\b",
)

BUILTIN_RULES: tuple[PatternRule, ...] = (
    PatternRule("threat", _EN_THREAT, "en", ignore_case=False),
    PatternRule("threat", _RU_THREAT, "ru", ignore_case=False),
    PatternRule("hate", _EN_HATE, "en", ignore_case=False),
    PatternRule("hate", _RU_HATE, "ru", ignore_case=False),
)
"""Rules every moderator has (for the languages it screens) unless ``builtin_rules=False``."""


# --------------------------------------------------------------------------------------------
# The model (optional)

_model_cache: dict[str, Any] = {}


def _load_model() -> Any:
    """``profanity_check.predict_prob``, imported on first use; None when it is not installed."""
    if "predict_prob" not in _model_cache:
        try:
            from profanity_check import predict_prob
        except ImportError:
            predict_prob = None
        _model_cache["predict_prob"] = predict_prob
    return _model_cache["predict_prob"]


# --------------------------------------------------------------------------------------------
# The moderator


class Moderator:
    """Screens text with word lists, policy rules and (when installed) a profanity model.

    ``threshold`` (0 < t <= 1): a text whose score reaches it is blocked; word-list and policy
    hits score 1.0. ``use_model``: use ``alt-profanity-check`` when it is installed
    (:attr:`model_available` says whether it is). ``wordlists`` names the languages screened:
    their shipped word lists and built-in rules (:data:`BUILTIN_RULES`, unless
    ``builtin_rules=False``). ``rules`` are added after the built-in ones. ``extra_words`` maps a
    language to more word-list entries (a language without a shipped list gets a list of its
    own); ``allow`` lists terms (same syntax) that the word lists and the model never flag.
    """

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        use_model: bool = True,
        rules: Sequence[PolicyRule] = (),
        wordlists: Sequence[str] = SHIPPED_WORDLISTS,
        extra_words: Mapping[str, Sequence[str]] | None = None,
        allow: Sequence[str] = (),
        builtin_rules: bool = True,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            raise ConfigError(f"threshold must be a number above 0 and at most 1, found {threshold!r}")
        if isinstance(wordlists, str):
            raise ConfigError(f"wordlists must be a list of names like ['en', 'ru'], found the string {wordlists!r}")
        self.threshold = float(threshold)
        self.languages: tuple[str, ...] = tuple(wordlists)
        lists: dict[str, WordList] = {lang: WordList.shipped(lang) for lang in self.languages}
        for lang, words in (extra_words or {}).items():
            if isinstance(words, str):
                raise ConfigError(f"extra_words[{lang!r}] must be a list of entries, found the string {words!r}")
            lists.setdefault(lang, WordList(lang)).extend(words, where=f"extra_words[{lang!r}]")
        if isinstance(allow, str):
            raise ConfigError(f"allow must be a list of terms, found the string {allow!r}")
        allow_entries = []
        for i, term in enumerate(allow):
            try:
                allow_entries.append(_parse_entry(term, allow_term=True))
            except _EntryError as error:
                raise ConfigError(f"allow[{i}]: {error}") from None
        self.wordlists: tuple[WordList, ...] = tuple(lists.values())
        self._blocked_re = _combine(e for wl in self.wordlists for e in wl.blocked())
        self._list_res = [(wl.lang, rx) for wl in self.wordlists if (rx := _combine(wl.blocked())) is not None]
        self._exceptions_re = _combine([*(e for wl in self.wordlists for e in wl.exceptions()), *allow_entries])

        chosen: list[PolicyRule] = []
        if builtin_rules:
            chosen.extend(r for r in BUILTIN_RULES if r.lang in self.languages or r.lang == "any")
        for i, rule in enumerate(rules):
            if not isinstance(rule, PolicyRule):
                raise ConfigError(f"rules[{i}] is a {type(rule).__name__}, not a PolicyRule (name, lang, check)")
            chosen.append(rule)
        self.rules: tuple[PolicyRule, ...] = tuple(chosen)
        self._rule_prefilter, self._prefiltered = self._combine_rules(self.rules)

        self._predict_prob = _load_model() if use_model else None
        self.model_available: bool = self._predict_prob is not None

    @staticmethod
    def _combine_rules(rules: Sequence[PolicyRule]) -> tuple[re.Pattern[str] | None, frozenset[int]]:
        """One regex for every pattern rule without groups; it finds nothing iff none of them fires."""
        members = {
            i: f"(?i:{r.pattern})" if r.ignore_case else f"(?:{r.pattern})"
            for i, r in enumerate(rules)
            if isinstance(r, PatternRule) and r.regex.groups == 0
        }
        if not members:
            return None, frozenset()
        try:
            combined = re.compile("|".join(members.values()))
        except re.error:  # e.g. inline global flags inside one pattern: check each rule on its own
            return None, frozenset()
        return combined, frozenset(members)

    @classmethod
    def from_policy_file(cls, path: str | Path) -> Moderator:
        """A moderator configured by a YAML (or, with a ``.json`` name, JSON) policy file::

            threshold: 0.8          # 0 < t <= 1
            model: true             # use alt-profanity-check when installed
            wordlists: [en, ru]     # shipped lists (and built-in rules) to use
            builtin_rules: true     # threat and hate rules for those languages
            extra_words: {en: [frak, "re:gorr?am\\w*"], ru: [блин]}
            allow: [scunthorpe]     # terms the word lists and the model never flag
            rules:
              - {name: spam, pattern: "buy cheap \\w+", lang: en}

        Every key is optional. Unknown keys, wrong types and bad regular expressions raise
        :class:`SourceError` naming the file, the field (``rules[2].pattern``) and its line.
        """
        return cls(**_read_policy_file(path))

    def __repr__(self) -> str:
        return (
            f"Moderator(threshold={self.threshold}, languages={list(self.languages)}, "
            f"rules={len(self.rules)}, model_available={self.model_available})"
        )

    def normalise(self, text: str) -> str:
        """The form that word lists and pattern rules see (see the module docstring)."""
        return _normalise(text)

    def check(self, text: str, *, model_score: float | None = None) -> Verdict:
        """Screen one text; the same as ``check_many([text])[0]``.

        ``model_score``: the model's score of this very text, known from an earlier screening (the
        retrieval bot stores it with each reply), so that only the word lists and rules, which a
        policy change may have changed, run again.
        """
        return self.check_many([text], model_scores=None if model_score is None else [model_score])[0]

    def check_many(self, texts: Sequence[str], *, model_scores: Sequence[float] | None = None) -> list[Verdict]:
        """Screen many texts: one model call for all of them, word lists and rules as combined regexes."""
        if isinstance(texts, str):
            raise TypeError("check_many takes a sequence of texts; use check() for a single text")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is a {type(text).__name__}; expected str")
        normalised = [_normalise(t) for t in texts]
        if model_scores is not None:
            probabilities: list[float] | None = [float(p) for p in model_scores]
        elif self._predict_prob is not None:
            probabilities = self._model_scores(texts, normalised)
        else:
            probabilities = None
        verdicts = []
        for i, (original, norm) in enumerate(zip(texts, normalised, strict=True)):
            reasons: list[str] = []
            score = probabilities[i] if probabilities is not None else 0.0
            if score >= self.threshold:
                reasons.append(f"model:{score:.2f}")
            found = self._word_hits(norm) + self._rule_hits(original, norm)
            if found:
                score = 1.0
                reasons.extend(found)
            allowed = score < self.threshold
            verdicts.append(Verdict(allowed, score, () if allowed else tuple(reasons)))
        return verdicts

    def _model_scores(self, texts: list[str], normalised: list[str]) -> list[float]:
        """The model's probability for each text: the higher of its original and normalised forms."""
        batch: dict[str, int] = {}
        views: list[tuple[int, int]] = []
        for original, norm in zip(texts, normalised, strict=True):
            if self._exceptions_re is not None and self._exceptions_re.search(norm) is not None:
                # Exceptions ("moby dick", "magna cum laude", allow terms) are hidden from the model too.
                original = self._exceptions_re.sub(" ", _light_form(original))
                norm = self._exceptions_re.sub(" ", norm)
            n = batch.setdefault(norm, len(batch))
            o = n if _light_form(original) == norm else batch.setdefault(original, len(batch))
            views.append((o, n))
        if not batch:
            return []
        assert self._predict_prob is not None
        probabilities = [float(p) for p in self._predict_prob(list(batch))]
        return [max(probabilities[o], probabilities[n]) for o, n in views]

    def _word_hits(self, norm: str) -> list[str]:
        if self._blocked_re is None or self._blocked_re.search(norm) is None:
            return []
        exempt = []
        if self._exceptions_re is not None:
            exempt = [_token_span(norm, *m.span()) for m in self._exceptions_re.finditer(norm)]
        reasons: list[str] = []
        for lang, regex in self._list_res:
            for m in regex.finditer(norm):
                start, end = _token_span(norm, *m.span())
                if any(a <= start and end <= b for a, b in exempt):
                    continue
                reason = f"wordlist:{lang}:{norm[start:end]}"
                if reason not in reasons:
                    reasons.append(reason)
        return reasons

    def _rule_hits(self, original: str, norm: str) -> list[str]:
        prefilter_hit = self._rule_prefilter is not None and self._rule_prefilter.search(norm) is not None
        reasons: list[str] = []
        for i, rule in enumerate(self.rules):
            if i in self._prefiltered and not prefilter_hit:
                continue
            reason = rule.check(original, norm)
            if reason and reason not in reasons:
                reasons.append(reason)
        return reasons


# --------------------------------------------------------------------------------------------
# Policy files

_POLICY_KEYS = ("threshold", "model", "wordlists", "extra_words", "allow", "rules", "builtin_rules")
_RULE_KEYS = ("name", "pattern", "lang")
FieldPath = tuple[str | int, ...]


def _field_name(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "<top level>"


def _type_name(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}
    return names.get(type(value), f"a {type(value).__name__}")


def _yaml_line(text: str, path: FieldPath) -> int | None:
    """The line of a field in YAML (or JSON) text, found again with positions kept."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            pairs = [(k, v) for k, v in node.value if str(k.value) == str(part)]
            if not pairs:
                break
            node = pairs[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1


class _PolicyReader:
    """Checks a parsed policy file field by field; errors name the file, field and line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def error(self, field_path: FieldPath, message: str) -> SourceError:
        line = _yaml_line(self.text, field_path) if field_path else None
        return SourceError(f"{_field_name(field_path)}: {message}", path=self.path, line=line)

    def load(self) -> Any:
        if self.path.suffix.lower() == ".json":
            try:
                return json.loads(self.text)
            except json.JSONDecodeError as error:
                raise SourceError(
                    f"not valid JSON: {error.msg}", path=self.path, line=error.lineno, column=error.colno
                ) from None
        import yaml

        try:
            return yaml.safe_load(self.text)
        except yaml.YAMLError as error:
            raise SourceError.from_yaml(error, self.path) from None

    def strings(self, value: Any, field_path: FieldPath, what: str) -> list[str]:
        if not isinstance(value, list):
            raise self.error(field_path, f"expected a list of {what}, found {_type_name(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(
                    (*field_path, i),
                    f"expected {what[:-1] if what.endswith('s') else what} as a string, found {_type_name(item)}",
                )
        return value

    def entries(self, value: Any, field_path: FieldPath, *, allow_term: bool = False) -> list[str]:
        items = self.strings(value, field_path, "terms" if allow_term else "word list entries")
        for i, item in enumerate(items):
            try:
                _parse_entry(item, allow_term=allow_term)
            except _EntryError as error:
                raise self.error((*field_path, i), str(error)) from None
        return items

    def rule(self, value: Any, i: int) -> PatternRule:
        where: FieldPath = ("rules", i)
        if not isinstance(value, dict):
            raise self.error(where, f"expected a mapping with name, pattern and lang, found {_type_name(value)}")
        for key in value:
            if key not in _RULE_KEYS:
                raise self.error((*where, str(key)), f"unknown key {key!r} in a rule; expected {', '.join(_RULE_KEYS)}")
        for key in ("name", "pattern"):
            if key not in value:
                raise self.error(where, f"the rule has no {key}; every rule needs a name and a pattern")
            if not isinstance(value[key], str) or not value[key].strip():
                raise self.error((*where, key), f"expected a non-empty string, found {value[key]!r}")
        lang = value.get("lang", "any")
        if not isinstance(lang, str) or not lang.strip():
            raise self.error((*where, "lang"), f"expected a language code like 'en' or 'any', found {lang!r}")
        pattern = value["pattern"]
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error as error:
            raise self.error(
                (*where, "pattern"),
                f"{pattern!r} is not a valid regular expression ({error}); expected Python re syntax",
            ) from None
        if regex.search("") is not None:
            raise self.error((*where, "pattern"), f"{pattern!r} matches empty text, so it would flag everything")
        return PatternRule(value["name"].strip(), pattern, lang.strip())

    def read(self) -> dict[str, Any]:
        """Keyword arguments for :class:`Moderator`."""
        data = self.load()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SourceError(
                f"expected a mapping of policy settings ({', '.join(_POLICY_KEYS)}) at the top level, "
                f"found {_type_name(data)}",
                path=self.path,
            )
        for key in data:
            if key not in _POLICY_KEYS:
                raise self.error((str(key),), f"unknown key {key!r}; expected one of {', '.join(_POLICY_KEYS)}")
        kwargs: dict[str, Any] = {}
        if "threshold" in data:
            value = data["threshold"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise self.error(("threshold",), f"expected a number above 0 and at most 1, found {value!r}")
            kwargs["threshold"] = float(value)
        for key, option in (("model", "use_model"), ("builtin_rules", "builtin_rules")):
            if key in data:
                if not isinstance(data[key], bool):
                    raise self.error((key,), f"expected true or false, found {data[key]!r}")
                kwargs[option] = data[key]
        if "wordlists" in data:
            names = self.strings(data["wordlists"], ("wordlists",), "word list names")
            for i, name in enumerate(names):
                if name not in SHIPPED_WORDLISTS:
                    raise self.error(
                        ("wordlists", i),
                        f"no shipped word list {name!r}; expected one of {', '.join(SHIPPED_WORDLISTS)} "
                        "(put words for other languages under extra_words)",
                    )
            kwargs["wordlists"] = tuple(names)
        if "extra_words" in data:
            extra = data["extra_words"]
            if not isinstance(extra, dict):
                raise self.error(
                    ("extra_words",), f"expected a mapping from language to entries, found {_type_name(extra)}"
                )
            kwargs["extra_words"] = {
                str(lang): self.entries(words, ("extra_words", str(lang))) for lang, words in extra.items()
            }
        if "allow" in data:
            kwargs["allow"] = tuple(self.entries(data["allow"], ("allow",), allow_term=True))
        if "rules" in data:
            rules = data["rules"]
            if not isinstance(rules, list):
                raise self.error(
                    ("rules",), f"expected a list of rules (name, pattern, lang), found {_type_name(rules)}"
                )
            kwargs["rules"] = tuple(self.rule(rule, i) for i, rule in enumerate(rules))
        return kwargs


def _read_text(path: Path, what: str) -> str:
    """A UTF-8 file's text, or an error naming the file and what is wrong with it."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise SourceError(f"not UTF-8 text ({error.reason} at byte {error.start})", path=path) from None


def _read_policy_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return _PolicyReader(path, _read_text(path, "policy file")).read()
