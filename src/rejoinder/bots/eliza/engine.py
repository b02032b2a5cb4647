"""ELIZA's mechanism as Weizenbaum described it in CACM 9(1), January 1966.

One call to :meth:`ElizaEngine.respond` is one turn of the original program:

1. LIMIT counts inputs 1, 2, 3, 4, 1, ... (it starts at 1 and is advanced before each input).
2. The input is upper-cased and split into words; comma, period and the word BUT are delimiters.
   Words are scanned left to right. Each word with a substitute in the script is replaced by it
   (one pass: I becomes YOU and YOU becomes I without undoing each other). Each word with
   transformation rules goes on the keystack: on top if its precedence is higher than the top's,
   otherwise at the bottom. At a delimiter, if a keyword has been found, the rest of the input is
   dropped; if not, the words so far are dropped. So only the first clause holding a keyword is
   kept.
3. With no keyword, a stored memory is recalled when LIMIT is 4 and the memory queue is not empty;
   otherwise the NONE rule answers.
4. If the top keyword is the MEMORY keyword, the MEMORY transformation chosen by the SLIP HASH of
   the last word (2 bits) rewrites the text, and the result is queued (first in, first out).
5. The keywords are tried from the top of the keystack. Each decomposition of the keyword's rule
   is matched in order; the first that matches uses its next reassembly rule (each decomposition
   cycles through its reassemblies for the whole session). A reassembly may link to another
   keyword (=KEY), rewrite first (PRE), or give up on this keyword (NEWKEY).

Everything the engine remembers between turns (LIMIT, the memory queue, each decomposition's
cycle position) lives in a JSON-serialisable state dict owned by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rejoinder.bots.eliza.script import (
    GLUE,
    AnyOf,
    Link,
    NewKey,
    PatternItem,
    Pre,
    Rule,
    Script,
    Tagged,
)

Punctuation = Literal["1966", "modern"]

# Comma and period always delimit; so does the word BUT (MAD-SLIP line 000660), and its
# equivalent in the script's language.
DELIMITER_WORDS = {"en": frozenset({"BUT"}), "ru": frozenset({"НО"})}

# Russian punctuation puts a comma before every subordinate clause ("я думаю, что ..."); such a
# comma joins rather than separates, so it is not a delimiter there.
SUBORDINATORS = {
    "ru": frozenset(
        "ЧТО ЧТОБЫ ЕСЛИ КОГДА ПОТОМУ ПОКА ХОТЯ БУДТО СЛОВНО КАК ГДЕ КУДА ОТКУДА ПОЧЕМУ ЗАЧЕМ КТО "
        "КОТОРЫЙ КОТОРАЯ КОТОРОЕ КОТОРЫЕ КОТОРОГО КОТОРОЙ КОТОРОМУ КОТОРЫМ КОТОРЫХ КОТОРУЮ ЛИ".split()
    )
}

# ---------------------------------------------------------------------------------------------
# SLIP HASH


# IBM 7090 BCD ("Hollerith") character codes: the index of a character is its 6-bit code.
_BCD = "0123456789\0='\0\0\0+ABCDEFGHI\0.)\0\0\0-JKLMNOPQR\0$*\0\0\0 /STUVWXYZ\0,(\0\0\0"
_BCD_CODE = {ch: code for code, ch in enumerate(_BCD) if ch != "\0"}


def bcd_word(chunk: str) -> int:
    """Pack up to six characters, left-justified and space-padded, into a 36-bit BCD word.

    Characters outside the 7090 character set (lower case is upper-cased first; other scripts
    such as Cyrillic) get the code ``ord(ch) % 64`` so that non-English scripts hash
    deterministically too.
    """
    value = 0
    for ch in chunk.upper().ljust(6)[:6]:
        value = (value << 6) | _BCD_CODE.get(ch, ord(ch) % 64)
    return value


def slip_hash(datum: int, bits: int) -> int:
    """SLIP ``HASH(D, N)``: the middle N bits of the square of D's 35-bit magnitude (mid-square)."""
    if not 0 <= bits <= 15:
        raise ValueError("SLIP HASH returns at most 15 bits")
    magnitude = datum & ((1 << 35) - 1)
    square = magnitude * magnitude
    return (square >> (35 - bits // 2)) & ((1 << bits) - 1)


def last_cell(word: str) -> str:
    """The last SLIP cell of a word: its last chunk of six characters (words were stored 6 per cell)."""
    if not word:
        return ""
    start = ((len(word) - 1) // 6) * 6
    return word[start:]


def hash_word(word: str, bits: int) -> int:
    return slip_hash(bcd_word(last_cell(word)), bits)


# ---------------------------------------------------------------------------------------------
# Tokenising

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_WORD = r"[^\W_]+(?:['\-][^\W_]+)*'?"
_TOKEN_1966 = re.compile(rf"{_WORD}|[.,]")
_TOKEN_MODERN = re.compile(rf"{_WORD}|[.,?!;:\u2026]|--+|[\u2013\u2014]|(?<!\w)-(?!\w)")
_MODERN_PERIOD = frozenset("?!\u2026")


def tokenize(text: str, punctuation: Punctuation = "1966") -> list[str]:
    """Upper-case and split text into words and delimiters.

    In the 1966 mode only comma and period are kept (as delimiters); other punctuation
    separates words and is otherwise dropped, as the 7090's character set had no ``?`` or ``!``.
    In the modern mode ``?``, ``!`` and ``…`` count as periods and ``;``, ``:`` and dashes as
    commas.
    """
    text = text.translate(_APOSTROPHES).upper()
    if punctuation == "1966":
        return _TOKEN_1966.findall(text)
    out = []
    for token in _TOKEN_MODERN.findall(text):
        if token in _MODERN_PERIOD:
            out.append(".")
        elif token in {";", ":"} or token.startswith("-") or token in {"\u2013", "\u2014"}:
            out.append(",")
        else:
            out.append(token)
    return out


# ---------------------------------------------------------------------------------------------
# Matching


def match(
    pattern: tuple[PatternItem, ...],
    words: list[str],
    tags_of: Callable[[str], frozenset[str]],
) -> list[list[str]] | None:
    """Match a decomposition pattern against all of ``words``.

    Returns one component (list of words) per pattern element, or None. ``0`` matches any number
    of words and is tried shortest first, so every ``0`` but the last takes the shortest span
    that lets the rest of the pattern match; ``n`` matches exactly n words; a word matches itself;
    ``(*A B)`` any of A, B; ``(/TAG)`` a word whose DLIST holds TAG.
    """
    n_items = len(pattern)
    n_words = len(words)
    # Minimum words the pattern suffix from each position needs (prunes hopeless branches).
    need = [0] * (n_items + 1)
    for k in range(n_items - 1, -1, -1):
        item = pattern[k]
        need[k] = need[k + 1] + (item if isinstance(item, int) else 1)

    components: list[list[str]] = []

    def one(item: PatternItem, word: str) -> bool:
        if isinstance(item, str):
            return word == item
        if isinstance(item, AnyOf):
            return word in item.words
        if isinstance(item, Tagged):
            return bool(tags_of(word) & item.tags)
        raise TypeError(item)

    def go(k: int, pos: int) -> bool:
        if k == n_items:
            return pos == n_words
        if n_words - pos < need[k]:
            return False
        item = pattern[k]
        if isinstance(item, int):
            if item == 0:
                last_stretch = n_words - pos - need[k + 1]
                for span in range(0, last_stretch + 1):
                    components.append(words[pos : pos + span])
                    if go(k + 1, pos + span):
                        return True
                    components.pop()
                return False
            components.append(words[pos : pos + item])
            if go(k + 1, pos + item):
                return True
            components.pop()
            return False
        if one(item, words[pos]):
            components.append([words[pos]])
            if go(k + 1, pos + 1):
                return True
            components.pop()
        return False

    return [list(c) for c in components] if go(0, 0) else None


def reassemble(template: tuple[str | int, ...], components: list[list[str]]) -> list[str]:
    out: list[str] = []
    for item in template:
        if isinstance(item, int):
            out.extend(components[item - 1])
        elif item.startswith(GLUE):
            if out:
                out[-1] += item[1:]
            else:
                out.append(item[1:])
        else:
            out.append(item)
    return out


# ---------------------------------------------------------------------------------------------
# The engine

# Replies the MAD-SLIP program prints when a keyword's decompositions all fail (NOMATCH(LIMIT)).
NOMATCH_REPLIES = {
    "en": ("PLEASE CONTINUE", "HMMM", "GO ON, PLEASE", "I SEE"),
    "ru": ("ПРОДОЛЖАЙТЕ, ПОЖАЛУЙСТА", "ХММ", "ГОВОРИТЕ, ПОЖАЛУЙСТА", "ПОНИМАЮ"),
}

MAX_LINK_DEPTH = 32


class Reflector:
    """Reflects words the script has no substitute for (used for Russian verb morphology)."""

    def reflect(self, words: list[str], index: int) -> str | None:  # pragma: no cover - interface
        """The reflected form of ``words[index]`` (input words so far), or None to keep it."""
        raise NotImplementedError

    def finish(self, words: list[str], originals: list[str]) -> list[str]:
        """A last pass over the substituted clause (e.g. preposition and pronoun agreement)."""
        return words


@dataclass
class Turn:
    """The outcome of one input, with the trail of what the engine did (for tests and --explain)."""

    words: list[str]
    keystack: list[str] = field(default_factory=list)
    source: str = ""
    """``rule`` (a transformation fired), ``memory`` (recalled), ``none`` or ``nomatch``."""
    rule_ids: list[str] = field(default_factory=list)
    choices: list[tuple[str, int]] = field(default_factory=list)
    """(transformation id, reassembly index) for every reassembly used, links included."""
    memorised: str | None = None
    text: list[str] = field(default_factory=list)
    """The input words after delimiting and substitution (what the rules saw)."""

    def as_meta(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "keystack": self.keystack,
            "rules": self.rule_ids,
            "memorised": self.memorised,
            "text": " ".join(self.text),
        }


class _NoMatch(Exception):
    pass


class _Newkey(Exception):
    pass


class ElizaEngine:
    """Runs a :class:`Script` turn by turn over a caller-owned state dict."""

    def __init__(
        self,
        script: Script,
        *,
        punctuation: Punctuation = "1966",
        language: str = "en",
        reflector: Reflector | None = None,
    ) -> None:
        self.script = script
        self.punctuation = punctuation
        self.language = language
        self.reflector = reflector
        self._tags = {k: r.tags for k, r in script.rules.items() if r.tags}
        self._delimiters = frozenset({",", "."}) | DELIMITER_WORDS.get(language, DELIMITER_WORDS["en"])

    # -- state -----------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return {"limit": 1, "memory": [], "cycle": {}, "script": self.script.digest}

    def opening(self) -> list[str]:
        return list(self.script.opening)

    # -- one turn ----------------------------------------------------------------------------
    def respond(self, text: str, state: dict[str, Any]) -> Turn:
        """Answer one input; updates ``state`` in place."""
        if not state:
            state.update(self.initial_state())
        state["limit"] = state.get("limit", 1) + 1
        if state["limit"] == 5:
            state["limit"] = 1

        words, keystack = self.scan(self._join_subordinate_clauses(tokenize(text, self.punctuation)))
        turn = Turn(words=[], keystack=list(keystack), text=list(words))

        if not keystack:
            self._no_keyword(state, turn)
            return turn

        memory = self.script.memory
        if memory is not None and keystack[0] in memory.keywords and words:
            choice = hash_word(words[-1], 2)
            pattern, template = memory.transformations[choice]
            parts = match(pattern, words, self.tags_of)
            if parts is not None:
                remembered = reassemble(template, parts)
                state.setdefault("memory", []).append(remembered)
                turn.memorised = " ".join(remembered)
                turn.choices.append(("MEMORY", choice))

        while keystack:
            keyword = keystack.pop(0)
            try:
                turn.words = self._apply(self.script.rules[keyword], words, state, turn, 0)
                turn.source = "rule"
                return turn
            except _Newkey:
                continue
            except _NoMatch:
                turn.words = NOMATCH_REPLIES.get(self.language, NOMATCH_REPLIES["en"])[state["limit"] - 1].split()
                turn.source = "nomatch"
                return turn
        # NEWKEY emptied the keystack: answer as if the input had no keyword.
        self._no_keyword(state, turn)
        return turn

    def scan(self, tokens: list[str]) -> tuple[list[str], list[str]]:
        """Delimit, substitute and build the keystack in one left-to-right pass."""
        words: list[str] = []
        originals: list[str] = []
        keystack: list[str] = []
        rules = self.script.rules
        for token in tokens:
            if token in self._delimiters:
                if keystack:
                    break
                words.clear()
                originals.clear()
                continue
            rule = rules.get(token)
            word = token
            if rule is not None:
                if rule.is_keyword:
                    if keystack and rule.precedence > rules[keystack[0]].precedence:
                        keystack.insert(0, token)
                    else:
                        keystack.append(token)
                if rule.substitute is not None:
                    word = rule.substitute
            originals.append(token)
            words.append(word)
            if rule is None or rule.substitute is None:
                reflected = self.reflector.reflect(originals, len(originals) - 1) if self.reflector else None
                if reflected is not None:
                    words[-1] = reflected
        if self.reflector is not None:
            words = self.reflector.finish(words, originals)
        return words, keystack

    def _join_subordinate_clauses(self, tokens: list[str]) -> list[str]:
        joiners = SUBORDINATORS.get(self.language)
        if not joiners:
            return tokens
        return [t for i, t in enumerate(tokens) if not (t == "," and i + 1 < len(tokens) and tokens[i + 1] in joiners)]

    def tags_of(self, word: str) -> frozenset[str]:
        return self._tags.get(word, frozenset())

    # -- helpers -------------------------------------------------------------------------------
    def _no_keyword(self, state: dict[str, Any], turn: Turn) -> None:
        queue = state.setdefault("memory", [])
        if state["limit"] == 4 and queue:
            turn.words = list(queue.pop(0))
            turn.source = "memory"
            return
        turn.words = self._apply(self.script.none, turn.text, state, turn, 0)
        turn.source = "none"

    def _next_reassembly(self, rule_id: str, count: int, state: dict[str, Any]) -> int:
        cycle = state.setdefault("cycle", {})
        index = cycle.get(rule_id, 0) % count
        cycle[rule_id] = (index + 1) % count
        return index

    def _apply(self, rule: Rule, words: list[str], state: dict[str, Any], turn: Turn, depth: int) -> list[str]:
        if depth > MAX_LINK_DEPTH:
            raise _NoMatch
        for transformation in rule.transformations:
            parts = match(transformation.decomposition, words, self.tags_of)
            if parts is None:
                continue
            turn.rule_ids.append(transformation.rule_id)
            index = self._next_reassembly(transformation.rule_id, len(transformation.reassemblies), state)
            turn.choices.append((transformation.rule_id, index))
            action = transformation.reassemblies[index]
            if isinstance(action, Link):
                return self._apply(self.script.rules[action.key], words, state, turn, depth + 1)
            if isinstance(action, NewKey):
                raise _Newkey
            if isinstance(action, Pre):
                rewritten = reassemble(action.template, parts)
                return self._apply(self.script.rules[action.link.key], rewritten, state, turn, depth + 1)
            return reassemble(action, parts)
        if rule.link is not None:
            turn.rule_ids.append(f"{rule.keyword}/=")
            return self._apply(self.script.rules[rule.link.key], words, state, turn, depth + 1)
        raise _NoMatch
