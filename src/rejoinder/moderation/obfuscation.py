"""Reading through obfuscation: the form of a text that word lists and policy rules are matched against.

:func:`normalise` applies, in order: NFKC; zero-width characters, the soft hyphen and apostrophes
deleted; diacritics removed from Latin, Greek and Cyrillic letters (Cyrillic й kept, ё read as
е); letters spelled out one by one joined ("f u c k", "п.и.з.д.а"); leetspeak and look-alike
letters read in the script of the word they sit in ("sh1t", "$hit", "e6ать", "сyка" with a Latin
y, "fuсk" with a Cyrillic с); casefolding; punctuation turned into spaces ("I'll" becomes "ill");
a ``*`` kept only inside a word ("f*ck"); and runs of three or more identical letters shortened
to two ("fuuuuck" becomes "fuuck"). :func:`light_form` is what the model would see anyway.
"""

from __future__ import annotations

import re
import unicodedata

# Deleted outright: zero-width and invisible formatting characters, the soft hyphen, apostrophes.
_DELETE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
    "'`\u2018\u2019\u02bc\u02b9\u00b4"
)
DELETE_TABLE = str.maketrans("", "", _DELETE)

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
RUN_RE = re.compile(r"([^\W\d_])\1{2,}")
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


def strip_diacritics(text: str) -> str:
    text = text.replace("й", _SHORT_I).replace("Й", _SHORT_I_UPPER)
    text = unicodedata.normalize("NFC", _DIACRITIC_RE.sub("", unicodedata.normalize("NFD", text)))
    return text.replace(_SHORT_I, "й").replace(_SHORT_I_UPPER, "Й")


def normalise(text: str) -> str:
    """The matching form of ``text``: see the module docstring for every step."""
    text = unicodedata.normalize("NFKC", text).translate(DELETE_TABLE)
    ascii_text = text.isascii()
    if not ascii_text:
        text = strip_diacritics(text)
    text = _JOIN_RE.sub(_join_letters, text)
    if not ascii_text or _LEET_CHARS_RE.search(text):
        text = _TOKEN_RE.sub(_fix_token, text)
    text = text.casefold()
    text = _PUNCT_RE.sub(" ", text)
    if "*" in text:
        text = _STRAY_STAR_RE.sub(" ", text)
        text = _SPACES_RE.sub(" ", text)
    text = RUN_RE.sub(r"\1\1", text)
    return text.strip()


def light_form(text: str) -> str:
    """Casefolded text with punctuation as spaces: what the model would see anyway.

    When this equals the normalised text, normalisation changed nothing the model's tokenizer
    cares about, and scoring the original again would give the same probability.
    """
    return _PUNCT_RE.sub(" ", text.casefold()).strip()
