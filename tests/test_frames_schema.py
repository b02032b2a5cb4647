"""Frames are data: the published shape loads unchanged; a bad frame is refused with file, pointer and reason."""

from __future__ import annotations

import json

import pytest

from rejoinder.bots.frames.schema import json_schema, load_frame, parse_frame
from rejoinder.errors import SourceError

TRAVEL = {
    "name": "travel",
    "slots": [
        {"name": "from", "type": "city", "is_required": False},
        {"name": "to", "type": "city", "prompt": "What city are you travelling to?", "is_required": True},
        {"name": "date", "type": "date", "prompt": "When are you travelling?", "is_required": True},
    ],
    "submit": {"url": "https://travel.example.ru/dialog/"},
    "confirmation": {"is_required": True, "prompt": "Tickets from {from} to {to} on {date}"},
}


def test_the_published_travel_frame_loads_unchanged(tmp_path):
    path = tmp_path / "travel.json"
    path.write_text(json.dumps(TRAVEL))
    frame = load_frame(path)
    assert [s.name for s in frame.slots] == ["from", "to", "date"]
    assert frame.slot("to").prompt == "What city are you travelling to?"
    assert frame.submit.url == "https://travel.example.ru/dialog/" and frame.submit.method == "POST"
    assert frame.confirmation.is_required


def test_yaml_frames_load_too(tmp_path):
    import yaml

    path = tmp_path / "travel.yaml"
    path.write_text(yaml.safe_dump(TRAVEL))
    assert load_frame(path).name == "travel"


@pytest.mark.parametrize(
    ("change", "pointer", "reason"),
    [
        (lambda f: f["slots"][0].update(typ="city"), "/slots/0/typ", "unknown key"),
        (lambda f: f["slots"][1].update(type="town"), "/slots/1/type", "Input should be"),
        (lambda f: f["slots"][2].pop("prompt"), "/slots/2", "needs a 'prompt'"),
        (lambda f: f["slots"].append({"name": "to"}), "/slots/3/name", "used twice"),
        (lambda f: f["confirmation"].update(prompt="Tickets to {too}"), "/confirmation/prompt", "{too}"),
        (lambda f: f["submit"].update(url="ftp://x"), "/submit", "http://"),
        (lambda f: f["slots"].append({"name": "kind", "type": "enum", "prompt": "?"}), "/slots/3", "choices"),
        (
            lambda f: f["slots"].append({"name": "x", "type": "regex", "pattern": "(", "prompt": "?"}),
            "/slots/3/pattern",
            "regular",
        ),
        (lambda f: f.pop("slots"), "/slots", "Field required"),
        (lambda f: f["slots"][0].update(name="1st"), "/slots/0/name", "identifier"),
    ],
)
def test_a_bad_frame_names_the_json_pointer_and_reason(tmp_path, change, pointer, reason):
    frame = json.loads(json.dumps(TRAVEL))
    change(frame)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(frame))
    with pytest.raises(SourceError) as info:
        load_frame(path)
    assert str(info.value).startswith(f"{path}: {pointer}: ")
    assert reason in str(info.value)


def test_broken_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n "slots": [}')
    with pytest.raises(SourceError) as info:
        load_frame(path)
    assert (info.value.line, info.value.column) == (2, 12)


def test_the_json_schema_is_published_and_current():
    from pathlib import Path

    import rejoinder.bots.frames.schema as module

    published = json.loads((Path(module.__file__).parent / "frame.schema.json").read_text())
    assert published == json_schema()
    assert "slots" in published["required"]


def test_extensions_load_roles_choices_and_callables():
    frame = parse_frame(
        {
            "name": "block_card",
            "intents": ["block_card", "lost_card"],
            "slots": [
                {"name": "card", "type": "enum", "prompt": "Which card?", "is_required": True,
                 "choices": ["debit", {"value": "credit", "synonyms": ["visa", "mastercard"]}]},
                {"name": "origin", "type": "city", "role": "origin"},
            ],
            "submit": {"callable": "rejoinder.bots.frames.examples.backend:handle", "retries": 2},
        }
    )  # fmt: skip
    assert [c.value for c in frame.slot("card").choice_values()] == ["debit", "credit"]
    assert frame.submit.callable.endswith(":handle")
