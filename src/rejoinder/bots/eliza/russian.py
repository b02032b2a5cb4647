"""Russian reflection beyond what a script's word-for-word substitutes can say.

A script swaps pronouns and possessives itself (Я = ВЫ, МОЙ = ВАШ, МЕНЯ = ВАС, ...). Verbs and
short adjectives must agree with the swapped pronoun, and there are too many of them to list:
"я думаю" must come back as "вы думаете", "я была рада" as "вы были рады". With the optional
``pymorphy3`` analyser installed (``pip install 'rejoinder[ru]'``) every verb in the first person
singular is put into the second person plural and back, and past-tense verbs and short
adjectives after Я/ВЫ change number. Without it, only the script's substitutes apply.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rejoinder.bots.eliza.engine import Reflector

# A pronoun after these prepositions is in the prepositional case, where the word-for-word
# substitutes of a script (МНЕ = ВАМ, ВАС = МЕНЯ) pick the wrong form: "обо мне" must become
# "о вас", not "обо вам". (original preposition, original pronoun) -> replacement pair.
_PREPOSITIONAL = {
    ("ОБО", "МНЕ"): ("О", "ВАС"),
    ("О", "ВАС"): ("ОБО", "МНЕ"),
    ("О", "ТЕБЕ"): ("ОБО", "МНЕ"),
    ("ВО", "МНЕ"): ("В", "ВАС"),
    ("ПРИ", "МНЕ"): ("ПРИ", "ВАС"),
    ("ПРИ", "ВАС"): ("ПРИ", "МНЕ"),
    ("ПРИ", "ТЕБЕ"): ("ПРИ", "МНЕ"),
    ("НА", "МНЕ"): ("НА", "ВАС"),
}

_FIRST_PERSON = frozenset({"Я"})
_SECOND_PERSON = frozenset({"ВЫ", "ТЫ"})


@lru_cache(maxsize=1)
def _analyzer() -> Any | None:
    try:
        import pymorphy3
    except ImportError:
        return None
    return pymorphy3.MorphAnalyzer()


def morphology_available() -> bool:
    return _analyzer() is not None


class RussianReflector(Reflector):
    """Swaps grammatical person of verbs (and number after Я/ВЫ) using pymorphy3.

    Also mends prepositional pronouns (ОБО МНЕ -> О ВАС), with or without pymorphy3.
    """

    def __init__(self, morphology: bool = True) -> None:
        self.morph = _analyzer() if morphology else None
        self._cache: dict[tuple[str, str | None], str | None] = {}

    def reflect(self, words: list[str], index: int) -> str | None:
        if self.morph is None:
            return None
        word = words[index]
        subject = self._subject(words, index)
        key = (word, subject)
        if key not in self._cache:
            self._cache[key] = self._reflect(word, subject)
        return self._cache[key]

    def finish(self, words: list[str], originals: list[str]) -> list[str]:
        out = list(words)
        for i in range(1, len(originals)):
            pair = _PREPOSITIONAL.get((originals[i - 1], originals[i]))
            if pair is not None:
                out[i - 1], out[i] = pair
        return out

    def _subject(self, words: list[str], index: int) -> str | None:
        """The personal pronoun this word agrees with: Я/ВЫ/ТЫ a few verbs or adverbs back."""
        for back in range(index - 1, max(-1, index - 4), -1):
            word = words[back]
            if word in _FIRST_PERSON or word in _SECOND_PERSON:
                return word
            if self.morph.parse(word.lower())[0].tag.POS not in {"VERB", "INFN", "ADJS", "PRTS", "ADVB", "PRCL"}:
                return None
        return None

    def _reflect(self, word: str, subject: str | None) -> str | None:
        if not any("А" <= ch <= "я" or ch in "Ёё" for ch in word):
            return None
        # The most probable reading that can agree with a pronoun; unlikely readings (under a
        # quarter of the probability) are ignored, so "часто" stays an adverb.
        readings = [p for p in self.morph.parse(word.lower()) if p.score >= 0.25]
        parse = next((p for p in readings if p.tag.POS in {"VERB", "ADJS", "PRTS"}), None)
        if parse is None:
            return None
        tag = parse.tag
        target: set[str] | None = None
        if tag.POS == "VERB" and tag.person == "1per" and tag.number == "sing":
            target = {"2per", "plur"}
        elif tag.POS == "VERB" and tag.person == "2per":
            target = {"1per", "sing"}
        elif tag.tense == "past" or tag.POS in {"ADJS", "PRTS"}:
            if subject in _FIRST_PERSON and tag.number == "sing":
                target = {"plur"}
            elif subject in _SECOND_PERSON and tag.number == "plur":
                target = {"masc", "sing"}
        if target is None:
            return None
        inflected = parse.inflect(target)
        return inflected.word.upper() if inflected is not None else None
