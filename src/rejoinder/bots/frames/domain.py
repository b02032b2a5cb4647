"""A goal-oriented bot's domain, declared as data: language, frames, NLU training data, responses.

::

    name: bank
    language: en                     # en or ru
    timezone: Europe/London          # the dialogue's clock for "tomorrow", "next Friday"
    nlu: nlu_en.yaml                 # training data (see nlu/data.py), relative to this file
    frames: [lost_card.json, transfer_status.json]
    responses:                       # what the bot says for intents and acts that start no frame
      greet: Hello! How can I help?
      opening_hours: We are open 9:00-18:00 on weekdays.
      human: Connecting you with an operator.
      fallback: Sorry, I did not get that.

Loading a domain reads and checks its files and nothing else. The NLU models are trained when a
bot over it is first prepared (``FrameBot.prepare``) and cached (by the hash of the training data)
in the data directory, so later starts take seconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rejoinder.bots.frames.schema import Frame, load_frame
from rejoinder.errors import SourceError

DEFAULT_RESPONSES = {
    "en": {
        "greet": "Hello! How can I help you?",
        "goodbye": "Goodbye!",
        "help": "I can help with: {topics}.",
        "human": "I'm connecting you with a person. Please hold on.",
        "fallback": "Sorry, I didn't understand. I can help with: {topics}.",
        "cancelled": "Okay, I've cancelled that.",
        "restart": "Let's start over. How can I help?",
        "resume": "Now, back to {frame}.",
        "change": "What would you like to change?",
        "nothing_to_cancel": "There is nothing to cancel.",
        "goodbye_open": (
            'Goodbye! Nothing has been sent: your request ({frame}) is kept as it was, and saying "continue" '
            "picks it up where we stopped."
        ),
        "parked": 'Your request ({frame}) is not finished yet: say "continue" to pick it up.',
        "nothing_to_resume": "There is nothing to continue. How can I help?",
    },
    "ru": {
        "greet": "Здравствуйте! Чем могу помочь?",
        "goodbye": "До свидания!",
        "help": "Я могу помочь с темами: {topics}.",
        "human": "Соединяю вас с оператором. Пожалуйста, подождите.",
        "fallback": "Извините, я не поняла. Я могу помочь с темами: {topics}.",
        "cancelled": "Хорошо, отменила.",
        "restart": "Давайте начнём сначала. Чем могу помочь?",
        "resume": "Вернёмся к теме «{frame}».",
        "change": "Что нужно изменить?",
        "nothing_to_cancel": "Отменять нечего.",
        "goodbye_open": (
            "До свидания! Ничего не отправлено: запрос («{frame}») сохранён как есть — напишите «продолжить», "
            "и мы вернёмся к нему."
        ),
        "parked": "Запрос «{frame}» не закончен: напишите «продолжить», чтобы вернуться к нему.",
        "nothing_to_resume": "Продолжать нечего. Чем могу помочь?",
    },
}


@dataclass
class Domain:
    name: str
    language: str
    frames: list[Frame]
    nlu_path: Path | None
    responses: dict[str, str]
    timezone: str = "UTC"
    titles: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def frame(self, name: str) -> Frame:
        for frame in self.frames:
            if frame.name == name:
                return frame
        raise KeyError(name)

    def frame_for_intent(self, intent: str | None) -> Frame | None:
        if intent is None:
            return None
        for frame in self.frames:
            if intent in frame.intents or intent == frame.name:
                return frame
        return None

    def title(self, frame: str) -> str:
        return self.titles.get(frame) or self.frame(frame).description or frame.replace("_", " ")

    def say(self, key: str, **fields: Any) -> str:
        topics = ", ".join(self.title(f.name) for f in self.frames)
        return self.responses.get(key, "").format(topics=topics, **fields)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        if self.nlu_path is not None:
            digest.update(self.nlu_path.read_bytes())
        for frame in self.frames:
            digest.update(frame.model_dump_json().encode())
        return digest.hexdigest()[:16]


def load_domain(path: str | Path) -> Domain:
    """Read a domain file; every frame and the training file are checked before the bot starts."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(f"cannot read the domain: {exc.strerror}", path=p) from None
    except yaml.YAMLError as exc:
        raise SourceError.from_yaml(exc, p) from None
    if not isinstance(data, dict):
        raise SourceError("expected a mapping with name, language, nlu, frames and responses", path=p)
    allowed = {"name", "language", "timezone", "nlu", "frames", "responses", "titles"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SourceError(f"/{unknown[0]}: unknown key; expected one of {', '.join(sorted(allowed))}", path=p)
    language = data.get("language", "en")
    if language not in DEFAULT_RESPONSES:
        raise SourceError(f"/language: expected 'en' or 'ru', found {language!r}", path=p)
    frames_spec = data.get("frames")
    if not isinstance(frames_spec, list) or not frames_spec:
        raise SourceError("/frames: expected a non-empty list of frame files", path=p)
    frames = [load_frame(p.parent / str(item)) for item in frames_spec]
    names = [f.name for f in frames]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SourceError(f"/frames: two frames are named {duplicates[0]!r}", path=p)
    nlu_path = p.parent / str(data["nlu"]) if data.get("nlu") else None
    if nlu_path is not None and not nlu_path.exists():
        raise SourceError(f"/nlu: no training file {nlu_path}", path=p)
    responses = dict(DEFAULT_RESPONSES[language])
    extra = data.get("responses") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise SourceError("/responses: expected a mapping from intent or act to a text", path=p)
    responses.update(extra)
    timezone = str(data.get("timezone", "UTC"))
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(timezone)
    except Exception:
        raise SourceError(f"/timezone: unknown time zone {timezone!r} (e.g. Europe/Moscow)", path=p) from None
    return Domain(
        name=str(data.get("name") or p.stem),
        language=language,
        frames=frames,
        nlu_path=nlu_path,
        responses=responses,
        timezone=timezone,
        titles={str(k): str(v) for k, v in (data.get("titles") or {}).items()},
        path=p,
    )
