"""ELIZA (Weizenbaum, 1966) as a Rejoinder bot.

``ElizaBot`` wraps :class:`~rejoinder.bots.eliza.engine.ElizaEngine`: the engine's whole session
state (LIMIT, the memory queue, every decomposition's reassembly cycle) is kept in
``dialogue.state``, so a stored conversation resumes exactly where it stopped.

Shipped scripts (written for Rejoinder): ``doctor_en.txt``, a DOCTOR-style therapist in English,
and ``doctor_ru.txt``, its Russian counterpart. Any script in the 1966 format loads by path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rejoinder.bots.eliza.engine import ElizaEngine, Punctuation
from rejoinder.bots.eliza.script import Script, load_script
from rejoinder.dialogue import Dialogue, Reply
from rejoinder.errors import ConfigError, InvalidMessage
from rejoinder.options import Option, declare
from rejoinder.resources import package_path

SCRIPTS_DIR = package_path("bots", "eliza", "scripts")
SHIPPED_SCRIPTS = {"doctor": SCRIPTS_DIR / "doctor_en.txt", "doctor-ru": SCRIPTS_DIR / "doctor_ru.txt"}

_CYRILLIC = re.compile(r"[А-Яа-яЁё]")

_QUESTION_WORDS = frozenset(
    "WHAT WHY HOW WHO WHOM WHOSE WHEN WHERE WHICH DO DOES DID ARE IS WAS WERE CAN COULD "
    "WOULD SHOULD HAVE HAS HAD WILL SHALL MAY DON'T CAN'T WON'T AREN'T ISN'T".split()
)
_WH_WORDS = frozenset("WHAT WHY HOW WHO WHOM WHICH WHERE WHEN".split())


def detect_language(script: Script) -> str:
    """``ru`` when the script's keywords are Cyrillic, else ``en``."""
    keywords = list(script.rules)[:50]
    cyrillic = sum(1 for k in keywords if _CYRILLIC.search(k))
    return "ru" if keywords and cyrillic * 2 >= len(keywords) else "en"


def present(words: list[str], language: str = "en", friendly: bool = False) -> str:
    """Join reply words; in friendly mode, write them as sentences in lower case with punctuation.

    A reply that already ends with punctuation keeps it (scripts may mark their questions, as the
    Russian one does); otherwise English replies that open a clause with a question word get a
    question mark and all others a full stop.
    """
    text = " ".join(words)
    if not friendly or not text:
        return text
    sentence = text.lower()
    if language == "en":
        sentence = re.sub(r"\bi\b", "I", sentence)
        sentence = re.sub(r"\bi'(m|ve|d|ll)\b", lambda m: "I'" + m.group(1), sentence)
    sentence = sentence.replace(" - ", " \u2013 ")
    sentence = re.sub(r"(^|[.!?] )(\w)", lambda m: m.group(1) + m.group(2).upper(), sentence)
    if sentence[-1] in ".?!\u2026\u00bb":
        return sentence
    return sentence + ("?" if language == "en" and _looks_like_question(text) else ".")


def _looks_like_question(text: str) -> bool:
    last_sentence = text.split(". ")[-1]
    clauses = [c.split() for c in re.split(r",\s*| - ", last_sentence)]
    return any(c and (c[0] in _QUESTION_WORDS or (len(c) > 1 and c[1] in _WH_WORDS)) for c in clauses)


class ElizaBot:
    """A 1966 ELIZA running one script."""

    def __init__(
        self,
        script: Script,
        *,
        name: str = "eliza",
        punctuation: Punctuation = "1966",
        friendly: bool = False,
        language: str | None = None,
        morphology: bool = True,
    ) -> None:
        if punctuation not in ("1966", "modern"):
            raise ConfigError(f"option punctuation={punctuation!r}: expected '1966' or 'modern'")
        self.name = name
        self.script = script
        self.language = language or detect_language(script)
        self.friendly = friendly
        reflector = None
        if self.language == "ru":
            from rejoinder.bots.eliza.russian import RussianReflector

            reflector = RussianReflector(morphology=morphology)
        self.engine = ElizaEngine(script, punctuation=punctuation, language=self.language, reflector=reflector)

    def greet(self, dialogue: Dialogue) -> Reply | None:
        if not dialogue.state:
            dialogue.state.update(self.engine.initial_state())
        opening = self.engine.opening()
        if not opening:
            return None
        return Reply(present(opening, self.language, self.friendly), meta={"source": "opening"})

    def respond(self, dialogue: Dialogue) -> Reply:
        message = dialogue.last_user_message
        if message is None:
            raise InvalidMessage("ELIZA needs a user message to respond to")
        state = dialogue.state
        meta: dict[str, Any] = {}
        if state.get("script") not in (None, self.script.digest):
            meta["warning"] = "the script changed since this conversation started"
        turn = self.engine.respond(message.text, state)
        state["script"] = self.script.digest
        meta.update(turn.as_meta())
        return Reply(present(turn.words, self.language, self.friendly), meta=meta)


_ELIZA_OPTIONS = (
    Option("punctuation", "choice", "1966", "1966: only comma, period and BUT end a clause; modern: ? ! ; : too",
           choices=("1966", "modern")),
    Option("friendly", "bool", False, "write replies in sentence case with a full stop or question mark"),
    Option("language", "choice", None, "en or ru (default: detected from the script's keywords)", choices=("en", "ru")),
    Option("morphology", "bool", True, "Russian: reflect verbs the script does not substitute (needs the ru extra)"),
)  # fmt: skip


def _script_option(default: str) -> Option:
    return Option(
        "script", "path", default, "a shipped script (doctor, doctor-ru) or a script file in the 1966 format",
        choices=tuple(SHIPPED_SCRIPTS),
    )  # fmt: skip


def create(
    script: str = "doctor",
    punctuation: str = "1966",
    friendly: bool = False,
    language: str | None = None,
    morphology: bool = True,
    name: str = "eliza",
) -> ElizaBot:
    """ELIZA (1966) running a script: a shipped name (doctor, doctor-ru) or a file path."""
    path = SHIPPED_SCRIPTS.get(str(script), Path(script))
    return ElizaBot(
        load_script(path),
        name=name,
        punctuation=punctuation,  # type: ignore[arg-type]
        friendly=friendly,
        language=language,
        morphology=morphology,
    )


@declare(_script_option("doctor"), *_ELIZA_OPTIONS)
def create_english(
    script: str = "doctor",
    punctuation: str = "1966",
    friendly: bool = False,
    language: str | None = None,
    morphology: bool = True,
) -> ElizaBot:
    """Weizenbaum's ELIZA (1966) with Rejoinder's English DOCTOR script, or any script file."""
    return create(script, punctuation, friendly, language, morphology, name="eliza")


@declare(_script_option("doctor-ru"), *_ELIZA_OPTIONS)
def create_russian(
    script: str = "doctor-ru",
    punctuation: str = "1966",
    friendly: bool = False,
    language: str | None = None,
    morphology: bool = True,
) -> ElizaBot:
    """ELIZA (1966) in Russian: Rejoinder's Russian DOCTOR script with verb reflection."""
    return create(script, punctuation, friendly, language, morphology, name="eliza-ru")
