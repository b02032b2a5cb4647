"""The goal-oriented bot: NLU, dialogue state tracking, a strategy over slot frames, a backend.

Strategy, each turn, once the state is updated (:mod:`tracker`):

- "a human" hands over; "cancel" drops the open frame (and resumes one that was interrupted);
  "start over" clears everything;
- an intent that starts another frame suspends the open one, which resumes when the new one is
  done or cancelled; an intent with a plain response (opening hours) is answered, and the open
  frame's question is asked again;
- with no intent, values that fit the last finished frame ("And to Moscow?", "What about
  tomorrow?") re-open it with the other values kept (ellipsis); so does such a follow-up that the
  classifier gives to another intent without being sure of it (below ``SWITCH_CONFIDENCE``: "and
  my credit card too?" after a lost debit card is another lost card, not a request to block one);
- a goodbye while a question is open parks the frame (nothing is submitted) and says so; "continue"
  picks it up again where it stopped;
- in the open frame: ask for the first missing required slot with its prompt; when all are
  there, read back the confirmation template if the frame wants one, and take yes (submit), no
  (ask what to change) or new values (update and read back again); then submit to the backend
  and report its answer. A repeated or retried submission reuses its idempotency key and is never
  sent twice.

Building a bot only reads and checks its domain. The slow first-use work - training the NLU models
(cached by the hash of the training data) and starting the demo backend the example frames submit
to - is :meth:`FrameBot.prepare`, with progress; a bot that nobody prepared prepares itself on its
first turn.
"""

from __future__ import annotations

import re
import string
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rejoinder.bots.frames import tracker
from rejoinder.bots.frames.backends import Outcome, idempotency_key, submit
from rejoinder.bots.frames.domain import Domain
from rejoinder.bots.frames.nlu.pipeline import NLU, Parse, is_short
from rejoinder.bots.frames.schema import Frame, Submit
from rejoinder.bots.frames.values import city_name
from rejoinder.dialogue import Cancel, Dialogue, Progress, ProgressFn, Readiness, Reply
from rejoinder.errors import InvalidMessage
from rejoinder.llm.backends import BACKENDS
from rejoinder.llm.models import SHIPPED
from rejoinder.options import Option, declare
from rejoinder.resources import package_path

SHIPPED_MODELS = tuple(SHIPPED)

SWITCH_CONFIDENCE = 0.8
"""Below this intent confidence, an utterance that answers the open question stays in the open frame,
and an elliptical follow-up that fits the last finished frame re-opens it."""
DEMO_BACKEND = "http://127.0.0.1:8765"
"""Submit URLs under this prefix go to the demo backend, wherever it runs (see ``demo_backend_port``)."""
_ELLIPSIS_OPENERS = ("and ", "what about", "how about", "а ", "и ", "а если", "а как насчёт", "а как насчет")


_EN_MONTHS = "January February March April May June July August September October November December".split()
_RU_MONTHS = "января февраля марта апреля мая июня июля августа сентября октября ноября декабря".split()
_EN_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}:\d{2}))?$")


def display(value: Any, language: str = "en", type: str | None = None) -> str:
    """A slot value as the bot says it: money as "50.00 USD", ISO dates as "Monday 23 November 2026"
    (English) or "23 ноября 2026" (Russian), with " at 15:00" / " в 15:00" for a date and time;
    cities of the gazetteer in the bot's language."""
    if type in ("city", "location") and isinstance(value, str):
        return city_name(value, language)
    if isinstance(value, dict) and {"amount", "currency"} <= set(value):
        return f"{value['amount']} {value['currency']}"
    match = _ISO_DATE.match(value) if isinstance(value, str) else None
    if match is not None:
        try:
            day = datetime(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            return str(value)
        if language == "ru":
            said = f"{day.day} {_RU_MONTHS[day.month - 1]} {day.year}"
            return f"{said} в {match.group(4)}" if match.group(4) else said
        said = f"{_EN_WEEKDAYS[day.weekday()]} {day.day} {_EN_MONTHS[day.month - 1]} {day.year}"
        return f"{said} at {match.group(4)}" if match.group(4) else said
    return str(value)


_UNFILLED = re.compile(r"(?:\b[\w']{1,5}\s+)?\{(\w+)\}")
_OPTIONAL = re.compile(r"\[([^\[\]]*?\{(\w+)\}[^\[\]]*)\]")


def fill(template: str, values: dict[str, Any], language: str = "en", types: dict[str, str] | None = None) -> str:
    """Fill a template. ``[, reason: {reason}]`` is said only when ``reason`` has a value; any other
    field with no value drops with the short word before it ("from {from} "). Values are shown as
    :func:`display` says them, in ``language``; ``types`` maps slot names to their types."""

    def optional(match: re.Match[str]) -> str:
        return match.group(1) if match.group(2) in values else ""

    def drop_unfilled(match: re.Match[str]) -> str:
        return match.group(0) if match.group(1) in values else ""

    template = _UNFILLED.sub(drop_unfilled, _OPTIONAL.sub(optional, template))
    types = types or {}
    shown = {k: v if isinstance(v, _Result) else display(v, language, types.get(k)) for k, v in values.items()}
    return " ".join(string.Formatter().vformat(template, (), shown).split())


def _elliptical(text: str) -> bool:
    """Short, or opening like "And ...", "What about ...": a follow-up that leaves the rest unsaid."""
    return is_short(text, 6) or text.strip().lower().startswith(_ELLIPSIS_OPENERS)


class _Result:
    def __init__(self, dict_: dict[str, Any]) -> None:
        self.__dict__.update(dict_)

    def __getattr__(self, name: str) -> str:
        return "{result." + name + "}"


NLUBuilder = Callable[[ProgressFn | None, Cancel | None], Any]
"""Makes a bot's NLU when it is prepared; returns None when the cancel was set before it finished."""


class FrameBot:
    """Fills a domain's slot frames in conversation and submits them.

    Give it a ready ``nlu``, or a ``build_nlu`` that :meth:`prepare` runs. With
    ``demo_backend_port`` (0: any free port) the frames' ``http://127.0.0.1:8765/...`` URLs go to a
    demo backend that :meth:`prepare` starts in this process; without it, URLs are used as written.
    """

    def __init__(
        self,
        domain: Domain,
        nlu: Any = None,
        *,
        name: str = "frames",
        min_intent_confidence: float = 0.5,
        build_nlu: NLUBuilder | None = None,
        demo_backend_port: int | None = None,
    ) -> None:
        if nlu is None and build_nlu is None:
            raise ValueError("FrameBot needs an nlu or a build_nlu")
        self.name = name
        self.domain = domain
        self.min_intent_confidence = min_intent_confidence
        self.zone = ZoneInfo(domain.timezone)
        self.phraser: Any = None  # e.g. nlu.llm.QuestionPhraser: words the next question with an LLM
        self._nlu = nlu
        self._build_nlu = build_nlu
        uses_demo = any(f.submit and f.submit.url and f.submit.url.startswith(DEMO_BACKEND) for f in domain.frames)
        self._demo_port = demo_backend_port if uses_demo else None
        self._demo_base: str | None = None
        self._preparing = threading.Lock()

    # -- preparation -------------------------------------------------------------------------------
    def _left(self) -> list[str]:
        left = []
        if self._demo_port is not None and self._demo_base is None:
            left.append("start the demo backend")
        if self._nlu is None:
            left.append("train or load the NLU models")
        return left

    def readiness(self) -> Readiness:
        left = self._left()
        total = int(self._demo_port is not None) + int(self._build_nlu is not None)
        if not left:
            return Readiness(True, True, "", total, total)
        return Readiness(False, False, "to do: " + "; ".join(left), total - len(left), total)

    def prepare(self, progress: ProgressFn | None = None, cancel: Cancel | None = None) -> None:
        """Start the demo backend (if the frames use it) and build the NLU; idempotent."""
        with self._preparing:
            if self._demo_port is not None and self._demo_base is None:
                if cancel is not None and cancel.is_set:
                    return
                from rejoinder.bots.frames.demo_backend import serve_in_background

                _report(progress, Progress("demo backend", 0, 1, "starting on 127.0.0.1"))
                self._demo_base = f"http://127.0.0.1:{serve_in_background(self._demo_port)}"
                _report(progress, Progress("demo backend", 1, 1, self._demo_base))
            if self._nlu is None and self._build_nlu is not None:
                if cancel is not None and cancel.is_set:
                    return
                self._nlu = self._build_nlu(progress, cancel)

    @property
    def nlu(self) -> Any:
        """The NLU; built (trained on first use) by :meth:`prepare` if nobody prepared the bot yet."""
        if self._nlu is None:
            self.prepare()
        return self._nlu

    @property
    def demo_backend_url(self) -> str | None:
        """Where this bot's demo backend answers, once :meth:`prepare` has started it."""
        return self._demo_base

    def submit_spec(self, frame: Frame) -> Submit | None:
        """Where the frame is submitted: its own ``submit``, with demo-backend URLs pointed at ours."""
        spec = frame.submit
        if spec is None or self._demo_port is None or not (spec.url and spec.url.startswith(DEMO_BACKEND)):
            return spec
        if self._demo_base is None:
            self.prepare()
        return spec.model_copy(update={"url": f"{self._demo_base}{spec.url[len(DEMO_BACKEND) :]}"})

    def panel(self, dialogue: Dialogue) -> dict[str, Any]:
        """What the bot tracks, for a front end's side panel: the open frame (or the one just done),
        its slots filled and missing, the slot asked for, and the confirmation it waits on."""
        state = dialogue.state
        instance = state.get("current") or state.get("last")
        if not instance:
            return {"kind": "frame", "frame": None, "stack": []}
        frame = self.domain.frame(instance["frame"])
        slots = []
        for slot in frame.slots:
            filled = instance["slots"].get(slot.name)
            slots.append({"name": slot.name, "type": slot.type, "required": slot.is_required,
                          "value": filled["value"] if filled else slot.default,
                          "text": filled["text"] if filled else None, "filled": filled is not None,
                          "default": filled is None and slot.default is not None})  # fmt: skip
        missing = [s["name"] for s in slots if s["required"] and not s["filled"] and not s["default"]]
        confirming = instance["phase"] == "confirming"
        pending = None
        if confirming and frame.confirmation.prompt:
            pending = self._fill_template(
                frame, frame.confirmation.prompt, tracker.values_with_defaults(frame, instance)
            )
        return {"kind": "frame", "frame": frame.name, "title": self.domain.titles.get(frame.name, frame.name),
                "phase": instance["phase"], "asked": instance.get("asked"), "slots": slots, "missing": missing,
                "confirmation": pending, "outcome": instance.get("outcome"),
                "stack": [item["frame"] for item in state.get("stack", [])]}  # fmt: skip

    def greet(self, dialogue: Dialogue) -> Reply | None:
        dialogue.state.update(tracker.new_state())
        return Reply(self.domain.say("greet"), meta={"action": "greet"})

    # -- a turn ------------------------------------------------------------------------------------
    def respond(self, dialogue: Dialogue) -> Reply:
        message = dialogue.last_user_message
        if message is None:
            raise InvalidMessage("the frame bot needs a user message to respond to")
        state = dialogue.state
        if not state:
            state.update(tracker.new_state())
        state["turn"] += 1
        now = message.created_at.astimezone(self.zone).replace(tzinfo=None)
        parse = self.nlu.parse(message.text, now)
        intent = parse.intent if parse.confidence >= self.min_intent_confidence else None
        if parse.acts and is_short(message.text, 3):
            intent = None  # "yes", "no, thanks", "cancel": a dialogue act, not a new request
        text, action, confidence = self._step(dialogue, parse, intent, now)
        return Reply(text, confidence=confidence, meta={"action": action, "nlu": parse.as_meta()})

    def _step(self, dialogue: Dialogue, parse: Parse, intent: str | None, now: datetime) -> tuple[str, str, float]:
        state = dialogue.state
        acts = parse.acts
        current = state["current"]
        if "human" in acts and intent is None:
            return self._record(state, parse, {}, "handoff", self.domain.say("human"), 1.0)
        if "restart" in acts:
            state.update({"current": None, "stack": [], "parked": []})
            return self._record(state, parse, {}, "restart", self.domain.say("restart"), 1.0)
        if "cancel" in acts and intent is None:
            if current is None and state.get("parked"):
                state["parked"] = []
                return self._record(state, parse, {}, "cancel", self.domain.say("cancelled"), 1.0)
            if current is None:
                return self._record(state, parse, {}, "cancel", self.domain.say("nothing_to_cancel"), 1.0)
            current["phase"] = "cancelled"
            state["current"] = state["stack"].pop() if state["stack"] else None
            text = self.domain.say("cancelled")
            return self._record(state, parse, {}, "cancel", self._with_resume(state, text, now), 1.0)
        unsure = intent is None or parse.confidence < SWITCH_CONFIDENCE
        if "goodbye" in acts and current is not None and unsure and self._leaves(state, parse, current, now):
            return self._park(state, parse)
        if "resume" in acts and current is None and unsure:
            return self._resume(state, parse, now)

        frame = self.domain.frame_for_intent(intent)
        if (
            current is None
            and intent is not None
            and parse.confidence < SWITCH_CONFIDENCE
            and (frame is None or frame.name != (state.get("last") or {}).get("frame"))
            and self._ellipsis_values(state, parse, now)
        ):
            frame = intent = None  # "and my credit card too?": the last request again with a new value
        elsewhere = intent is not None and (frame is None or (current is not None and frame.name != current["frame"]))
        if (
            elsewhere
            and current is not None
            and parse.confidence < SWITCH_CONFIDENCE
            and self._answers_current(state, parse, current, now)
        ):
            frame = intent = None  # an answer to the question just asked, not a new request
        if frame is not None and (current is None or frame.name != current["frame"]):
            if current is not None and current["phase"] in ("filling", "confirming"):
                state["stack"].append(current)
            last = state.get("last")
            kept = last["slots"] if last and last["frame"] == frame.name and _elliptical(parse.text) else None
            current = state["current"] = tracker.open_instance(state, frame, kept)
        elif frame is None and intent is not None and intent in self.domain.responses:
            text = self.domain.say(intent)
            if current is not None:
                text = f"{text} {self._next_question(state, current, now)}"
            return self._record(state, parse, {}, f"answer:{intent}", text, parse.confidence)

        if current is None:
            reopened = self._ellipsis(state, parse, now)
            if reopened is None:
                for act in ("greet", "goodbye", "help"):
                    if act in acts:
                        text = self.domain.say(act)
                        text = text if act == "goodbye" else self._with_parked(state, text)
                        return self._record(state, parse, {}, act, text, 1.0)
                text = self._with_parked(state, self.domain.say("fallback"))
                return self._record(state, parse, {}, "fallback", text, 0.0)
            current = reopened

        return self._fill(state, dialogue, parse, current, now)

    def _answers_current(self, state: dict[str, Any], parse: Parse, current: dict[str, Any], now: datetime) -> bool:
        """Whether the utterance answers the open frame: the slot just asked, or a correction at read-back."""
        asked = current.get("asked")
        if not asked and current["phase"] != "confirming":
            return False
        frame = self.domain.frame(current["frame"])
        found = tracker.extract(parse, frame, current, state, language=self.domain.language, now=now)
        return bool(found) if current["phase"] == "confirming" or asked == tracker.CHANGE else asked in found

    def _ellipsis_values(self, state: dict[str, Any], parse: Parse, now: datetime) -> dict[str, Any]:
        """The values an elliptical follow-up gives for the last finished frame ({} when it is none)."""
        last = state.get("last")
        if last is None or not _elliptical(parse.text):
            return {}
        frame = self.domain.frame(last["frame"])
        probe = tracker.open_instance({"instances": 0}, frame)
        return tracker.extract(parse, frame, probe, state, language=self.domain.language, now=now)

    def _ellipsis(self, state: dict[str, Any], parse: Parse, now: datetime) -> dict[str, Any] | None:
        if not self._ellipsis_values(state, parse, now):
            return None
        last = state["last"]
        instance = tracker.open_instance(state, self.domain.frame(last["frame"]), last["slots"])
        state["current"] = instance
        return instance

    def _leaves(self, state: dict[str, Any], parse: Parse, current: dict[str, Any], now: datetime) -> bool:
        """Whether a goodbye ends the conversation rather than answering: it says yes to nothing and gives no value."""
        if "affirm" in parse.acts and current["phase"] == "confirming":
            return False  # "yes, thanks, bye": submit first
        frame = self.domain.frame(current["frame"])
        return not tracker.extract(parse, frame, current, state, language=self.domain.language, now=now)

    def _park(self, state: dict[str, Any], parse: Parse) -> tuple[str, str, float]:
        """Put the open frame (and those it interrupted) aside unsubmitted, to be resumed by "continue"."""
        parked = [*state["stack"], state["current"]]
        state.update({"current": None, "stack": [], "parked": parked})
        text = self.domain.say("goodbye_open", frame=self.domain.title(parked[-1]["frame"]))
        return self._record(state, parse, {}, "park", text, 1.0)

    def _resume(self, state: dict[str, Any], parse: Parse, now: datetime) -> tuple[str, str, float]:
        parked = state.get("parked") or []
        if not parked:
            return self._record(state, parse, {}, "resume", self.domain.say("nothing_to_resume"), 1.0)
        state.update({"current": parked[-1], "stack": parked[:-1], "parked": []})
        return self._record(state, parse, {}, "resume", self._with_resume(state, "", now), 1.0)

    def _with_parked(self, state: dict[str, Any], text: str) -> str:
        parked = state.get("parked")
        if not parked:
            return text
        return f"{text} {self.domain.say('parked', frame=self.domain.title(parked[-1]['frame']))}"

    def _fill(
        self, state: dict[str, Any], dialogue: Dialogue, parse: Parse, instance: dict[str, Any], now: datetime
    ) -> tuple[str, str, float]:
        frame = self.domain.frame(instance["frame"])
        found = tracker.extract(parse, frame, instance, state, language=self.domain.language, now=now)
        changed = tracker.apply(instance, found, state["turn"])
        tracker.remember(state, frame, found)
        confidence = max(parse.confidence, 1.0 if found else 0.0)
        if instance["phase"] == "confirming":
            if "affirm" in parse.acts and not changed and "deny" not in parse.acts:
                return self._submit(state, dialogue, parse, frame, instance, changed, now)
            if "deny" in parse.acts and not changed:
                instance["phase"] = "filling"
                instance["asked"] = tracker.CHANGE
                return self._record(state, parse, changed, "ask:change", self.domain.say("change"), 1.0)
            instance["phase"] = "filling"
        missing = tracker.missing_slot(frame, instance)
        if missing is not None:
            instance["asked"] = missing.name
            return self._record(
                state, parse, changed, f"ask:{missing.name}", self._question(frame, missing, instance), confidence
            )
        if frame.confirmation.is_required:
            instance["phase"] = "confirming"
            instance["asked"] = None
            text = self._fill_template(
                frame, frame.confirmation.prompt or "", tracker.values_with_defaults(frame, instance)
            )
            return self._record(state, parse, changed, "confirm", text, confidence)
        return self._submit(state, dialogue, parse, frame, instance, changed, now)

    def _submit(
        self,
        state: dict[str, Any],
        dialogue: Dialogue,
        parse: Parse,
        frame: Frame,
        instance: dict[str, Any],
        changed: dict[str, Any],
        now: datetime,
    ) -> tuple[str, str, float]:
        values = tracker.values_with_defaults(frame, instance)
        if frame.submit is None:
            outcome = Outcome(True, {})
        else:
            key = idempotency_key(dialogue.conversation_id, frame.name, instance["id"], values)
            stored = state["submissions"].get(key)
            if stored is not None and stored["ok"]:
                outcome = Outcome(**stored)
            else:
                outcome = submit(self.submit_spec(frame) or frame.submit, frame.name, values, key)
                state["submissions"][key] = outcome.as_dict()
        instance["outcome"] = outcome.as_dict()
        if outcome.ok:
            instance["phase"] = "done"
            state["last"] = instance
            template = frame.submit.success_prompt if frame.submit else "Done."
            text = self._fill_template(frame, template, {**values, "result": _Result(outcome.result)})
            action = "submitted"
        else:
            instance["phase"] = "confirming" if frame.confirmation.is_required else "filling"
            text = frame.submit.failure_prompt if frame.submit else "Sorry, that did not work."
            action = "submit_failed"
        if outcome.ok:
            state["current"] = state["stack"].pop() if state["stack"] else None
            text = self._with_resume(state, text, now)
            if "goodbye" in parse.acts and state["current"] is None:
                text = f"{text} {self.domain.say('goodbye')}"
        return self._record(state, parse, changed, action, text, 1.0)

    def _fill_template(self, frame: Frame, template: str, values: dict[str, Any]) -> str:
        return fill(template, values, self.domain.language, {s.name: s.type for s in frame.slots})

    def _next_question(self, state: dict[str, Any], instance: dict[str, Any], now: datetime) -> str:
        frame = self.domain.frame(instance["frame"])
        if instance["phase"] == "confirming":
            return self._fill_template(
                frame, frame.confirmation.prompt or "", tracker.values_with_defaults(frame, instance)
            )
        missing = tracker.missing_slot(frame, instance)
        if missing is not None:
            instance["asked"] = missing.name
            return self._question(frame, missing, instance)
        return ""

    def _question(self, frame: Frame, slot: Any, instance: dict[str, Any]) -> str:
        """The question for a missing slot: its prompt, or the phraser's wording of it."""
        prompt = slot.prompt or slot.name
        if self.phraser is None:
            return prompt
        return self.phraser(frame, slot, prompt, tracker.values_with_defaults(frame, instance))

    def _with_resume(self, state: dict[str, Any], text: str, now: datetime) -> str:
        resumed = state["current"]
        if resumed is None:
            return text
        question = self._next_question(state, resumed, now)
        return f"{text} {self.domain.say('resume', frame=self.domain.title(resumed['frame']))} {question}".strip()

    @staticmethod
    def _record(
        state: dict[str, Any], parse: Parse, changed: dict[str, Any], action: str, text: str, confidence: float
    ) -> tuple[str, str, float]:
        tracker.record(state, parse, changed, action)
        return text, action, confidence


# -- building bots -------------------------------------------------------------------------------

EXAMPLES = package_path("bots", "frames", "examples")


def _report(progress: ProgressFn | None, event: Progress) -> None:
    if progress is not None:
        progress(event)


def build_nlu(
    domain: Domain,
    *,
    classifier: str = "embedding",
    embedder: str = "minilm",
    ner: bool = True,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> NLU | None:
    """Train (or load the cached) intent classifier and slot tagger of a domain, load its NER and
    run one utterance through it all, so that the first real turn waits for nothing.

    Trained models are cached in the data directory by the hash of the training data and frames.
    Progress goes to ``progress`` (stage ``nlu``, four steps); when ``cancel`` is set between steps
    it returns None, and a later call resumes from the models already cached.
    """
    from rejoinder.bots.frames import values
    from rejoinder.bots.frames.nlu.data import load_nlu_data
    from rejoinder.bots.frames.nlu.intents import load_intent_classifier, make_intent_classifier
    from rejoinder.bots.frames.nlu.slots import CRFSlotTagger
    from rejoinder.errors import ConfigError
    from rejoinder.ner import load_ner
    from rejoinder.store import data_dir

    kinds = sorted(
        {s.type for f in domain.frames for s in f.slots if s.type not in ("text", "regex", "lookup", "enum")}
    )

    def value_types(text: str) -> list[tuple[int, int, str]]:
        return [(v.start, v.end, v.type) for v in values.extract_all(text, kinds, lang=domain.language)]

    def step(done: int, detail: str) -> bool:
        _report(progress, Progress("nlu", done, 4, detail))
        return cancel is not None and cancel.is_set

    intents = tagger = None
    if domain.nlu_path is not None:
        folder = data_dir() / "frames" / f"{domain.name}-{domain.fingerprint()}-{classifier}-{embedder}"
        data = load_nlu_data(domain.nlu_path)
        options = {"embedder": embedder} if classifier == "embedding" else {}
        if step(0, "intent classifier"):
            return None
        try:
            intents = load_intent_classifier(folder / "intents")
        except ConfigError:
            step(0, f"intent classifier: training on {len(data.examples)} examples (first use; cached afterwards)")
            intents = make_intent_classifier(classifier, **options)
            intents.fit([e.text for e in data.examples], [e.intent for e in data.examples])
            intents.save(folder / "intents")
        if step(1, "slot tagger"):
            return None
        if any(e.spans for e in data.examples):
            try:
                tagger = CRFSlotTagger.load(folder / "slots", value_types=value_types)
            except ConfigError:
                step(1, "slot tagger: training (first use; cached afterwards)")
                tagger = CRFSlotTagger(value_types=value_types)
                tagger.fit(data.examples)
                tagger.save(folder / "slots")
    if step(2, "named entities" if ner else "named entities: off"):
        return None
    recogniser = None
    if ner:
        try:
            recogniser = load_ner(domain.language)
        except ConfigError as exc:  # the bot works without NER; say why it is off
            _report(progress, Progress("nlu", 2, 4, f"named entities: off ({exc})"))
    if step(3, "warming up (the first utterance through the whole pipeline)"):
        return None
    understanding = NLU(domain.language, intents, tagger, recogniser)
    understanding.parse(domain.say("greet") or "hello")
    _report(progress, Progress("nlu", 4, 4, "ready"))
    return understanding


def _start_demo_backend(domain: Domain, port: int) -> Domain:
    """Start this process's demo backend on ``port`` (0: any free one) and point the frames' demo URLs
    at it. For tests and benchmarks that build a :class:`FrameBot` themselves; bots made by
    :func:`create` do this in :meth:`FrameBot.prepare` instead."""
    from rejoinder.bots.frames.demo_backend import serve_in_background

    uses_demo = any(f.submit and f.submit.url and f.submit.url.startswith(DEMO_BACKEND) for f in domain.frames)
    if not uses_demo:
        return domain
    base = f"http://127.0.0.1:{serve_in_background(port)}"
    frames = [
        f.model_copy(update={"submit": f.submit.model_copy(update={"url": base + f.submit.url[len(DEMO_BACKEND) :]})})
        if f.submit and f.submit.url and f.submit.url.startswith(DEMO_BACKEND)
        else f
        for f in domain.frames
    ]
    domain.frames = frames
    return domain


def _frame_options(*, domain: bool = False, language: bool = False) -> tuple[Option, ...]:
    """The options of the frame bots (``frames`` also takes a domain file, ``bank`` a language)."""
    head = []
    if domain:
        head.append(
            Option("domain", "path", "", "the domain file (domain.yaml): frames, NLU data, responses", required=True)
        )
    if language:
        head.append(Option("language", "choice", "en", "the bank bot's language", choices=("en", "ru")))
    return (
        *head,
        Option("classifier", "choice", "embedding", "intents: MiniLM + n-gram regressions, or fine-tuned MiniLM",
               choices=("embedding", "finetuned"), client=False),
        Option("embedder", "choice", "minilm", "sentence embeddings of the classifier (hashing: a fast stand-in)",
               choices=("minilm", "hashing"), client=False),
        *((Option("ner", "bool", True, "recognise names, places and organisations (spaCy, natasha)", client=False),)
          if domain else ()),
        Option("demo_backend_port", "int", 0, "port of the demo backend the example frames submit to (0: any free one)",
               minimum=0, maximum=65535, client=False),
        *((Option("min_intent_confidence", "float", 0.5, "below this, no intent (the bot falls back)",
                  minimum=0, maximum=1),) if domain else ()),
        Option("nlu", "choice", "classic", "classic: trained classifier and tagger; llm: a language model",
               choices=("classic", "llm"), client=False),
        Option("model", "model", "", "with nlu=llm: a local model directory, a GGUF file, or a shipped model",
               choices=SHIPPED_MODELS),
        Option("backend", "choice", "auto", "with nlu=llm: the generation backend", choices=BACKENDS, client=False),
        Option("base_url", "url", "", "with nlu=llm and backend openai: the server's base URL"),
        Option("phrase_questions", "bool", False, "with nlu=llm: the model words the questions for missing slots"),
    )  # fmt: skip


@declare(*_frame_options(domain=True))
def create(
    domain: str = "",
    classifier: str = "embedding",
    embedder: str = "minilm",
    ner: bool = True,
    demo_backend_port: int = 0,
    min_intent_confidence: float = 0.5,
    nlu: str = "classic",
    model: str = "",
    backend: str = "auto",
    base_url: str = "",
    phrase_questions: bool = False,
) -> FrameBot:
    """Goal-oriented bot over a domain file: NLU, state tracking, slot frames, backend calls.

    ``nlu=llm`` prompts a language model (``model``, ``backend``, ``base_url`` as for the assistant)
    for the intent and slots instead of the trained classifier and tagger (see ``nlu/llm.py``);
    with ``phrase_questions=true`` the same model words the questions for missing slots.
    """
    from rejoinder.bots.frames.domain import load_domain
    from rejoinder.errors import ConfigError

    if not domain:
        raise ConfigError("the frames bot needs option domain=PATH (a domain YAML file)")
    if phrase_questions and nlu != "llm":
        raise ConfigError("option phrase_questions=true needs nlu=llm (the model that words the questions)")
    if nlu == "classic":
        try:
            import rejoinder.bots.frames.nlu.intents  # noqa: F401 - the classic NLU's libraries are installed
        except ImportError as exc:
            raise ConfigError(f"the frame bots need {exc.name!r}: pip install 'rejoinder[frames]'") from None
    loaded = load_domain(domain)
    bot: FrameBot

    def build(progress: ProgressFn | None, cancel: Cancel | None) -> Any:
        if nlu == "classic":
            return build_nlu(loaded, classifier=classifier, embedder=embedder, ner=ner, progress=progress,
                             cancel=cancel)  # fmt: skip
        from rejoinder.bots.frames.nlu.llm import QuestionPhraser, build_llm_nlu

        _report(progress, Progress("nlu", 0, 1, f"loading the language model ({model or 'default'}, {backend})"))
        understanding = build_llm_nlu(loaded, model=model, backend=backend, base_url=base_url)
        if phrase_questions:
            bot.phraser = QuestionPhraser(understanding.backend, loaded.language)
        _report(progress, Progress("nlu", 1, 1, "ready"))
        return understanding

    bot = FrameBot(
        loaded, name="frames", min_intent_confidence=min_intent_confidence, build_nlu=build,
        demo_backend_port=demo_backend_port,
    )  # fmt: skip
    return bot


@declare(*_frame_options(language=True))
def create_bank(
    language: str = "en",
    classifier: str = "embedding",
    embedder: str = "minilm",
    demo_backend_port: int = 0,
    nlu: str = "classic",
    model: str = "",
    backend: str = "auto",
    base_url: str = "",
    phrase_questions: bool = False,
) -> FrameBot:
    """Bank tech support (lost card, block card, balance, transfers, disputes), English or Russian."""
    from rejoinder.errors import ConfigError

    if language not in ("en", "ru"):
        raise ConfigError(f"option language={language!r}: expected 'en' or 'ru'")
    bot = create(
        str(EXAMPLES / f"bank_{language}" / "domain.yaml"), classifier, embedder, True, demo_backend_port,
        nlu=nlu, model=model, backend=backend, base_url=base_url, phrase_questions=phrase_questions,
    )  # fmt: skip
    bot.name = "bank"
    return bot


@declare(*_frame_options())
def create_travel(
    classifier: str = "embedding",
    embedder: str = "minilm",
    demo_backend_port: int = 0,
    nlu: str = "classic",
    model: str = "",
    backend: str = "auto",
    base_url: str = "",
    phrase_questions: bool = False,
) -> FrameBot:
    """The travel frame bot: where from, where to, when — confirmed and booked."""
    bot = create(
        str(EXAMPLES / "travel" / "domain.yaml"), classifier, embedder, True, demo_backend_port,
        nlu=nlu, model=model, backend=backend, base_url=base_url, phrase_questions=phrase_questions,
    )  # fmt: skip
    bot.name = "travel"
    return bot
