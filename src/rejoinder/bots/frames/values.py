"""Typed slot values in user utterances, English and Russian: find them and normalise them.

``extract(text, type)`` returns every value of one slot type in an utterance; ``extract_all``
returns the values of several types without overlaps. Each :class:`Value` carries the normalised
value (JSON-serialisable), the surface text and its character offsets, and, for cities and slots
with a ``role``, the role the preposition in front of it suggests::

    >>> [(v.value, v.role) for v in extract("из Москвы в Санкт-Петербург", "city", lang="ru")]
    [('Moscow', 'origin'), ('Saint Petersburg', 'destination')]

Normal forms: date ``YYYY-MM-DD``; time ``HH:MM``; datetime ``YYYY-MM-DDTHH:MM`` (or a date when no
time was said); number ``int`` or ``float``; integer ``int``; money ``{"amount": "50.00", "currency":
"USD"}``; phone E.164; email lower-cased; card number digits; account number digits or a compact IBAN;
enum and lookup the canonical entry; city and location the English city name; text the stripped
utterance.

Dates and times are read relative to ``now`` with these rules:

* A date without a year, or a day of the month alone ("on the 5th"), is the next such day from today
  on (today included): on 2026-11-26 "3 декабря" is 2026-12-03, "the 5th" is 2026-12-05, "March 1"
  is 2027-03-01.
* "Friday", "on Friday", "this Friday", "в пятницу", "в эту пятницу": the nearest Friday from today
  on, today included. "next Friday", "в следующую пятницу": the first Friday strictly after today,
  moved on a week when that day is still in the current Monday-Sunday week; so it is always the
  Friday of next week (on Thursday 2026-11-26 "next Friday" is 2026-12-04, "next Monday" 2026-11-30).
  "last Friday", "в прошлую пятницу": the most recent Friday strictly before today.
* Parts of the day stand for a time when no clock time is said: morning / утром 09:00, afternoon /
  днём 13:00, evening / tonight / вечером 19:00, night / ночью 23:00, noon / полдень 12:00, midnight
  / полночь 00:00. With a clock time they say which half of the day it is in ("в 8 вечера" 20:00,
  "tomorrow evening at 7" 19:00).
* An hour from 1 to 6 with no am/pm, no part of the day and no leading zero is taken as afternoon
  ("at 3" 15:00, "в 5" 17:00); other hours are read as said ("at 10" 10:00, "at 03:00" 03:00).
* A bare number is a time only after at/by/around/в/к/около (and not followed by a word that makes
  it a count: "в 10 раз"), with am/pm, o'clock, утра or вечера, or with a colon: "at 10", "10pm",
  "10:30", "8 вечера", "в 10 утра".
* A time alone, asked for as a ``datetime``, is today when it is still ahead, else tomorrow.
* Numeric dates: ISO ``2026-12-03`` and ``dd.mm.yyyy`` / ``dd.mm.yy`` / ``dd.mm`` (two-digit month)
  only; slashed forms are ambiguous between countries. When the rules find no date, dateparser is
  tried and only complete absolute dates (day, month and year) it finds are kept ("3-Dec-2027").

Money needs a currency (a symbol, code or word): "50 dollars", "$50", "100 руб.", "1 500,50 ₽";
a bare number is not money. Number, integer and money values outside a slot's ``min``/``max`` are
dropped.

``extract_all`` prefers structured identifiers (card and account numbers, e-mail, phone), then
money and dates, then names (regex, enum, lookup, city, person), then plain numbers, then ``text``;
within a tier the longest match wins.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

from rejoinder.bots.frames.schema import Slot, SlotType
from rejoinder.errors import ConfigError, SourceError

GAZETTEER = Path(__file__).with_name("gazetteer") / "cities.tsv"

TYPES: tuple[str, ...] = get_args(SlotType)
"""Every slot type a frame may declare (the schema's list)."""


@dataclass(frozen=True)
class Value:
    """One typed value found in an utterance."""

    type: str
    value: Any
    text: str
    start: int
    end: int
    role: str | None = None


# --------------------------------------------------------------------------------------------
# Roles

_ORIGIN_NAMES = frozenset({"from", "origin", "source", "src", "departure", "depart", "start", "leaving"})
_DESTINATION_NAMES = frozenset({"to", "destination", "dest", "arrival", "arrive", "target", "end", "going"})
_ORIGIN_PREPOSITIONS = frozenset({"from", "из", "изо", "от", "ото", "с", "со"})
_DESTINATION_PREPOSITIONS = frozenset({"to", "for", "into", "towards", "toward", "в", "во", "на", "до"})


def default_role(slot_name: str) -> str | None:
    """The role a slot plays by its name: ``from``/``origin_city`` -> origin, ``to``/``arrival`` -> destination."""
    parts = [p for p in re.split(r"[_\W]+", slot_name.lower()) if p]
    if any(p in _ORIGIN_NAMES for p in parts):
        return "origin"
    if any(p in _DESTINATION_NAMES for p in parts):
        return "destination"
    return None


def _role_before(text: str, start: int) -> str | None:
    """The role suggested by the word just before ``start``: "from"/"из" origin, "to"/"в" destination."""
    match = re.search(r"([^\W\d_]+)[\s\-–—]*$", text[:start])
    if match is None:
        return None
    word = match.group(1).lower()
    if word in _ORIGIN_PREPOSITIONS:
        return "origin"
    if word in _DESTINATION_PREPOSITIONS:
        return "destination"
    return None


# --------------------------------------------------------------------------------------------
# Text helpers


def _lower(text: str) -> str:
    """Lower-case keeping every offset (characters whose lower case is longer stay as they are)."""
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text).replace("ё", "е")


_CYRILLIC = re.compile(r"[а-яА-ЯёЁ]")
_TOKEN = re.compile(r"[^\W_]+")


def _fold(word: str) -> str:
    """Lower case, ``ё`` -> ``е``, accents stripped from Latin letters."""
    word = word.lower().replace("ё", "е")
    if _CYRILLIC.search(word) or word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int

    @property
    def folded(self) -> str:
        return _fold(self.text)


def _tokens(text: str) -> list[_Token]:
    return [_Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


@lru_cache(maxsize=1)
def _analyzer() -> Any | None:
    try:
        import pymorphy3
    except ImportError:  # pragma: no cover - pymorphy3 is part of the [ru] extra
        return None
    return pymorphy3.MorphAnalyzer()


@lru_cache(maxsize=20000)
def _parses(word: str) -> tuple[tuple[str, str], ...]:
    """(normal form, tag) of every pymorphy3 parse of a Cyrillic word; empty for other words."""
    morph = _analyzer()
    if morph is None or not _CYRILLIC.search(word):
        return ()
    return tuple((p.normal_form.replace("ё", "е"), str(p.tag)) for p in morph.parse(word))


def _lemmas(word: str) -> frozenset[str]:
    """The word (folded) and every lemma it may have; for English a trailing plural -s is dropped too."""
    folded = _fold(word)
    keys = {folded}
    keys.update(lemma for lemma, _ in _parses(folded))
    if folded.isascii() and folded.isalpha() and len(folded) > 3 and folded.endswith("s"):
        keys.add(folded[:-1])
    return frozenset(keys)


def _lemma(word: str) -> str:
    """The most likely lemma of a word (the word itself when it is not Russian)."""
    parses = _parses(_fold(word))
    return parses[0][0] if parses else _fold(word)


def _pick(candidates: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Greedy non-overlapping choice of ``(start, end, rank, ...)`` tuples: lower rank, then longer, then earlier."""
    chosen: list[tuple[Any, ...]] = []
    for cand in sorted(candidates, key=lambda c: (c[2], c[0] - c[1], c[0])):
        if all(cand[1] <= c[0] or cand[0] >= c[1] for c in chosen):
            chosen.append(cand)
    return sorted(chosen, key=lambda c: c[0])


# --------------------------------------------------------------------------------------------
# Numbers: digits ("2,5", "1,500", "1 500") and number words in English and Russian

_EN_WORDS: dict[str, float] = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
_EN_WORDS.update({w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)})
_RU_WORDS: dict[str, float] = {
    w: i
    for i, w in enumerate(
        "ноль один два три четыре пять шесть семь восемь девять десять одиннадцать двенадцать тринадцать "
        "четырнадцать пятнадцать шестнадцать семнадцать восемнадцать девятнадцать".split()
    )
}
_RU_WORDS.update(
    {
        w: 10 * i
        for i, w in enumerate("двадцать тридцать сорок пятьдесят шестьдесят семьдесят восемьдесят девяносто".split(), 2)
    }
)
_RU_WORDS.update(
    {
        w: 100 * i
        for i, w in enumerate("сто двести триста четыреста пятьсот шестьсот семьсот восемьсот девятьсот".split(), 1)
    }
)
_RU_WORDS.update({"нуль": 0, "полтора": 1.5, "полторы": 1.5, "пару": 2})
_SCALES = {
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
    "тысяча": 1000,
    "миллион": 10**6,
    "миллиард": 10**9,
}
_SCALE_AFTER_DIGITS = re.compile(
    r"[ \u00a0]*(thousands?|millions?|billions?|тысяч[аиуеь]?|тыс\.?|миллион\w*|млн\.?|миллиард\w*|млрд\.?)(?![^\W\d_])"
)


def _scale_of(word: str) -> int:
    word = word.rstrip(".")
    if word.startswith(("thousand", "тыс")):
        return 1000
    if word.startswith(("million", "миллион", "млн")):
        return 10**6
    return 10**9


def _number_word(word: str) -> tuple[str, float] | None:
    """("add" | "hundred" | "dozen" | "scale", value) of a number word in any case form, or None."""
    if word in _EN_WORDS:
        return "add", _EN_WORDS[word]
    if word in ("hundred", "hundreds"):
        return "hundred", 100
    if word in ("dozen", "dozens"):
        return "dozen", 12
    if word.rstrip("s") in _SCALES and word.isascii():
        return "scale", _SCALES[word.rstrip("s")]
    if not _CYRILLIC.search(word):
        return None
    for lemma in (word, *(lemma for lemma, tag in _parses(word) if "NUMR" in tag or "NOUN" in tag or "Anum" in tag)):
        if lemma in _RU_WORDS:
            return "add", _RU_WORDS[lemma]
        if lemma in _SCALES:
            return "scale", _SCALES[lemma]
    return None


def _as_number(value: float | Decimal) -> int | float:
    return int(value) if value == int(value) else float(value)


def _word_numbers(text: str, tokens: Sequence[_Token] | None = None) -> list[tuple[int, int, int | float]]:
    """(start, end, value) of every run of number words: "two hundred and fifty", "двести пятьдесят"."""
    tokens = _tokens(text) if tokens is None else tokens
    found = []
    i = 0
    while i < len(tokens):
        read = _read_number_words(text, tokens, i)
        if read is None:
            i += 1
            continue
        j, value = read
        found.append((tokens[i].start, tokens[j - 1].end, _as_number(value)))
        i = j
    return found


def _read_number_words(text: str, tokens: Sequence[_Token], i: int) -> tuple[int, float] | None:
    """The longest grammatical number starting at token ``i``: (index after it, value)."""
    total, current, last = 0.0, 0.0, None
    j = i
    while j < len(tokens):
        word = tokens[j].folded
        if j > i and not re.fullmatch(r"[ \u00a0\t-]*", text[tokens[j - 1].end : tokens[j].start]):
            break
        following = tokens[j + 1].folded if j + 1 < len(tokens) else ""
        if word == "a" and j == i and following in ("hundred", "thousand", "million", "dozen"):
            j += 1
            continue
        if word == "and" and last is not None and _number_word(following) is not None:
            j += 1
            continue
        parsed = _number_word(word)
        if parsed is None:
            break
        kind, value = parsed
        if kind == "add":
            place = 10 if value < 10 else 100 if value < 100 else 1000
            if current % place or (value < 10 and 10 <= current % 100 < 20) or (current and value != int(value)):
                break
            current += value
        elif kind in ("hundred", "dozen"):
            if current >= 10:
                break
            current = (current or 1) * value
        else:
            if total % (value * 1000):
                break
            total += (current or 1) * value
            current = 0
        j += 1
        last = (j, total + current)
    return last


_EN_DIGITS = re.compile(r"(?<![\w.,])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:[.,]\d+)?(?!\w|[.,]\d)")
_RU_DIGITS = re.compile(r"(?<![\w.,])-?(?:\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?!\d)|\d+)(?:[.,]\d+)?(?!\w|[.,]\d)")


def _digit_value(raw: str, lang: str) -> Decimal:
    raw = re.sub(r"[ \u00a0\u202f]", "", raw)
    if lang != "ru" and re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", raw):
        raw = raw.replace(",", "")
    return Decimal(raw.replace(",", "."))


def _numbers(text: str, lang: str) -> list[tuple[int, int, int | float]]:
    """(start, end, value) of every number, digits or words, longest first where they overlap."""
    pattern = _RU_DIGITS if lang == "ru" else _EN_DIGITS
    found: list[tuple[Any, ...]] = []
    for m in pattern.finditer(text):
        value, end = _digit_value(m.group(), lang), m.end()
        scale = _SCALE_AFTER_DIGITS.match(_lower(text), end)
        if scale:
            value, end = value * _scale_of(scale.group(1)), scale.end()
        found.append((m.start(), end, 0, _as_number(value)))
    found.extend((s, e, 1, v) for s, e, v in _word_numbers(text))
    return [(s, e, v) for s, e, _, v in _pick(found)]


def _in_range(value: float, slot: Slot | None) -> bool:
    if slot is None:
        return True
    return (slot.min is None or value >= slot.min) and (slot.max is None or value <= slot.max)


# --------------------------------------------------------------------------------------------
# Money: an amount with a currency symbol, code or word before or after it

_CURRENCY_WORDS = {
    "USD": r"\$|us\$|usd|dollars?|bucks?|доллар(?:ов|а|ы|ам|ами)?|бакс(?:ов|а|ы)?",
    "EUR": r"€|eur|euros?|евро",
    "GBP": r"£|gbp|pounds?(?:\s+sterling)?|quid|фунт(?:ов|а|ы)?(?:\s+стерлингов)?",
    "RUB": r"₽|rub|roubles?|rubles?|руб(?:лей|ля|ль|лю|лями|лях)?\.?|р\.",
}
_CURRENCY_PREFIX = {"USD": r"us\$|\$|usd", "EUR": r"€|eur", "GBP": r"£|gbp", "RUB": r"₽|rub"}
_CURRENCY_AFTER = re.compile(
    r"[ \u00a0]*(?:" + "|".join(f"(?P<{c}>{p})" for c, p in _CURRENCY_WORDS.items()) + r")(?![^\W\d_])"
)
_CURRENCY_BEFORE = re.compile(
    r"(?<![^\W\d_])(?:" + "|".join(f"(?P<{c}>{p})" for c, p in _CURRENCY_PREFIX.items()) + r")[ \u00a0]*$"
)
_MONEY_AMOUNT = re.compile(
    r"(?<![\w.,])(?P<int>\d{1,3}(?P<sep>[ \u00a0\u202f,.])\d{3}(?:(?P=sep)\d{3})*|\d+)"
    r"(?:(?P<dec>[.,])(?P<frac>\d{1,2}))?(?!\d)"
)


def _money(text: str, lang: str, slot: Slot | None) -> list[Value]:
    low = _lower(text)
    amounts: list[tuple[Any, ...]] = []
    for m in _MONEY_AMOUNT.finditer(text):
        if m.group("dec") and m.group("dec") == m.group("sep"):
            continue
        whole = re.sub(r"\D", "", m.group("int"))
        value, end = Decimal(f"{whole}.{m.group('frac') or '0'}"), m.end()
        scale = _SCALE_AFTER_DIGITS.match(low, end)
        if scale:
            value, end = value * _scale_of(scale.group(1)), scale.end()
        amounts.append((m.start(), end, 0, value))
    amounts.extend((s, e, 1, Decimal(str(v))) for s, e, v in _word_numbers(text))
    found: list[tuple[Any, ...]] = []
    for start, end, rank, amount in amounts:
        after = _CURRENCY_AFTER.match(low, end)
        before = _CURRENCY_BEFORE.search(low[:start])
        if after:
            currency, span = after.lastgroup, (start, after.end())
        elif before:
            currency, span = before.lastgroup, (before.start(), end)
        else:
            continue
        found.append((*span, rank, amount, currency))
    values = []
    for start, end, _, amount, currency in _pick(found):
        if _in_range(float(amount), slot):
            amount_text = str(amount.quantize(Decimal("0.01")))
            values.append(Value("money", {"amount": amount_text, "currency": currency}, text[start:end], start, end))
    return values


# --------------------------------------------------------------------------------------------
# Identifiers: phone, e-mail, card and account numbers


def _phones(text: str, lang: str) -> list[Value]:
    import phonenumbers

    region = "RU" if lang == "ru" else "US"
    values = []
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        values.append(Value("phone", e164, match.raw_string, match.start, match.end))
    return values


_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w-])")


def _emails(text: str) -> list[Value]:
    return [Value("email", m.group().lower(), m.group(), m.start(), m.end()) for m in _EMAIL.finditer(text)]


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Whether a compact IBAN (no spaces) has a valid shape and ISO 13616 mod-97 checksum."""
    iban = iban.upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    rotated = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rotated)) % 97 == 1


_DIGIT_GROUPS = re.compile(r"(?<![\w+\-.,])\d+(?:[ \-]\d+)*(?![\w\-]|[.,]\d)")


def _digit_runs(text: str, low: int, high: int) -> list[tuple[int, int, str]]:
    """(start, end, digits) of runs of ``low``..``high`` digits, written in groups separated by spaces or dashes.

    A longer run is also searched for sub-runs of whole groups ("my card 4111 1111 1111 1111 12").
    """
    found = []
    for m in _DIGIT_GROUPS.finditer(text):
        groups = [(g.start() + m.start(), g.end() + m.start()) for g in re.finditer(r"\d+", m.group())]
        options = [
            (groups[i][0], groups[j - 1][1])
            for i in range(len(groups))
            for j in range(len(groups), i, -1)
            if low <= sum(e - s for s, e in groups[i:j]) <= high
        ]
        found.extend((s, e, re.sub(r"\D", "", text[s:e])) for s, e in options)
    return found


def _cards(text: str) -> list[Value]:
    candidates = [(s, e, 0, digits) for s, e, digits in _digit_runs(text, 13, 19) if luhn_valid(digits)]
    return [Value("card_number", d, text[s:e], s, e) for s, e, _, d in _pick(candidates)]


_IBAN = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,4})?(?!\w)")


def _accounts(text: str) -> list[Value]:
    candidates: list[tuple[Any, ...]] = []
    ibans = list(_IBAN.finditer(text))
    for m in ibans:
        compact = m.group().replace(" ", "").upper()
        if iban_valid(compact):
            candidates.append((m.start(), m.end(), 0, compact))
    # Digits inside something shaped like an IBAN are not an account number of their own.
    candidates.extend(
        (s, e, 1, digits)
        for s, e, digits in _digit_runs(text, 8, 20)
        if not any(m.start() <= s < m.end() for m in ibans)
    )
    return [Value("account_number", v, text[s:e], s, e) for s, e, _, v in _pick(candidates)]


# --------------------------------------------------------------------------------------------
# Names: enum choices, lookup tables and cities, matched on words, lemmas and (with typos) fuzzily

FUZZY_SCORE = 85
_COMMON_WORD_TAGS = ("Geox", "Name", "Surn", "Patr", "Orgn", "Trad")


@dataclass(frozen=True)
class _Phrase:
    canonical: str
    keys: tuple[frozenset[str], ...]
    string: str


@dataclass
class _Matcher:
    """Finds the phrases of a vocabulary (canonical value -> names) in utterances.

    A word matches a name's word when they share a lemma (pymorphy3 for Russian, a dropped plural -s for
    English), so every case form of a Russian name is found. Names of ``fuzzy_min`` letters or more also
    match a window of words with rapidfuzz ratio >= :data:`FUZZY_SCORE`; with ``fuzzy_guarded`` only
    when the window is capitalised or is the whole utterance. With ``cased_common`` a one-word Russian
    name that is also an ordinary word (Орёл, Грозный) must be capitalised.
    """

    fuzzy_min: int = 4
    fuzzy_guarded: bool = False
    cased_common: bool = False
    by_first: dict[str, list[_Phrase]] = field(default_factory=dict)
    by_length: dict[int, dict[str, str]] = field(default_factory=dict)

    def add(self, canonical: str, names: Iterable[str]) -> None:
        for name in (canonical, *names):
            words = [t.text for t in _tokens(name)]
            if not words:
                continue
            keys = tuple(frozenset({_fold(w), _lemma(w)}) for w in words)
            phrase = _Phrase(canonical, keys, " ".join(_fold(w) for w in words))
            for key in keys[0]:
                self.by_first.setdefault(key, []).append(phrase)
            if len(phrase.string) >= self.fuzzy_min:
                self.by_length.setdefault(len(words), {}).setdefault(phrase.string, canonical)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        tokens = _tokens(text)
        keys = [_lemmas(t.text) for t in tokens]
        candidates: list[tuple[Any, ...]] = []
        for i, token in enumerate(tokens):
            seen: set[int] = set()
            for key in keys[i]:
                for phrase in self.by_first.get(key, ()):
                    n = len(phrase.keys)
                    if id(phrase) in seen or i + n > len(tokens):
                        continue
                    seen.add(id(phrase))
                    if all(keys[i + k] & phrase.keys[k] for k in range(n)) and self._cased(token, phrase):
                        candidates.append((token.start, tokens[i + n - 1].end, 0, phrase.canonical))
        exact = list(candidates)
        for fuzzy in self._fuzzy(text, tokens):
            # A near-miss over more words outranks the exact words it contains: "withuot a replacement"
            # is the negated phrase with a typo, not "replacement".
            covers = any(fuzzy[0] <= c[0] and c[1] <= fuzzy[1] and c[1] - c[0] < fuzzy[1] - fuzzy[0] for c in exact)
            candidates.append((fuzzy[0], fuzzy[1], -1 if covers else fuzzy[2], fuzzy[3]))
        return [(s, e, c) for s, e, _, c in _pick(candidates)]

    def _cased(self, token: _Token, phrase: _Phrase) -> bool:
        if not self.cased_common or len(phrase.keys) > 1 or token.text[:1].isupper():
            return True
        lemmas = phrase.keys[0]
        parses = _parses(token.folded)
        return not any(lemma in lemmas and not any(t in tag for t in _COMMON_WORD_TAGS) for lemma, tag in parses)

    def _fuzzy(self, text: str, tokens: Sequence[_Token]) -> list[tuple[Any, ...]]:
        from rapidfuzz import fuzz, process

        found = []
        words = [t for t in tokens if not t.text.isdigit()]
        whole = len(words) == len(tokens)
        for n, strings in self.by_length.items():
            # Windows of one word fewer or more than the name catch a dropped or added article.
            for size in sorted({max(1, n - 1), n, n + 1}):
                for i in range(len(tokens) - size + 1):
                    window = tokens[i : i + size]
                    if any(t.text.isdigit() for t in window):
                        continue
                    if self.fuzzy_guarded and (
                        size != n or not (window[0].text[:1].isupper() or (whole and n == len(tokens)))
                    ):
                        continue
                    queries = {" ".join(t.folded for t in window), " ".join(_lemma(t.text) for t in window)}
                    for query in queries:
                        if len(query) < 4:
                            continue
                        best = process.extractOne(query, strings.keys(), scorer=fuzz.ratio, score_cutoff=FUZZY_SCORE)
                        if best is not None and _word_aligned(query.split(), best[0].split()):
                            rank = 1 + (100 - best[1]) / 100  # the closest reading first
                            found.append((window[0].start, window[-1].end, rank, strings[best[0]]))
        return found


_SKIPPABLE = frozenset("a an the my me it to of for please just мне мою мой моя эту это этот же ну пожалуйста".split())
"""Words a near-miss may drop or add; never a negation, which changes the meaning."""


def _alike(a: str, b: str) -> bool:
    """One word said for another: equal, close (rapidfuzz ratio >= 75), or one typo in a short word."""
    from rapidfuzz import fuzz
    from rapidfuzz.distance import Levenshtein

    if a == b or fuzz.ratio(a, b) >= 75:
        return True
    return min(len(a), len(b)) >= 3 and a[0] == b[0] and Levenshtein.distance(a, b) <= 1


def _word_aligned(said: Sequence[str], name: Sequence[str]) -> bool:
    """Whether ``said`` reads as ``name`` word by word: each word alike (a typo at most), one filler word
    dropped or added at most ("without replacement" ~ "without a replacement"; "a replacement" is not
    "no replacement")."""
    if len(said) == len(name) == 1:
        return True
    # best[i][j] = fewest skips aligning said[:i] with name[:j]; skips only of filler words
    inf = 99
    best = [[inf] * (len(name) + 1) for _ in range(len(said) + 1)]
    best[0][0] = 0
    for i in range(len(said) + 1):
        for j in range(len(name) + 1):
            here = best[i][j]
            if here >= inf:
                continue
            if i < len(said) and j < len(name) and _alike(said[i], name[j]):
                best[i + 1][j + 1] = min(best[i + 1][j + 1], here)
            if i < len(said) and said[i] in _SKIPPABLE:
                best[i + 1][j] = min(best[i + 1][j], here + 1)
            if j < len(name) and name[j] in _SKIPPABLE:
                best[i][j + 1] = min(best[i][j + 1], here + 1)
    return best[len(said)][len(name)] <= 1


def _choices_matcher(entries: Iterable[tuple[str, Sequence[str]]]) -> _Matcher:
    matcher = _Matcher(fuzzy_min=4)
    for canonical, names in entries:
        matcher.add(canonical, names)
    return matcher


@lru_cache(maxsize=256)
def _enum_matcher(choices: tuple[tuple[str, tuple[str, ...]], ...]) -> _Matcher:
    return _choices_matcher(choices)


@lru_cache(maxsize=64)
def _lookup_file(path: str, mtime: float) -> tuple[tuple[str, tuple[str, ...]], ...]:
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        value, _, synonyms = line.partition("\t")
        entries.append((value.strip(), tuple(s.strip() for s in synonyms.split("|") if s.strip())))
    return tuple(entries)


def _lookup_entries(slot: Slot) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A lookup slot's entries: its list, or its file (one value a line; ``value<TAB>synonym|synonym``)."""
    if isinstance(slot.lookup, list):
        return tuple((v, ()) for v in slot.lookup)
    path = Path(str(slot.lookup)).expanduser()
    try:
        entries = _lookup_file(str(path), path.stat().st_mtime)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SourceError(
            f"slot {slot.name!r}: cannot read the lookup file: {reason} "
            "(expected a UTF-8 text file with one value per line, or a list of values)",
            path=path,
        ) from None
    if not entries:
        raise SourceError(f"slot {slot.name!r}: the lookup file has no values", path=path)
    return entries


@lru_cache(maxsize=1)
def _city_matcher() -> _Matcher:
    matcher = _Matcher(fuzzy_min=5, fuzzy_guarded=True, cased_common=True)
    try:
        lines = GAZETTEER.read_text(encoding="utf-8").splitlines()
    except OSError as exc:  # pragma: no cover - the file ships with the package
        raise SourceError(f"cannot read the gazetteer: {exc.strerror}", path=GAZETTEER) from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != 3:
            raise SourceError("expected 3 tab-separated columns: canonical, en, ru", path=GAZETTEER, line=number)
        canonical, en, ru = columns
        matcher.add(canonical.strip(), [n.strip() for n in f"{en}|{ru}".split("|") if n.strip()])
    return matcher


@lru_cache(maxsize=1)
def _city_names() -> dict[str, tuple[str, str]]:
    names = {}
    for line in GAZETTEER.read_text(encoding="utf-8").splitlines():
        columns = line.split("\t")
        if len(columns) == 3 and not line.startswith("#"):
            canonical, en, ru = (c.split("|")[0].strip() for c in columns)
            names[canonical] = (en or canonical, ru or en or canonical)
    return names


def city_name(canonical: str, lang: str) -> str:
    """How a city of the gazetteer is written in ``lang`` ("Kazan" -> "Казань"); unknown names unchanged."""
    names = _city_names().get(canonical)
    return canonical if names is None else names[1] if lang == "ru" else names[0]


# --------------------------------------------------------------------------------------------
# Dates and times: rules for the common English and Russian forms, dateparser for the rest

PART_TIMES = {"morning": (9, 0), "afternoon": (13, 0), "evening": (19, 0), "night": (23, 0)}


@dataclass
class _Moment:
    """A piece of a date or time expression; adjacent pieces are merged into one datetime."""

    start: int
    end: int
    date: dt.date | None = None
    clock: tuple[int, int] | None = None
    bare: bool = False  # the hour was said without am/pm or a part of the day ("at 3")
    part: str | None = None  # morning / afternoon / evening / night
    floating: str | None = None  # "week" / "month" / "year": the date was said without it


def _apply_part(hour: int, part: str | None) -> int:
    """The 24-hour clock hour of an hour said with am/pm or a part of the day."""
    if part is None or hour > 12:
        return hour
    if part in ("am", "morning"):
        return 0 if hour == 12 else hour
    if part == "night":
        return 0 if hour == 12 else hour + 12 if hour >= 7 else hour
    return hour if hour == 12 else hour + 12


def _add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _next_day_of_month(today: dt.date, day: int) -> dt.date | None:
    """The first date on or after today whose day of the month is ``day``."""
    year, month = today.year, today.month
    for _ in range(13):
        if day <= calendar.monthrange(year, month)[1] and dt.date(year, month, day) >= today:
            return dt.date(year, month, day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _day_month(today: dt.date, day: int, month: int, year: int | None) -> dt.date | None:
    """A calendar date; without a year, the next one from today on."""
    if year is not None and year < 100:
        year += 2000
    try:
        found = dt.date(year or today.year, month, day)
    except ValueError:
        found = None
    if year is None and (found is None or found < today):
        try:
            found = dt.date(today.year + 1, month, day)
        except ValueError:
            return None
    return found


def _weekday(today: dt.date, weekday: int, modifier: str | None) -> dt.date:
    """See the module docstring: plain/this = nearest from today on; next = in next week; last = before today."""
    if modifier == "next":
        ahead = (weekday - today.weekday()) % 7 or 7
        target = today + dt.timedelta(days=ahead)
        if target - dt.timedelta(days=target.weekday()) == today - dt.timedelta(days=today.weekday()):
            target += dt.timedelta(days=7)
        return target
    if modifier == "last":
        return today - dt.timedelta(days=(today.weekday() - weekday) % 7 or 7)
    return today + dt.timedelta(days=(weekday - today.weekday()) % 7)


_EN_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        1,
    )
    for name in names
}
_RU_MONTHS = {
    name: number
    for number, name in enumerate(
        "января февраля марта апреля мая июня июля августа сентября октября ноября декабря".split(), 1
    )
}
_EN_WEEKDAYS = {name: i for i, name in enumerate("monday tuesday wednesday thursday friday saturday sunday".split())}
_RU_WEEKDAYS = {"понедельник": 0, "вторник": 1, "сред": 2, "четверг": 3, "пятниц": 4, "суббот": 5, "воскресень": 6}
_EN_ORDINALS = dict(
    zip(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
        "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split(),
        range(1, 21),
        strict=True,
    ),
    thirtieth=30,
)
_EN_ORDINALS.update({f"twenty-{w}": 20 + n for w, n in list(_EN_ORDINALS.items())[:9]})
_EN_ORDINALS["thirty-first"] = 31
_RU_ORDINALS = dict(
    zip(
        "первый второй третий четвертый пятый шестой седьмой восьмой девятый десятый одиннадцатый двенадцатый "
        "тринадцатый четырнадцатый пятнадцатый шестнадцатый семнадцатый восемнадцатый девятнадцатый двадцатый".split(),
        range(1, 21),
        strict=True,
    ),
    тридцатый=30,
)


def _alternation(words: Iterable[str]) -> str:
    escaped = (
        re.escape(w).replace("\\-", r"[\s-]").replace("\\ ", r"\s+") for w in sorted(words, key=len, reverse=True)
    )
    return "|".join(escaped)


_EN_MONTH = f"(?P<mon>{_alternation(_EN_MONTHS)})\\.?"
_RU_MONTH = f"(?P<mon>{_alternation(_RU_MONTHS)})"
_EN_DAY = rf"(?:(?P<day>\d{{1,2}})(?:st|nd|rd|th)?|(?P<dayw>{_alternation(_EN_ORDINALS)}))"
_EN_NUMBER = rf"(?:\d+|(?:{_alternation([*_EN_WORDS, 'a', 'an', 'a couple of', 'couple of', 'half'])})"
_EN_NUMBER += rf"(?:[\s-]+(?:{_alternation([*_EN_WORDS, 'hundred', 'and'])}))*)"
_EN_UNIT = r"(?P<unit>minutes?|mins?|hours?|hrs?|days?|weeks?|fortnights?|months?|years?)"
_RU_UNIT = (
    r"(?P<unit>минут[уы]?|мин\.?|час(?:а|ов)?|дн(?:я|ей)|день|сутки|суток|недел[юиь]|недель"
    r"|месяц(?:а|ев)?|год(?:а)?|лет)"
)
_HOUR_WORDS = {**{w: v for w, v in _EN_WORDS.items() if 1 <= v <= 12}, "час": 1}
_HOUR_WORDS.update({w: int(v) for w, v in _RU_WORDS.items() if 1 <= v <= 12 and v == int(v) and w != "пару"})
_AP = r"(?P<ap>a\.?m\b\.?|p\.?m\b\.?)"
_RU_PART = {"утра": "morning", "дня": "afternoon", "вечера": "evening", "ночи": "night"}
_ALLOWED_AFTER_HOUR = (
    frozenset(
        "today tomorrow tonight on in the this next and or please sharp then for with at by till until ok so but "
        "сегодня завтра послезавтра в во и или утром вечером днем ночью пожалуйста ровно а но у по до с мне нам "
        "я мы часа часов".split()
    )
    | frozenset(_EN_WEEKDAYS)
    | frozenset(_EN_MONTHS)
)


def _amount(words: str | None) -> float | None:
    """The number a relative expression counts ("3", "two", "a couple of", "пару", "полтора")."""
    if not words:
        return 1
    words = re.sub(r"\s+", " ", words.strip())
    if words.isdigit():
        return int(words)
    if words in ("a", "an", "one"):
        return 1
    if words in ("a couple of", "couple of"):
        return 2
    if words == "half":
        return 0.5
    tokens = _tokens(words)
    read = _read_number_words(words, tokens, 0)
    return read[1] if read is not None and read[0] == len(tokens) else None


def _shift(now: dt.datetime, count: float, unit: str, sign: int) -> _Moment | None:
    unit = unit.rstrip(".")
    if unit.startswith(("min", "мин")):
        moment = now + sign * dt.timedelta(minutes=count)
    elif unit.startswith(("hour", "hr", "час")):
        moment = now + sign * dt.timedelta(hours=count)
    elif unit.startswith(("day", "дн", "день", "сут")):
        return _Moment(0, 0, date=now.date() + sign * dt.timedelta(days=round(count)))
    elif unit.startswith(("week", "недел")):
        return _Moment(0, 0, date=now.date() + sign * dt.timedelta(weeks=count))
    elif unit.startswith("fortnight"):
        return _Moment(0, 0, date=now.date() + sign * dt.timedelta(weeks=2 * count))
    elif unit.startswith(("month", "месяц")):
        return _Moment(0, 0, date=_add_months(now.date(), sign * round(count)))
    elif unit.startswith(("year", "год", "лет")):
        return _Moment(0, 0, date=_add_months(now.date(), sign * 12 * round(count)))
    else:  # pragma: no cover - the patterns only let the units above through
        return None
    return _Moment(0, 0, date=moment.date(), clock=(moment.hour, moment.minute))


def _ru_ordinal(words: str) -> int | None:
    """Day of the month said as a Russian ordinal in any case: "пятого" 5, "двадцать пятое" 25."""
    parts = words.split()
    tens = 0
    if len(parts) == 2:
        tens = {"двадцать": 20, "тридцать": 30}.get(parts[0], -1)
        if tens < 0:
            return None
    lemmas = {parts[-1], *(lemma for lemma, tag in _parses(parts[-1]) if "ADJF" in tag)}
    for lemma in lemmas:
        value = _RU_ORDINALS.get(lemma)
        if value is not None and (not tens or value < 10):
            return tens + value
    return None


_Handler = Callable[[re.Match[str], dt.datetime], "_Moment | None"]
_RULES: list[tuple[re.Pattern[str], _Handler]] = []


def _rule(pattern: str) -> Callable[[_Handler], _Handler]:
    """Register a date/time rule; the span of its ``core`` group is what the user said for the value."""

    def register(handler: _Handler) -> _Handler:
        _RULES.append((re.compile(pattern), handler))
        return handler

    return register


def _free_after(match: re.Match[str]) -> bool:
    """Whether a bare hour ("at 10", "в 10") is followed by nothing that makes it a count ("в 10 раз")."""
    following = re.match(r"[ \t]*([^\W\d_]+|[\d%$€£₽])", match.string[match.end("core") :])
    return following is None or following.group(1) in _ALLOWED_AFTER_HOUR


def _clock(hour: int, minute: int, part: str | None, leading_zero: bool = False) -> _Moment | None:
    if hour > 24 or minute > 59 or (part in ("am", "pm") and not 1 <= hour <= 12):
        return None
    bare = part is None and not leading_zero and 1 <= hour <= 12
    return _Moment(0, 0, clock=(_apply_part(hour % 24, part), minute), bare=bare)


def _ap(match: re.Match[str]) -> str | None:
    ap = match.groupdict().get("ap")
    return None if not ap else "am" if ap.startswith("a") else "pm"


@_rule(
    r"\b(?P<core>(?:the\s+)?day\s+after\s+tomorrow|(?:the\s+)?day\s+before\s+yesterday|"
    r"today|tonight|tomorrow|tmrw|yesterday|сегодня|завтра|послезавтра|вчера|позавчера)\b"
)
def _relative_day(m: re.Match[str], now: dt.datetime) -> _Moment:
    word = m.group("core")
    offsets = {"today": 0, "tonight": 0, "tomorrow": 1, "tmrw": 1, "yesterday": -1}
    offsets.update({"сегодня": 0, "завтра": 1, "послезавтра": 2, "вчера": -1, "позавчера": -2})
    offset = 2 if "after" in word else -2 if "before" in word else offsets[word]
    return _Moment(0, 0, date=now.date() + dt.timedelta(days=offset), part="evening" if word == "tonight" else None)


@_rule(rf"\b(?P<core>(?:(?P<mod>this|next|last|coming)\s+)?(?P<wd>{'|'.join(_EN_WEEKDAYS)}))\b")
def _en_weekday(m: re.Match[str], now: dt.datetime) -> _Moment:
    modifier = {"next": "next", "last": "last"}.get(m.group("mod") or "")
    floating = "week" if (m.group("mod") or "this") == "this" else None
    return _Moment(0, 0, date=_weekday(now.date(), _EN_WEEKDAYS[m.group("wd")], modifier), floating=floating)


@_rule(
    r"\b(?P<core>(?:(?P<mod>эт[аоуи]\w*|следующ\w*|ближайш\w*|будущ\w*|прошл\w*)\s+)?"
    r"(?P<wd>понедельник|вторник|сред[аыуе]|четверг|пятниц[аыуе]|суббот[аыуе]|воскресень[ея]))(?![а-я])"
)
def _ru_weekday(m: re.Match[str], now: dt.datetime) -> _Moment:
    mod = m.group("mod") or ""
    modifier = "next" if mod.startswith(("следующ", "будущ")) else "last" if mod.startswith("прошл") else None
    weekday = next(v for k, v in _RU_WEEKDAYS.items() if m.group("wd").startswith(k))
    floating = None if modifier or mod.startswith("ближайш") else "week"
    return _Moment(0, 0, date=_weekday(now.date(), weekday, modifier), floating=floating)


@_rule(rf"\b(?P<core>in\s+(?:(?P<half>half\s+an\s+hour)|(?P<n>{_EN_NUMBER})\s+{_EN_UNIT}))\b")
@_rule(rf"\b(?P<core>(?P<n>{_EN_NUMBER})\s+{_EN_UNIT}\s+(?P<ago>ago))\b")
@_rule(rf"\b(?P<core>через\s+(?:(?P<half>полчаса)|(?:(?P<n>\d+|[а-я]+(?:\s+[а-я]+)?)\s+)?{_RU_UNIT}))(?![а-я])")
@_rule(rf"\b(?P<core>(?:(?P<n>\d+|[а-я]+(?:\s+[а-я]+)?)\s+)?{_RU_UNIT}\s+(?P<ago>назад))(?![а-я])")
def _relative_shift(m: re.Match[str], now: dt.datetime) -> _Moment | None:
    if m.groupdict().get("half"):
        return _shift(now, 30, "minutes", 1)
    count = _amount(m.group("n"))
    if count is None or count > 10000:
        return None
    return _shift(now, count, m.group("unit"), -1 if m.groupdict().get("ago") else 1)


_YEAR = r"(?:,?\s+(?P<year>\d{4})(?:\s*(?:года|год|г\b\.?))?)?"


def _day_of(m: re.Match[str]) -> int | None:
    groups = m.groupdict()
    if groups.get("day") or groups.get("day2"):
        return int(groups.get("day") or groups["day2"])
    words = re.sub(r"\s+", " ", groups["dayw"])
    if _CYRILLIC.search(words):
        return _ru_ordinal(words)
    return _EN_ORDINALS.get(words.replace(" ", "-"))


def _month_of(m: re.Match[str]) -> int:
    month = m.group("mon")
    return int(month) if month.isdigit() else _EN_MONTHS.get(month) or _RU_MONTHS[month]


@_rule(rf"\b(?P<core>(?:the\s+)?{_EN_DAY}(?:\s+of)?\s+{_EN_MONTH}{_YEAR})(?!\w)")
@_rule(rf"\b(?P<core>{_EN_MONTH}\s+(?:the\s+)?{_EN_DAY}{_YEAR})(?!\w)")
@_rule(rf"(?<![\d.])\b(?P<core>(?P<day>\d{{1,2}})(?:-?(?:го|е|ое|ого))?\s+{_RU_MONTH}{_YEAR})(?![а-я])")
@_rule(rf"\b(?P<core>(?P<dayw>(?:(?:двадцать|тридцать)\s+)?[а-я]+)\s+{_RU_MONTH}{_YEAR})(?![а-я])")
@_rule(r"(?<![\d.,])(?P<core>(?P<day>\d{1,2})\.(?P<mon>\d{1,2})\.(?P<year>\d{4}|\d{2}))(?!\d|[.,]\d)")
@_rule(r"(?<![\d.,])(?P<core>(?P<day>\d{1,2})\.(?P<mon>\d{2}))(?!\d|[.,]\d)")
def _calendar_date(m: re.Match[str], now: dt.datetime) -> _Moment | None:
    day = _day_of(m)
    if day is None:
        return None
    year = int(m.group("year")) if m.groupdict().get("year") else None
    date = _day_month(now.date(), day, _month_of(m), year)
    return None if date is None else _Moment(0, 0, date=date, floating=None if year else "year")


@_rule(
    r"(?<![\d.-])(?P<core>(?P<year>\d{4})-(?P<mon>\d{1,2})-(?P<day>\d{1,2})(?:[t ](?P<h>\d{2}):(?P<min>\d{2}))?)(?!\d)"
)
def _iso_date(m: re.Match[str], now: dt.datetime) -> _Moment | None:
    try:
        date = dt.date(int(m.group("year")), int(m.group("mon")), int(m.group("day")))
    except ValueError:
        return None
    moment = _Moment(0, 0, date=date)
    if m.group("h"):
        clock = _clock(int(m.group("h")), int(m.group("min")), None, leading_zero=True)
        if clock is None:
            return None
        moment.clock = clock.clock
    return moment


@_rule(
    rf"\b(?P<core>the\s+(?:(?P<day>\d{{1,2}})(?:st|nd|rd|th)|(?P<dayw>{_alternation(_EN_ORDINALS)}))|"
    r"(?P<day2>\d{1,2})(?:st|nd|rd|th))\b"
)
@_rule(
    r"(?<![\d.,])\b(?P<core>(?P<day>\d{1,2})-?(?:го|е|ое|ого)(?:\s+числа)?|(?P<day2>\d{1,2})\s+числа|"
    r"(?P<dayw>(?:(?:двадцать|тридцать)\s+)?[а-я]+)\s+числа)(?![а-я])"
)
def _day_of_month(m: re.Match[str], now: dt.datetime) -> _Moment | None:
    day = _day_of(m)
    if day is None or not 1 <= day <= 31:
        return None
    if (
        m.group("dayw")
        and not _CYRILLIC.search(m.group("dayw"))
        and not re.search(r"\b(?:on|for|by|until|till|from)\s+$", m.string[: m.start()])
    ):
        return None  # "the second time" is not a date; "on the second" is
    date = _next_day_of_month(now.date(), day)
    return None if date is None else _Moment(0, 0, date=date, floating="month")


_EN_HOUR = _alternation(w for w in _HOUR_WORDS if w.isascii())
_RU_HOUR = _alternation(w for w in _HOUR_WORDS if not w.isascii())
_RU_HOURS_WORD = r"(?:\s+(?P<hours>час(?:а|ов|ам|у)?|ч\b\.?))?"


def _hour_of(m: re.Match[str]) -> int:
    groups = m.groupdict()
    return int(groups["h"]) if groups.get("h") else _HOUR_WORDS[groups["hw"]]


@_rule(
    rf"\b(?:at|by|around|about|from|until|till)\s+(?P<core>(?:(?P<h>\d{{1,2}})(?:[:.](?P<min>\d{{2}}))?|(?P<hw>{_EN_HOUR}))"
    rf"(?:\s*{_AP}|\s*(?P<oc>o'?clock))?)(?![\w:])"
)
@_rule(
    rf"\b(?P<core>(?:(?P<h>\d{{1,2}})(?:[:.](?P<min>\d{{2}}))?|(?P<hw>{_EN_HOUR}))(?:\s*{_AP}|\s*(?P<oc>o'?clock)))(?!\w)"
)
@_rule(r"(?<![\d:.])(?P<core>(?P<h>\d{1,2}):(?P<min>\d{2}))(?![\d:])")
@_rule(
    rf"\b(?:в|к|около)\s+(?P<core>(?:(?P<h>\d{{1,2}})(?:[:.](?P<min>\d{{2}}))?|(?P<hw>{_RU_HOUR})){_RU_HOURS_WORD}"
    r"(?:\s+(?P<min2>\d{1,2})\s+мин(?:ут[аы]?\b|\b\.?))?(?:\s+(?P<sfx>утра|дня|вечера|ночи))?)(?![\w:])"
)
@_rule(
    rf"\b(?P<core>(?:(?P<h>\d{{1,2}})(?:[:.](?P<min>\d{{2}}))?|(?P<hw>{_RU_HOUR})){_RU_HOURS_WORD}"
    r"\s+(?P<sfx>утра|вечера))(?![а-я])"
)
def _clock_time(m: re.Match[str], now: dt.datetime) -> _Moment | None:
    groups = m.groupdict()
    hour = _hour_of(m)
    minute = int(groups.get("min") or groups.get("min2") or 0)
    part = _ap(m) or _RU_PART.get(groups.get("sfx") or "")
    said_minutes = groups.get("min") or groups.get("min2")
    if not (part or said_minutes or groups.get("oc") or groups.get("hours")) and not _free_after(m):
        return None
    leading_zero = bool(groups.get("h")) and groups["h"].startswith("0")
    return _clock(hour, minute, part, leading_zero)


@_rule(
    rf"\b(?P<core>(?P<q>half|quarter)\s+(?P<rel>past|to)\s+(?:(?P<h>\d{{1,2}})|(?P<hw>{_EN_HOUR}))(?:\s*{_AP})?)(?!\w)"
)
def _quarter_time(m: re.Match[str], now: dt.datetime) -> _Moment | None:
    hour, minutes = _hour_of(m), 30 if m.group("q") == "half" else 15
    if m.group("rel") == "to":
        if m.group("q") == "half":
            return None
        hour, minutes = (hour - 1) % 12 or 12, 45
    return _clock(hour, minutes, _ap(m))


@_rule(r"\b(?P<core>noon|midday|midnight|полдень|полночь)(?![а-я\w])")
def _noon(m: re.Match[str], now: dt.datetime) -> _Moment:
    return _Moment(0, 0, clock=(12, 0) if m.group("core") in ("noon", "midday", "полдень") else (0, 0))


@_rule(r"(?<!good\s)\b(?P<core>morning|afternoon|evening|night|утром|днем|вечером|ночью)(?![а-я\w])")
def _part_of_day(m: re.Match[str], now: dt.datetime) -> _Moment:
    ru = {"утром": "morning", "днем": "afternoon", "вечером": "evening", "ночью": "night"}
    return _Moment(0, 0, part=ru.get(m.group("core"), m.group("core")))


def _dateparser_moments(text: str, lang: str, now: dt.datetime, prefer: str = "future") -> list[_Moment]:
    """Complete absolute dates (day, month and year) that the rules above do not read, via dateparser."""
    if not re.search(r"\d{2}", text):
        return []
    try:
        from dateparser.search import search_dates

        settings = {
            "RELATIVE_BASE": now.replace(tzinfo=None),
            "PREFER_DATES_FROM": prefer,
            "STRICT_PARSING": True,
            "RETURN_AS_TIMEZONE_AWARE": False,
        }
        found = search_dates(text, languages=[lang] if lang in ("en", "ru") else None, settings=settings)
    except Exception:  # dateparser is a best-effort fallback: never let it break recognition
        return []
    moments, position = [], 0
    for surface, when in found or ():
        start = text.find(surface, position)
        if start < 0:
            continue
        position = start + len(surface)
        lead = re.match(r"(?i)(?:on|в|во|на)\s+", surface)
        if lead:
            start, surface = start + lead.end(), surface[lead.end() :]
        moment = _Moment(start, start + len(surface), date=when.date())
        if when.time() != dt.time(0):
            moment.clock = (when.hour, when.minute)
        moments.append(moment)
    return moments


def _scan(text: str, lang: str, now: dt.datetime, prefer: str = "future") -> list[_Moment]:
    """Every date/time piece in the text, the longest where rules overlap."""
    low = _lower(text)
    found: list[tuple[Any, ...]] = []
    for pattern, handler in _RULES:
        position = 0
        while (match := pattern.search(low, position)) is not None:
            position = match.start() + 1
            moment = handler(match, now)
            if moment is not None:
                moment.start, moment.end = match.span("core")
                found.append((moment.start, moment.end, 0, moment))
    if not any(c[3].date for c in found):
        found.extend((m.start, m.end, 1, m) for m in _dateparser_moments(text, lang, now, prefer))
    return [c[3] for c in _pick(found)]


_GLUE = re.compile(r"[\s,]*(?:(?:at|on|in|the|of|by|around|about|this|в|во|на|к|около)[\s,]+)*")


def _groups(text: str, moments: list[_Moment]) -> list[list[_Moment]]:
    """Adjacent pieces that make one moment: "tomorrow" + "at 10", "послезавтра" + "в 10 утра"."""
    low = _lower(text)
    groups: list[list[_Moment]] = []
    for moment in moments:
        if groups:
            group = groups[-1]
            clash = any(
                (m.date and moment.date) or (m.clock and moment.clock) or (m.part and moment.part) for m in group
            )
            if not clash and _GLUE.fullmatch(low[group[-1].end : moment.start]):
                group.append(moment)
                continue
        groups.append([moment])
    return groups


@dataclass
class _When:
    date: dt.date | None
    time: dt.time | None
    start: int
    end: int
    date_span: tuple[int, int] | None
    time_span: tuple[int, int] | None


def _to_past(date: dt.date, floating: str | None, today: dt.date) -> dt.date:
    """The last such date on or before today, for a date read forward from an incomplete mention."""
    if floating is None or date <= today:
        return date
    if floating == "week":
        return date - dt.timedelta(days=7)
    if floating == "year":
        for year in range(date.year - 1, date.year - 9, -1):
            if date.month != 2 or date.day != 29 or calendar.isleap(year):
                return date.replace(year=year)
        return date
    year, month = date.year, date.month
    for _ in range(24):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        if date.day <= calendar.monthrange(year, month)[1] and dt.date(year, month, date.day) <= today:
            return dt.date(year, month, date.day)
    return date


def _resolve(group: list[_Moment], prefer: str = "future", today: dt.date | None = None) -> _When:
    dated = next((m for m in group if m.date), None)
    clocked = next((m for m in group if m.clock), None)
    parted = next((m for m in group if m.part), None)
    part = parted.part if parted else None
    time, time_span = None, None
    if clocked is not None and clocked.clock is not None:
        hour, minute = clocked.clock
        if clocked.bare:
            hour = _apply_part(hour, part) if part else hour + 12 if 1 <= hour <= 6 else hour
        time, time_span = dt.time(hour % 24, minute), (clocked.start, clocked.end)
        if parted is not None and parted is not dated:
            span = (min(clocked.start, parted.start), max(clocked.end, parted.end))
            if dated is None or not span[0] < dated.start < span[1]:
                time_span = span
    elif parted is not None and part is not None:
        time, time_span = dt.time(*PART_TIMES[part]), (parted.start, parted.end)
    date = dated.date if dated else None
    if date is not None and dated is not None and prefer == "past" and today is not None:
        date = _to_past(date, dated.floating, today)
    return _When(
        date=date,
        time=time,
        start=group[0].start,
        end=max(m.end for m in group),
        date_span=(dated.start, dated.end) if dated else None,
        time_span=time_span,
    )


def _temporal(text: str, type: str, lang: str, now: dt.datetime, prefer: str = "future") -> list[Value]:
    values = []
    for group in _groups(text, _scan(text, lang, now, prefer)):
        when = _resolve(group, prefer, now.date())
        if type == "date" and when.date is not None and when.date_span:
            start, end = when.date_span
            values.append(Value("date", when.date.isoformat(), text[start:end], start, end))
        elif type == "time" and when.time is not None and when.time_span:
            start, end = when.time_span
            values.append(Value("time", when.time.strftime("%H:%M"), text[start:end], start, end))
        elif type == "datetime" and (when.date is not None or when.time is not None):
            if when.time is None:
                value = when.date.isoformat() if when.date else ""
            else:
                date = when.date
                if date is None:
                    ahead = when.time >= now.time().replace(second=0, microsecond=0)
                    if prefer == "past":
                        date = now.date() - dt.timedelta(days=1 if ahead else 0)
                    else:
                        date = now.date() + dt.timedelta(days=0 if ahead else 1)
                value = dt.datetime.combine(date, when.time).strftime("%Y-%m-%dT%H:%M")
            values.append(Value("datetime", value, text[when.start : when.end], when.start, when.end))
    return values


# --------------------------------------------------------------------------------------------
# Public API

_PERSON = re.compile(
    r"\b(?i:my name is|my name's|call me|меня зовут|зовут меня)\s+"
    r"(?P<name>[A-ZА-ЯЁ][\w'-]+(?:\s+[A-ZА-ЯЁ][\w'-]+){0,2})"
)


def _names(text: str, type: str, slot: Slot | None) -> list[Value]:
    if type in ("city", "location"):
        matcher = _city_matcher()
    else:
        if slot is None:
            raise ConfigError(f"extracting {type!r} values needs the slot (its 'choices' or 'lookup')")
        if type == "enum":
            if not slot.choices:
                raise ConfigError(f"slot {slot.name!r}: an enum slot needs 'choices'")
            entries = tuple((c.value, tuple(c.synonyms)) for c in slot.choice_values())
        else:
            if not slot.lookup:
                raise ConfigError(f"slot {slot.name!r}: a lookup slot needs 'lookup' (a list of values or a file path)")
            entries = _lookup_entries(slot)
        matcher = _enum_matcher(entries)
    return [Value(type, canonical, text[s:e], s, e) for s, e, canonical in matcher.find(text)]


def _regex(text: str, slot: Slot | None) -> list[Value]:
    if slot is None or not slot.pattern:
        name = f"slot {slot.name!r}: " if slot is not None else ""
        raise ConfigError(f"{name}extracting 'regex' values needs the slot's 'pattern'")
    try:
        pattern = re.compile(slot.pattern)
    except re.error as exc:
        raise ConfigError(f"slot {slot.name!r}: 'pattern' is not a valid regular expression: {exc}") from None
    return [Value("regex", m.group(), m.group(), m.start(), m.end()) for m in pattern.finditer(text) if m.group()]


def _text(text: str) -> list[Value]:
    stripped = text.strip()
    if not stripped:
        return []
    start = text.index(stripped)
    return [Value("text", stripped, stripped, start, start + len(stripped))]


def extract(
    text: str,
    type: str,
    *,
    lang: str = "en",
    now: dt.datetime | None = None,
    slot: Slot | None = None,
) -> list[Value]:
    """Every value of slot type ``type`` in ``text``, in order, not overlapping one another.

    ``lang`` ("en" or "ru") picks the default phone region, the decimal comma and the dateparser
    language; English and Russian words are recognised either way. ``now`` anchors relative dates
    (default: the current local time). ``slot`` supplies ``choices``, ``lookup``, ``pattern``,
    ``min``/``max`` and ``role``; it is required for enum, lookup and regex.
    """
    if type not in TYPES:
        where = f"slot {slot.name!r}: " if slot is not None else ""
        raise ConfigError(f"{where}unknown slot type {type!r}; accepted types: {', '.join(TYPES)}")
    now = now or dt.datetime.now()
    if type == "text":
        values = _text(text)
    elif type in ("date", "time", "datetime"):
        values = _temporal(text, type, lang, now, slot.prefer if slot is not None else "future")
    elif type in ("number", "integer"):
        values = [
            Value(type, value, text[s:e], s, e)
            for s, e, value in _numbers(text, lang)
            if _in_range(value, slot) and (type == "number" or isinstance(value, int))
        ]
    elif type == "money":
        values = _money(text, lang, slot)
    elif type == "phone":
        values = _phones(text, lang)
    elif type == "email":
        values = _emails(text)
    elif type == "card_number":
        values = _cards(text)
    elif type == "account_number":
        values = _accounts(text)
    elif type == "person":
        values = [Value("person", m.group("name"), m.group("name"), *m.span("name")) for m in _PERSON.finditer(text)]
    elif type == "regex":
        values = _regex(text, slot)
    else:
        values = _names(text, type, slot)
    if type in ("city", "location") or (slot is not None and (slot.role or default_role(slot.name))):
        values = [Value(v.type, v.value, v.text, v.start, v.end, _role_before(text, v.start)) for v in values]
    return values


# Preference of extract_all where values overlap: (tier, order within a tier); longer wins inside a tier.
_PRIORITY = {
    "card_number": (0, 0),
    "email": (0, 1),
    "phone": (0, 2),
    "account_number": (0, 3),
    "money": (1, 0),
    "datetime": (1, 1),
    "date": (1, 2),
    "time": (1, 3),
    "regex": (2, 0),
    "enum": (2, 1),
    "lookup": (2, 2),
    "city": (2, 3),
    "location": (2, 4),
    "person": (2, 5),
    "integer": (3, 0),
    "number": (3, 1),
    "text": (4, 0),
}


def extract_all(
    text: str,
    types: Iterable[str],
    *,
    lang: str = "en",
    now: dt.datetime | None = None,
    slots: Iterable[Slot] = (),
) -> list[Value]:
    """Values of all ``types`` in ``text``, no two overlapping, in text order.

    Where values overlap the most specific tier wins (identifiers, then money and dates, then names,
    then numbers, then text), and within a tier the longest. ``slots`` give the settings of the types
    that need them (enum choices, lookup tables, patterns, ranges, roles); every slot of a requested
    type is used.
    """
    now = now or dt.datetime.now()
    wanted = list(dict.fromkeys(types))
    slots = list(slots)
    found: list[Value] = []
    for type in wanted:
        typed = [s for s in slots if s.type == type]
        for slot in typed or [None]:
            found.extend(extract(text, type, lang=lang, now=now, slot=slot))
    unique = list(dict.fromkeys((v.start, v.end, v.type, repr(v.value), v.role) for v in found))
    by_key = {(v.start, v.end, v.type, repr(v.value), v.role): v for v in found}
    candidates = [(s, e, _PRIORITY[t], by_key[(s, e, t, r, role)]) for s, e, t, r, role in unique]
    chosen: list[Value] = []
    for _, _, _, value in sorted(candidates, key=lambda c: (c[2][0], c[0] - c[1], c[2][1], c[0])):
        if all(value.end <= v.start or value.start >= v.end for v in chosen):
            chosen.append(value)
    return sorted(chosen, key=lambda v: v.start)
