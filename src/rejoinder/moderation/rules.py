"""Policy rules: what a bag of words misses, such as threats of violence and dehumanising templates.

A :class:`PolicyRule` gets the original text and its normalised form and returns a reason
(``policy:<name>``) when the text breaks it. :class:`PatternRule` is a rule made of one regular
expression over the normalised text; the built-in rules (:data:`BUILTIN_RULES`) catch threats
("I will find you and kill you", "я тебя убью", "kys") and hate templates ("<group> are
vermin", "gas the <group>") in English and Russian. A policy file adds more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from rejoinder.errors import ConfigError


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
