"""The toxicity screen: what a bot may learn, say or be rewarded for.

A retrieval bot that learns replies from its users will repeat whatever they teach it (Microsoft's
Tay learned toxicity in a day). :class:`Moderator` is the screen the retrieval bot uses when a
corpus is imported, before a user's message is learned and before it says anything; curation and
RL rewards use the same one. Three layers vote, and the highest evidence wins:

1. **Word lists** (:mod:`~rejoinder.moderation.words`; ``wordlists/en.txt``, ``wordlists/ru.txt``,
   written for Rejoinder): English profanity and slurs, Russian mat matched by root. Their format
   is described in ``wordlists/README.md``; a hit scores 1.0 and gives the reason
   ``wordlist:<lang>:<word>``.
2. **Policy rules** (:mod:`~rejoinder.moderation.rules`): what a bag of words misses, such as
   threats of violence ("I will find you and kill you", "я тебя убью") and dehumanising templates
   ("<group> are vermin"). A hit scores 1.0 and gives ``policy:<name>``. Built-in rules are in
   :data:`BUILTIN_RULES`; :class:`PatternRule` adds more, also from a policy file.
3. **The model** (:mod:`~rejoinder.moderation.model`) from the optional package
   ``alt-profanity-check`` (a calibrated linear SVM over TF-IDF, English only). It is imported
   lazily, the first time a :class:`Moderator` wants it; without it
   :attr:`Moderator.model_available` is False and the other layers still work. Its probability is
   the score; at or above the threshold it gives ``model:0.93``.

Before matching, text is normalised against obfuscation (:mod:`~rejoinder.moderation.obfuscation`):
"f u c k", "sh1t", "fuuuck", "п.и.з.д.а" and Latin/Cyrillic look-alike letters are read as the
words they hide. The model scores both the original text and the normalised one and the higher
probability counts, because it was trained on ordinary text.

:meth:`Moderator.check_many` is the batch path for corpus imports: one model call for all texts,
and every word list and pattern rule compiled into a few combined regular expressions used as a
prefilter, so clean text costs a handful of regex scans. ``check(t) == check_many([t])[0]``.

A policy file (YAML, or JSON by extension) configures a moderator
(:meth:`Moderator.from_policy_file`, read by :mod:`~rejoinder.moderation.policy`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rejoinder.errors import ConfigError
from rejoinder.moderation.model import load_model
from rejoinder.moderation.obfuscation import light_form, normalise
from rejoinder.moderation.policy import read_policy_file
from rejoinder.moderation.rules import BUILTIN_RULES, PatternRule, PolicyRule
from rejoinder.moderation.words import SHIPPED_WORDLISTS, EntryError, WordList, combine, parse_entry, token_span

__all__ = [
    "BUILTIN_RULES",
    "DEFAULT_THRESHOLD",
    "SHIPPED_WORDLISTS",
    "Moderator",
    "PatternRule",
    "PolicyRule",
    "Verdict",
    "WordList",
]

DEFAULT_THRESHOLD = 0.8


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
                allow_entries.append(parse_entry(term, allow_term=True))
            except EntryError as error:
                raise ConfigError(f"allow[{i}]: {error}") from None
        self.wordlists: tuple[WordList, ...] = tuple(lists.values())
        self._blocked_re = combine(e for wl in self.wordlists for e in wl.blocked())
        self._list_res = [(wl.lang, rx) for wl in self.wordlists if (rx := combine(wl.blocked())) is not None]
        self._exceptions_re = combine([*(e for wl in self.wordlists for e in wl.exceptions()), *allow_entries])

        chosen: list[PolicyRule] = []
        if builtin_rules:
            chosen.extend(r for r in BUILTIN_RULES if r.lang in self.languages or r.lang == "any")
        for i, rule in enumerate(rules):
            if not isinstance(rule, PolicyRule):
                raise ConfigError(f"rules[{i}] is a {type(rule).__name__}, not a PolicyRule (name, lang, check)")
            chosen.append(rule)
        self.rules: tuple[PolicyRule, ...] = tuple(chosen)
        self._rule_prefilter, self._prefiltered = self._combine_rules(self.rules)

        self._predict_prob = load_model() if use_model else None
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
        return cls(**read_policy_file(path))

    def __repr__(self) -> str:
        return (
            f"Moderator(threshold={self.threshold}, languages={list(self.languages)}, "
            f"rules={len(self.rules)}, model_available={self.model_available})"
        )

    def normalise(self, text: str) -> str:
        """The form that word lists and pattern rules see (see the module docstring)."""
        return normalise(text)

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
        normalised = [normalise(t) for t in texts]
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
                original = self._exceptions_re.sub(" ", light_form(original))
                norm = self._exceptions_re.sub(" ", norm)
            n = batch.setdefault(norm, len(batch))
            o = n if light_form(original) == norm else batch.setdefault(original, len(batch))
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
            exempt = [token_span(norm, *m.span()) for m in self._exceptions_re.finditer(norm)]
        reasons: list[str] = []
        for lang, regex in self._list_res:
            for m in regex.finditer(norm):
                start, end = token_span(norm, *m.span())
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
