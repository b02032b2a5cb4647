"""Personal data masked with typed placeholders: ``<EMAIL>``, ``<PHONE>``, ``<CARD>``, ``<IBAN>``,
``<ACCOUNT>``, ``<IP>``, ``<ADDRESS>``, ``<NAME>``.

A masked text keeps its shape (the placeholder stands where the value was), so nothing is ever
dropped, and :class:`PiiMasker` counts what it replaced, by type. What each rule takes, in the
order they run (a span taken by one rule is not looked at again):

- ``<EMAIL>``: ``local@domain.tld``.
- ``<IBAN>``: two letters, two check digits and 11-30 letters or digits (spaces every four allowed)
  whose ISO 13616 mod-97 checksum is 1. An IBAN-shaped string with a wrong checksum is left alone,
  digits and all.
- ``<CARD>``: 13-19 digits, written together or in groups (spaces or dashes), that pass the Luhn
  check. A 16-digit number that fails it (an order or tracking number) is left alone.
- ``<ACCOUNT>``: a Russian bank account (20 digits together or grouped 5-3-1-4-7, e.g.
  ``40817 810 0 9999 1234567``; its control key needs the bank's BIK, so any 20-digit number
  counts), and any 6-20 digit number right after an account word (``account``, ``acct``, ``a/c``,
  ``счёт``/``счет``, ``р/с``, ``л/с``, with ``number``/``no``/``#``/``№``/``is`` between).
- ``<PHONE>``: international numbers with a ``+`` and 8-15 digits (``+44 20 7946 0958``,
  ``+7 (912) 345-67-89``, ``+79123456789``); Russian national numbers of 11 digits that begin
  with 8 (``8 912 345 67 89``, ``8 (495) 123-45-67``, ``89123456789``); North American numbers
  ``(555) 123-4567`` / ``555-123-4567`` / ``555.123.4567``; seven-digit local numbers (``555-1234``)
  and 10-11 digits written together (``2125551234``) only within 40 characters after a phone word
  (phone, number, call, cell, fax, телефон, номер, ...).
- ``<IP>``: IPv4 (four numbers 0-255, not part of a longer dotted number such as a version
  ``1.2.3.4.5``) and IPv6 that :mod:`ipaddress` accepts, with ``::`` or all eight groups.
- ``<ADDRESS>`` (a heuristic): English ``<house number> <Capitalised words> <street type>``
  (``221B Baker Street``, ``1600 Pennsylvania Avenue NW``, ``10 Downing St.``) with an optional
  ``Apt``/``Suite``/``Unit``/``#`` part; Russian ``<street type> <name>, д. <number>`` with optional
  ``корп.``/``стр.``/``кв.`` (``ул. Ленина, д. 5, кв. 12``, ``проспект Мира 15``), or the name
  first (``Невский проспект, д. 28``). Limits: a street
  named without a house number ("on Baker Street") is not an address; post-office boxes,
  postcodes alone, addresses without a street type and other languages are not recognised.
- ``<NAME>``: person names (PER) found by the NER backends of :mod:`rejoinder.ner`: spaCy's small
  English model for Latin-script text, natasha for text that is mostly Cyrillic, kept only when
  they look like names (:func:`plausible_name`: capitalised words, no digits, code or URLs). Every
  person is masked, public figures too; the small English model still takes some capitalised
  words for people (holidays, products, a sentence's first word). Optional
  (``ner=False``); without the models installed the other rules still run and
  :attr:`PiiMasker.warning` says why names were not masked.

Numbers right after an order word (``order``, ``invoice``, ``ticket``, ``tracking``, ``ref``,
``заказ``, ``счёт-фактура``, ``накладная``, ``№`` after one of those) are never masked, nor are dates,
times and prices: no rule above takes ``2024-03-15``, ``15.03.2024``, ``10:30``, ``$1,299.99`` or
``1 299 ₽``.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("EMAIL", "PHONE", "CARD", "IBAN", "ACCOUNT", "IP", "ADDRESS", "NAME")

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
DIGIT_RUN = re.compile(r"(?<![\w.,])\d(?:[ -]?\d){12,18}(?![\w]|[.,]\d)")
RU_ACCOUNT = re.compile(r"(?<![\w.,])(?:\d{20}|\d{5} \d{3} \d \d{4} \d{7})(?![\w]|[.,]\d)")
ACCOUNT_WORD = re.compile(
    r"(?i)\b(?:account|acct|a/c|сч[её]т[а-я]*|р/с|л/с|расч[её]тный сч[её]т)"
    r"(?:\s+(?:number|num|no\.?|#|№|номер))?(?:\s+is)?\s*[:#№]?\s*(\d(?:[ -]?\d){5,19})(?![\w]|[.,]\d)"
)
PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,6}"  # international
    r"|8[ -]?\(?\d{3,5}\)?[ -]?\d{1,3}[ -]?\d{2}[ -]?\d{2}"  # Russian national
    r"|\(\d{3}\)[ ]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4}"  # North American
    r")(?![\w]|[.,]\d)"
)
PHONE_LOCAL = re.compile(r"(?<![\w-])(?:[2-9]\d{2}-\d{4}|\d{10,11})(?![\w-]|[.,]\d)")
PHONE_WORD = re.compile(r"(?i)(phone|number|call|cell|fax|tel\b|mobile|reach|телефон|номер|звоните)[^.!?\n]{0,30}$")
IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_STREET_EN = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Way|"
    r"Parkway|Pkwy|Square|Sq|Highway|Hwy|Close|Crescent"
)
ADDRESS_EN = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?\s+(?:[A-Z][a-z]+\.?\s+){{1,3}}(?:{_STREET_EN})\b\.?"
    r"(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Unit|Flat|#)\.?\s*\w{1,5})?"
)
_STREET_RU = (
    r"ул\.|улица|пр\.|пр-т|проспект|пер\.|переулок|бульвар|б-р|шоссе|ш\.|наб\.|набережная|пл\.|площадь|"
    r"проезд|мкр\.?|микрорайон"
)
ADDRESS_RU = re.compile(
    rf"(?i:\b(?:{_STREET_RU}))\s*[А-ЯЁ0-9][А-Яа-яЁё0-9-]*(?:\s+[А-ЯЁ][а-яё-]+)?,?\s*"
    r"(?i:(?:д\.|дом)\s*)?\d{1,4}[а-яА-Я]?(?![\d:.,]\d)"
    r"(?:,?\s*(?i:корп\.?|корпус|к\.|стр\.|строение)\s*\d{1,3})?"
    r"(?:,?\s*(?i:кв\.?|квартира|оф\.|офис)\s*\d{1,4})?"
)
ADDRESS_RU_NAME_FIRST = re.compile(
    r"\b[А-ЯЁ][а-яё-]+\s+(?i:проспект|улица|переулок|бульвар|шоссе|набережная|площадь|проезд)"
    r",?\s*(?i:(?:д\.|дом)\s*)?\d{1,4}[а-яА-Я]?(?![\d:.,]\d)"
    r"(?:,?\s*(?i:корп\.?|корпус|к\.|стр\.|строение)\s*\d{1,3})?"
    r"(?:,?\s*(?i:кв\.?|квартира|оф\.|офис)\s*\d{1,4})?"
)
ORDER_WORD = re.compile(
    r"(?i)(?:\border|\binvoice|\bticket|\btracking|\bref(?:erence)?|\bshipment|\bparcel|\bзаказ[а-я]*|"
    r"\bсч[её]т-фактур[а-я]*|\bнакладн[а-я]*|\bпосылк[а-я]*|\bтрек)"
    r"(?:\s+(?:number|num|no\.?|id|номер))?\s*[:#№]?\s*$"
)


def luhn_ok(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (card numbers do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """Whether an IBAN (spaces allowed) has a valid ISO 13616 mod-97 checksum."""
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _after_order_word(text: str, start: int) -> bool:
    return ORDER_WORD.search(text[max(0, start - 40) : start]) is not None


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _phone_ok(value: str) -> bool:
    digits = _digits(value)
    if value.startswith("+"):
        return 8 <= len(digits) <= 15
    if value.startswith("8"):
        return len(digits) == 11
    return len(digits) == 10 and not value.startswith("8")


def _phone_context(text: str, start: int) -> bool:
    return PHONE_WORD.search(text[max(0, start - 40) : start]) is not None


def _ip6_ok(value: str) -> bool:
    if value.count(":") < 2 or ("::" not in value and value.count(":") != 7) or len(value.strip(":")) < 2:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


@dataclass
class PiiMasker:
    """Masks personal data in texts (see the module docstring), counting what it replaced.

    ``ner`` turns person-name recognition on; ``ner_loader(language)`` builds a recogniser
    (default: spaCy's entities for ``en``, natasha for ``ru``, from :mod:`rejoinder.ner`). Results
    are cached by text, so a prompt shared by many records is read once.
    """

    ner: bool = True
    ner_loader: Callable[[str], Any] | None = None
    counts: Counter[str] = field(default_factory=Counter)
    warning: str | None = None
    _recognisers: dict[str, Any] = field(default_factory=dict, repr=False)
    _cache: dict[str, tuple[str, Counter[str]]] = field(default_factory=dict, repr=False)
    _names_found: dict[str, list[tuple[int, int]]] = field(default_factory=dict, repr=False)

    def __call__(self, text: str) -> str:
        return self.mask(text)

    def prepare(self, texts: Iterable[str]) -> None:
        """Find the names in many texts at once (a recogniser with ``pipe`` batches them), for :meth:`mask`."""
        if not self.ner:
            return
        by_language: dict[str, list[str]] = {}
        for text in dict.fromkeys(texts):
            if text not in self._cache and text not in self._names_found:
                language = _language(text)
                if language:
                    by_language.setdefault(language, []).append(text)
        for language, chunk in by_language.items():
            recogniser = self._recogniser(language)
            if recogniser is None or not hasattr(recogniser, "pipe"):
                continue
            for text, entities in zip(chunk, recogniser.pipe(chunk), strict=True):
                self._names_found[text] = [
                    (e.start, e.end) for e in entities if e.label == "PER" and plausible_name(e.text)
                ]

    def mask(self, text: str) -> str:
        """``text`` with every recognised piece of personal data replaced by its placeholder."""
        cached = self._cache.get(text)
        if cached is None:
            found: Counter[str] = Counter()
            masked = self._mask(text, found)
            cached = self._cache[text] = (masked, found)
        self.counts.update(cached[1])
        return cached[0]

    def _mask(self, text: str, found: Counter[str]) -> str:
        spans: list[tuple[int, int, str]] = []

        def free(start: int, end: int) -> bool:
            return all(end <= s or start >= e for s, e, _ in spans)

        def take(pattern: re.Pattern[str], kind: str, ok: Callable[[re.Match[str]], bool], group: int = 0) -> None:
            for m in pattern.finditer(text):
                start, end = m.span(group)
                if free(start, end) and ok(m):
                    spans.append((start, end, kind))

        def not_order(m: re.Match[str], group: int = 0) -> bool:
            return not _after_order_word(text, m.start(group))

        take(EMAIL, "EMAIL", lambda m: True)
        take(IBAN, "IBAN", lambda m: iban_ok(m.group()))
        take(IBAN, "", lambda m: True)  # IBAN-shaped with a wrong checksum: left alone, whole
        take(ACCOUNT_WORD, "ACCOUNT", lambda m: True, group=1)
        take(RU_ACCOUNT, "ACCOUNT", not_order)
        take(DIGIT_RUN, "CARD", lambda m: not_order(m) and luhn_ok(_digits(m.group())))
        take(PHONE, "PHONE", lambda m: not_order(m) and _phone_ok(m.group()))
        take(PHONE_LOCAL, "PHONE", lambda m: not_order(m) and _phone_context(text, m.start()))
        take(IPV4, "IP", lambda m: True)
        take(IPV6, "IP", lambda m: _ip6_ok(m.group()))
        take(ADDRESS_EN, "ADDRESS", lambda m: True)
        take(ADDRESS_RU, "ADDRESS", lambda m: True)
        take(ADDRESS_RU_NAME_FIRST, "ADDRESS", lambda m: True)
        if self.ner:
            for start, end in self._names(text):
                if free(start, end):
                    spans.append((start, end, "NAME"))
        out, last = [], 0
        for start, end, kind in sorted(spans):
            if not kind:
                continue
            out.append(text[last:start])
            out.append(f"<{kind}>")
            found[kind] += 1
            last = end
        out.append(text[last:])
        return "".join(out)

    def _names(self, text: str) -> list[tuple[int, int]]:
        if text in self._names_found:
            return self._names_found.pop(text)
        language = _language(text)
        if language is None:
            return []
        recogniser = self._recogniser(language)
        if recogniser is None:
            return []
        return [(e.start, e.end) for e in recogniser(text) if e.label == "PER" and plausible_name(e.text)]

    def _recogniser(self, language: str) -> Any:
        if language in self._recognisers:
            return self._recognisers[language]
        from rejoinder.errors import ConfigError

        loader = self.ner_loader or _default_ner
        try:
            recogniser = loader(language)
        except ConfigError as error:
            recogniser = None
            note = f"person names in {language!r} text are not masked: {error}"
            self.warning = note if self.warning is None else f"{self.warning}; {note}"
        self._recognisers[language] = recogniser
        return recogniser


_NAME_WORD = re.compile(r"[A-ZА-ЯЁ][a-zа-яё]*(?:['’-][A-ZА-ЯЁa-zа-яё]+)*\.?")
_NAME_PARTICLES = frozenset({"de", "da", "di", "del", "van", "von", "der", "den", "bin", "ibn", "al", "le", "la", "du"})


def plausible_name(text: str) -> bool:
    """Whether an entity the NER called a person looks like a name: capitalised words (particles such
    as "van" allowed), not all capitals, no digits, code, URLs or bullets (spaCy's small model also
    tags "JSON", "• Provide" and pieces of code as people)."""
    words = text.split()
    if not words or len(words) > 5:
        return False
    if any(not (_NAME_WORD.fullmatch(w) or w in _NAME_PARTICLES) for w in words):
        return False
    return not all(w.isupper() and len(w) > 1 for w in words)


def _language(text: str) -> str | None:
    """``ru`` for text that is mostly Cyrillic letters, ``en`` for other text with letters, None without."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return None
    cyrillic = sum("а" <= ch.lower() <= "я" or ch in "ёЁ" for ch in letters)
    return "ru" if cyrillic > len(letters) / 2 else "en"


def _default_ner(language: str) -> Any:
    from rejoinder.errors import ConfigError
    from rejoinder.ner import NatashaNER, SpacyNER

    if language == "en":
        return SpacyNER(entities_only=True)
    if language == "ru":
        return NatashaNER()
    raise ConfigError(f"no NER for language {language!r}")
