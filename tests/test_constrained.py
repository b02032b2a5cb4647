"""Constrained decoding: the JSON-schema automaton accepts exactly documents of the schema, refuses
what it cannot guarantee, and under its token mask even a random model writes only such documents."""

from __future__ import annotations

import json

import pytest

from llm_tiny import tiny_backend
from rejoinder.errors import ConfigError
from rejoinder.llm.constrained import JsonGrammar
from rejoinder.llm.generation import GenerationParams, drain

ORDER = {
    "type": "object",
    "properties": {
        "item": {"type": "string", "minLength": 1, "maxLength": 8},
        "count": {"type": "integer"},
        "price": {"type": "number"},
        "gift": {"type": "boolean"},
        "note": {"type": ["string", "null"], "maxLength": 5},
        "size": {"enum": ["S", "M", "L", 42]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "minItems": 1, "maxItems": 2},
    },
    "required": ["item", "count"],
    "additionalProperties": False,
}


def check_order(data: object) -> None:
    """What the schema above asks of a document (there is no JSON Schema validator here)."""
    assert isinstance(data, dict) and list(data)[:2] == ["item", "count"]
    assert set(data) <= set(ORDER["properties"])
    assert isinstance(data["item"], str) and 1 <= len(data["item"]) <= 8
    assert isinstance(data["count"], int) and not isinstance(data["count"], bool)
    assert isinstance(data.get("price", 0.0), int | float) and isinstance(data.get("gift", True), bool)
    assert data.get("note") is None or (isinstance(data["note"], str) and len(data["note"]) <= 5)
    assert data.get("size", "S") in ("S", "M", "L", 42)
    tags = data.get("tags", ["x"])
    assert 1 <= len(tags) <= 2 and all(isinstance(t, str) and len(t) <= 4 for t in tags)


@pytest.mark.parametrize(
    "document",
    [
        {"item": "tea", "count": 2},
        {"item": "tea", "count": -10, "price": 3.25, "gift": False, "note": None, "size": 42, "tags": ["a", "bc"]},
        {"item": "ёжик", "count": 0, "tags": ["hot"], "size": "M", "note": "warm"},
    ],
)
def test_documents_of_the_schema_are_accepted_written_as_json_dumps_writes_them(document):
    grammar = JsonGrammar(ORDER)
    for text in (
        json.dumps(document, ensure_ascii=False),
        json.dumps(document, ensure_ascii=False, separators=(",", ":")),
    ):
        assert grammar.accepts(text), text
        assert all(grammar.accepts_prefix(text[:n]) for n in range(len(text) + 1))
        assert not any(grammar.accepts(text[:n]) for n in range(len(text)))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"count": 2, "item": "tea"}', "required properties in another order"),
        ('{"item": "tea"}', "a required property missing"),
        ('{"item": "tea", "count": 2, "colour": "red"}', "a property the schema does not have"),
        ('{"item": "tea", "count": 2, "gift": true, "gift": false}', "a property twice"),
        ('{"item": "", "count": 2}', "shorter than minLength"),
        ('{"item": "teapots!!", "count": 2}', "longer than maxLength"),
        ('{"item": "t\\"ea", "count": 2}', "an escape"),
        ('{"item": "tea", "count": 01}', "a leading zero"),
        ('{"item": "tea", "count": 2.5}', "a fraction in an integer"),
        ('{"item": "tea", "count": 2, "size": "XL"}', "outside the enum"),
        ('{"item": "tea", "count": 2, "tags": []}', "fewer items than minItems"),
        ('{"item": "tea", "count": 2, "tags": ["a", "b", "c"]}', "more items than maxItems"),
        ('{"item": "tea", "count": 2,}', "a trailing comma"),
        ('{"item":  "tea", "count": 2}', "two spaces"),
        ('{"item": "tea", "count": 2}\n', "text after the document"),
    ],
)
def test_what_the_schema_forbids_is_refused(text, why):
    assert not JsonGrammar(ORDER).accepts(text), why


def test_alternatives_are_followed_side_by_side_until_the_text_tells_them_apart():
    grammar = JsonGrammar({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 3}, {"type": "null"}]})
    assert all(grammar.accepts(t) for t in ("12", '"abc"', "null", "-7"))
    assert not any(grammar.accepts(t) for t in ('"abcd"', "nul", "1.5", "[]"))


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}}, "#/properties/code"),
        ({"$ref": "#/$defs/x"}, "$ref"),
        ({"oneOf": [{"type": "string"}]}, "oneOf"),
        ({"type": "integer", "minimum": 3}, "minimum"),
        ({"type": "date"}, "type 'date'"),
    ],
)
def test_a_keyword_that_cannot_be_guaranteed_is_refused_with_its_place(schema, named):
    with pytest.raises(ConfigError, match="JSON schema") as info:
        JsonGrammar(schema)
    assert named in str(info.value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_random_model_under_the_mask_writes_only_documents_of_the_schema(tmp_path, seed):
    backend = tiny_backend(tmp_path, seed=seed)
    messages = [{"role": "user", "content": "An order, please"}]
    for temperature in (1.5, 0.7, 0.0):
        params = GenerationParams(max_new_tokens=160, temperature=temperature, top_p=1.0, seed=seed)
        text, finish = drain(backend.stream_chat(messages, params, json_schema=ORDER))
        assert finish.reason == "stop", text  # the document ended and EOS was let through
        check_order(json.loads(text))


def test_log_probabilities_come_with_each_token_of_a_constrained_reply(tmp_path):
    backend = tiny_backend(tmp_path)
    stream = backend.stream_chat([{"role": "user", "content": "Hi"}], GenerationParams(8, temperature=0), logprobs=True)
    text, finish = drain(stream)
    assert finish.logprobs is not None and len(finish.logprobs) == finish.tokens
    assert "".join(token.text for token in finish.logprobs) == text
    assert all(token.logprob <= 0.0 for token in finish.logprobs)
