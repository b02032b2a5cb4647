"""Dialogue state tracking by rules: which frame is open, which slots hold what, what was tried.

The whole state is a JSON-serialisable dict kept in ``dialogue.state`` (so it survives a restart)::

    {"turn": 7,
     "current": {"id": 3, "frame": "travel", "phase": "filling", "asked": "date",
                 "slots": {"to": {"value": "Paris", "text": "Paris", "turn": 6}}},
     "stack": [<suspended instances, most recent last>],
     "parked": [<instances put aside by a goodbye, the open one last; "continue" resumes them>],
     "last": <the last finished instance, for ellipsis>,
     "entities": [{"type": "city", "value": "Paris", "text": "Paris", "turn": 6}, ...],
     "submissions": {<idempotency key>: <outcome>},
     "tried": [{"turn": 6, "intent": "book", "acts": [], "filled": {"to": "Paris"}, "action": "ask:date"}]}

Values reach slots three ways: the slot tagger names the slot; a typed value fits a slot of its
type (its role, e.g. origin/destination from "from"/"to", picks between slots of one type; the
slot just asked wins otherwise); or an anaphor ("there", "it", "туда", "его") stands for an entity
mentioned earlier. Several slots may be filled at once, and slots not asked yet are kept when
volunteered. A value for a filled slot replaces it (a correction: "no, to Paris").
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from rejoinder.bots.frames import values as typed
from rejoinder.bots.frames.nlu.pipeline import Parse
from rejoinder.bots.frames.schema import Frame, Slot

MAX_ENTITIES = 30
MAX_TRIED = 50

_ANAPHORS = {
    "en": {
        "location": re.compile(r"\b(there|that (city|place)|the same (city|place))\b", re.I),
        "date": re.compile(r"\b(that day|the same day|then)\b", re.I),
        "any": re.compile(r"\b(it|this one|that one|the same)\b", re.I),
    },
    "ru": {
        "location": re.compile(r"(?<!\w)(туда|там|оттуда|этот город|тот же город)(?!\w)", re.I),
        "date": re.compile(r"(?<!\w)(в этот день|в тот же день|тогда)(?!\w)", re.I),
        "any": re.compile(r"(?<!\w)(его|её|ее|это|тот же|ту же|то же)(?!\w)", re.I),
    },
}
CHANGE = "*change*"
"""The ``asked`` marker after the user said no to a read-back: any slot may come next."""
_LOCATION_TYPES = {"city", "location"}
_OWN_VALUES = {"enum", "lookup", "regex"}
_DATE_TYPES = {"date", "datetime", "time"}


def new_state() -> dict[str, Any]:
    return {
        "turn": 0,
        "current": None,
        "stack": [],
        "parked": [],
        "last": None,
        "entities": [],
        "submissions": {},
        "tried": [],
        "instances": 0,
    }


def open_instance(state: dict[str, Any], frame: Frame, slots: dict[str, Any] | None = None) -> dict[str, Any]:
    state["instances"] += 1
    return {
        "id": state["instances"],
        "frame": frame.name,
        "phase": "filling",
        "asked": None,
        "slots": dict(slots or {}),
        "outcome": None,
    }


def filled(instance: dict[str, Any]) -> dict[str, Any]:
    return {name: slot["value"] for name, slot in instance["slots"].items()}


def missing_slot(frame: Frame, instance: dict[str, Any]) -> Slot | None:
    for slot in frame.slots:
        if slot.is_required and slot.name not in instance["slots"] and slot.default is None:
            return slot
    return None


def values_with_defaults(frame: Frame, instance: dict[str, Any]) -> dict[str, Any]:
    out = {s.name: s.default for s in frame.slots if s.default is not None}
    out.update(filled(instance))
    return out


def _slot_role(slot: Slot) -> str | None:
    return slot.role or typed.default_role(slot.name)


def _compatible(slot: Slot, value_type: str) -> bool:
    if slot.type == value_type:
        return True
    if slot.type in _LOCATION_TYPES and value_type in _LOCATION_TYPES:
        return True
    return slot.type == "datetime" and value_type in ("date", "time")


def extract(
    parse: Parse, frame: Frame, instance: dict[str, Any], state: dict[str, Any], *, language: str, now: datetime
) -> dict[str, dict[str, Any]]:
    """The slot values this utterance gives for ``frame``: slot name -> {value, text}."""
    found: dict[str, dict[str, Any]] = {}
    slots = {s.name: s for s in frame.slots}
    taken: list[tuple[int, int]] = []

    # 1. The tagger names the slot; the slot's type normalises the words. Where a typed parser
    #    reads a longer value over the tagged words ("6 March 2026", "without a new card"), the
    #    longer reading wins.
    for span in parse.tagged:
        slot = slots.get(span.slot)
        if slot is None or slot.name in found:
            continue
        start, end = span.start, span.end
        words = parse.text[start:end]
        value = _normalise(slot, words, language, now)
        if slot.type != "text":
            wider = [
                v
                for v in typed.extract(parse.text, slot.type, lang=language, now=now, slot=slot)
                if v.start < end and start < v.end and v.end - v.start > end - start
            ]
            if wider:
                best = max(wider, key=lambda v: v.end - v.start)
                value, words, start, end = best.value, best.text, best.start, best.end
        if value is not None:
            found[slot.name] = {"value": value, "text": words}
            taken.append((start, end))

    # 2. Values of slot-specific types (enum choices, lookup tables, patterns) belong to their slot.
    for slot in frame.slots:
        if slot.type in _OWN_VALUES and slot.name not in found:
            for value in typed.extract(parse.text, slot.type, lang=language, now=now, slot=slot):
                if not any(value.start < end and start < value.end for start, end in taken):
                    found[slot.name] = {"value": value.value, "text": value.text}
                    taken.append((value.start, value.end))
                    break

    # 3. Typed values fit slots of their type: role first, then the slot asked, then any empty one.
    types = sorted({s.type for s in frame.slots if s.type not in _OWN_VALUES and s.type != "text"})
    if types:
        generic = [s for s in frame.slots if s.type not in _OWN_VALUES]
        for value in typed.extract_all(parse.text, types, lang=language, now=now, slots=generic):
            if any(value.start < end and start < value.end for start, end in taken):
                continue
            candidates = [s for s in generic if _compatible(s, value.type) and s.name not in found]
            if not candidates:
                continue
            chosen = None
            if value.role:
                chosen = next((s for s in candidates if _slot_role(s) == value.role), None)
            if chosen is None and len(candidates) > 1 and value.role is None:
                chosen = next((s for s in candidates if s.name == instance.get("asked")), None)
            if chosen is None:
                unroled = [s for s in candidates if value.role is None or _slot_role(s) is None]
                chosen = next((s for s in unroled if s.name not in instance["slots"]), unroled[0] if unroled else None)
            if chosen is not None:
                found[chosen.name] = {"value": value.value, "text": value.text}
                taken.append((value.start, value.end))

    # 4. An anaphor stands for an entity mentioned before.
    anaphors = _ANAPHORS.get(language, _ANAPHORS["en"])
    for slot in frame.slots:
        if slot.name in found:
            continue
        kind = "location" if slot.type in _LOCATION_TYPES else "date" if slot.type in _DATE_TYPES else None
        asked = instance.get("asked") == slot.name
        if (kind and anaphors[kind].search(parse.text)) or (asked and anaphors["any"].search(parse.text)):
            earlier = _last_entity(state, slot)
            if earlier is not None:
                found[slot.name] = {"value": earlier["value"], "text": earlier["text"], "anaphora": True}
                break

    # 5. A free-text slot that was asked takes the whole answer; so does the frame's only free-text
    #    slot when the user was asked what to change and gave no other value.
    asked = slots.get(instance.get("asked") or "")
    if asked is None and instance.get("asked") == CHANGE:
        free = [s for s in frame.slots if s.type == "text"]
        asked = free[0] if len(free) == 1 else None
    if (
        asked is not None
        and asked.type == "text"
        and asked.name not in found
        and not found
        and not {"affirm", "deny", "cancel"} & set(parse.acts)
        and parse.text.strip()
    ):
        found[asked.name] = {"value": parse.text.strip(), "text": parse.text.strip()}
    return found


def _normalise(slot: Slot, words: str, language: str, now: datetime) -> Any:
    if slot.type == "text":
        return words.strip()
    parsed = typed.extract(words, slot.type, lang=language, now=now, slot=slot)
    if parsed:
        return parsed[0].value
    return None


def _last_entity(state: dict[str, Any], slot: Slot) -> dict[str, Any] | None:
    for entity in reversed(state["entities"]):
        if _compatible(slot, entity["type"]):
            return entity
    return None


def apply(instance: dict[str, Any], found: dict[str, dict[str, Any]], turn: int) -> dict[str, Any]:
    """Write values into the instance; returns the slots whose value changed."""
    changed = {}
    for name, item in found.items():
        previous = instance["slots"].get(name)
        if previous is None or previous["value"] != item["value"]:
            changed[name] = item["value"]
        instance["slots"][name] = {"value": item["value"], "text": item["text"], "turn": turn}
    return changed


def remember(state: dict[str, Any], frame: Frame, found: dict[str, dict[str, Any]]) -> None:
    for name, item in found.items():
        state["entities"].append(
            {"type": frame.slot(name).type, "value": item["value"], "text": item["text"], "turn": state["turn"]}
        )
    del state["entities"][: max(0, len(state["entities"]) - MAX_ENTITIES)]


def record(state: dict[str, Any], parse: Parse, changed: dict[str, Any], action: str) -> None:
    state["tried"].append(
        {"turn": state["turn"], "intent": parse.intent, "acts": parse.acts, "filled": changed, "action": action}
    )
    del state["tried"][: max(0, len(state["tried"]) - MAX_TRIED)]
