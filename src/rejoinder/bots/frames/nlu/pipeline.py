"""One utterance through the whole NLU: intent, dialogue acts, tagged slots, typed values, entities.

Dialogue acts that every goal-oriented bot needs (yes, no, cancel, start over, help, a human,
hello, goodbye, continue) are recognised by word rules in English and Russian, so a domain's training data
only has to teach its own intents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rejoinder.bots.frames.nlu.intents import IntentClassifier, predict
from rejoinder.bots.frames.nlu.slots import CRFSlotTagger
from rejoinder.datasets.nlu import Span
from rejoinder.ner import Entity

ACTS: dict[str, dict[str, tuple[str, ...]]] = {
    "affirm": {
        "en": ("yes", "yeah", "yep", "yup", "sure", "correct", "right", "that's right", "ok", "okay", "confirm",
               "go ahead", "do it", "please do", "exactly", "absolutely"),
        "ru": ("да", "ага", "угу", "конечно", "верно", "правильно", "всё верно", "все верно", "подтверждаю", "давай",
               "давайте", "хорошо", "ок", "окей", "точно", "так и есть"),
    },
    "deny": {
        "en": ("no", "nope", "nah", "not", "wrong", "incorrect", "that's wrong", "not right"),
        "ru": ("нет", "не", "неверно", "неправильно", "не так", "ошибка"),
    },
    "cancel": {
        "en": ("cancel", "stop", "forget it", "never mind", "nevermind", "abort", "quit"),
        "ru": ("отмена", "отменить", "отмени", "отмените", "стоп", "не надо", "забудь", "забудьте", "хватит"),
    },
    "restart": {
        "en": ("start over", "restart", "from the beginning", "start again"),
        "ru": ("начать заново", "начнём сначала", "начнем сначала", "сначала", "заново"),
    },
    "help": {
        "en": ("help", "what can you do", "what can i ask", "options"),
        "ru": ("помощь", "помоги", "помогите", "что ты умеешь", "что вы умеете"),
    },
    "human": {
        "en": ("human", "operator", "agent", "real person", "representative", "talk to someone", "speak to someone"),
        "ru": ("оператор", "человек", "живой человек", "специалист", "сотрудник", "оператора", "специалиста"),
    },
    "greet": {
        "en": ("hello", "hi", "hey", "good morning", "good afternoon", "good evening"),
        "ru": ("привет", "здравствуйте", "здравствуй", "добрый день", "доброе утро", "добрый вечер"),
    },
    "goodbye": {
        "en": ("bye", "goodbye", "bye bye", "see you", "thanks bye", "that's all", "good night"),
        "ru": ("пока", "до свидания", "всего доброго", "всего хорошего", "это всё", "это все", "до встречи"),
    },
    "resume": {
        "en": ("continue", "resume", "let's continue", "let's finish", "where were we"),
        "ru": ("продолжить", "продолжим", "продолжай", "продолжайте", "давайте продолжим", "вернёмся", "вернемся"),
    },
}  # fmt: skip
AT_END = {"ru": ("пока",)}
"""Phrases that are an act only as the last words: "спасибо, пока" says goodbye, "пока не знаю" ("not yet") does not."""

_WORDS = re.compile(r"[\w']+", re.UNICODE)


def dialogue_acts(text: str, language: str) -> list[str]:
    """The acts whose phrases occur in the text as whole words (``no`` in "no, to Paris")."""
    words = " ".join(_WORDS.findall(text.lower().replace("’", "'")))
    padded = f" {words} "
    found = []
    at_end = AT_END.get(language, ())
    for act, phrases in ACTS.items():
        for phrase in phrases.get(language, ()):
            if padded.endswith(f" {phrase} ") if phrase in at_end else f" {phrase} " in padded:
                found.append(act)
                break
    return found


def is_short(text: str, limit: int = 4) -> bool:
    return len(_WORDS.findall(text)) <= limit


@dataclass
class Parse:
    text: str
    intent: str | None = None
    confidence: float = 0.0
    acts: list[str] = field(default_factory=list)
    tagged: list[Span] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)

    def as_meta(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "confidence": round(self.confidence, 3),
            "acts": self.acts,
            "tagged": [(self.text[s.start : s.end], s.slot) for s in self.tagged],
            "entities": [(e.text, e.label) for e in self.entities],
        }


class NLU:
    """Intent classifier + slot tagger + dialogue-act rules + NER for one language."""

    def __init__(
        self,
        language: str,
        intents: IntentClassifier | None = None,
        tagger: CRFSlotTagger | None = None,
        ner: Any = None,
    ) -> None:
        self.language = language
        self.intents = intents
        self.tagger = tagger
        self.ner = ner

    def parse(self, text: str, now: datetime | None = None) -> Parse:
        parse = Parse(text, acts=dialogue_acts(text, self.language))
        if self.intents is not None:
            [(intent, confidence)] = predict(self.intents, [text])
            parse.intent, parse.confidence = intent, confidence
        if self.tagger is not None:
            [parse.tagged] = self.tagger.predict([text])
        if self.ner is not None:
            parse.entities = self.ner(text)
        return parse
