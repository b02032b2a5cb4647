"""Slot frames, declared as data (JSON, or YAML), validated before a bot starts.

The minimal frame, which loads unchanged::

    {"name": "travel",
     "slots": [{"name": "from", "type": "city", "is_required": false},
               {"name": "to", "type": "city", "prompt": "What city are you travelling to?", "is_required": true},
               {"name": "date", "type": "date", "prompt": "When are you travelling?", "is_required": true}],
     "submit": {"url": "https://travel.example.ru/dialog/"},
     "confirmation": {"is_required": true, "prompt": "Tickets from {from} to {to} on {date}"}}

Templates: ``{slot}`` inserts a value; ``[, reason: {reason}]`` is said only when the slot has one.
Compatible extensions: ``intents`` that start the frame, slot ``role`` (so one city does not fill
both ``from`` and ``to``), ``choices`` with synonyms, ``pattern``, ``lookup`` tables, ``default``,
``min``/``max``, submit ``method``/``headers``/``timeout_s``/``retries`` or a Python ``callable``,
and templates for what the bot says when the backend answers. The JSON Schema is
``frame.schema.json`` beside this file (``rejoinder frames schema`` prints it). A frame that
does not fit is refused with the file, the JSON pointer of the fault and the reason.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rejoinder.errors import SourceError

SlotType = Literal[
    "text",
    "city",
    "location",
    "date",
    "time",
    "datetime",
    "number",
    "integer",
    "money",
    "phone",
    "email",
    "card_number",
    "account_number",
    "person",
    "enum",
    "regex",
    "lookup",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choice(_Strict):
    """One value of an ``enum`` slot, with the words users may say for it."""

    value: str
    synonyms: list[str] = Field(default_factory=list)


class Slot(_Strict):
    name: str = Field(description="Identifier used in templates, e.g. {to}.")
    type: SlotType = Field(default="text", description="How a value is recognised and normalised.")
    prompt: str | None = Field(default=None, description="The question that asks for this slot.")
    is_required: bool = Field(default=False)
    role: str | None = Field(
        default=None,
        description="Disambiguates slots of the same type, e.g. 'origin' / 'destination' for two cities.",
    )
    choices: list[str | Choice] | None = Field(default=None, description="Allowed values of an enum slot.")
    pattern: str | None = Field(default=None, description="Regular expression a regex slot's value must match.")
    lookup: list[str] | str | None = Field(
        default=None, description="Values of a lookup slot: a list, or a path to a file with one value per line."
    )
    default: Any = Field(default=None, description="Value used when the user never gives one.")
    min: float | None = None
    max: float | None = None
    prefer: Literal["future", "past"] = Field(
        default="future",
        description=(
            "How a date said without its week, month or year resolves: 'future' (the default) reads"
            " 'Monday' and '5 March' as the next one; 'past' as the last one, for events that happened"
        ),
    )

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be an identifier: letters, digits and _, not starting with a digit")
        return value

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _type_needs(self) -> Slot:
        if self.type == "enum" and not self.choices:
            raise ValueError("an enum slot needs 'choices'")
        if self.type == "regex" and not self.pattern:
            raise ValueError("a regex slot needs 'pattern'")
        if self.type == "lookup" and not self.lookup:
            raise ValueError("a lookup slot needs 'lookup' (a list of values or a file path)")
        if self.is_required and self.default is None and not self.prompt:
            raise ValueError("a required slot without a default needs a 'prompt' to ask for it")
        return self

    def choice_values(self) -> list[Choice]:
        return [c if isinstance(c, Choice) else Choice(value=c) for c in self.choices or []]


class Submit(_Strict):
    url: str | None = Field(default=None, description="HTTP endpoint that receives the filled frame as JSON.")
    callable: str | None = Field(default=None, description="Python 'module:function' called with the filled frame.")
    method: Literal["POST", "PUT", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    success_prompt: str = Field(
        default="Done.", description="Said after a successful submit; may use {slot} and {result.x}."
    )
    failure_prompt: str = Field(default="Sorry, that did not go through. Please try again later.")

    @model_validator(mode="after")
    def _one_target(self) -> Submit:
        if bool(self.url) == bool(self.callable):
            raise ValueError("give exactly one of 'url' and 'callable'")
        if self.url and not re.match(r"^https?://", self.url):
            raise ValueError("'url' must start with http:// or https://")
        if self.callable and not re.match(r"^[\w.]+:[\w]+$", self.callable):
            raise ValueError("'callable' must look like 'package.module:function'")
        return self


class Confirmation(_Strict):
    is_required: bool = False
    prompt: str | None = Field(
        default=None, description="Template read back before submitting, e.g. 'Tickets to {to}'."
    )

    @model_validator(mode="after")
    def _prompt_when_required(self) -> Confirmation:
        if self.is_required and not self.prompt:
            raise ValueError("a required confirmation needs a 'prompt'")
        return self


class Frame(_Strict):
    name: str
    description: str | None = None
    intents: list[str] = Field(default_factory=list, description="Intents that start this frame.")
    slots: list[Slot]
    submit: Submit | None = None
    confirmation: Confirmation = Field(default_factory=Confirmation)

    def problems(self) -> list[tuple[str, str]]:
        """(JSON pointer, reason) of what is wrong across fields: duplicate names, unknown template fields."""
        found = []
        names: set[str] = set()
        for i, slot in enumerate(self.slots):
            if slot.name in names:
                found.append((f"/slots/{i}/name", f"slot name {slot.name!r} is used twice"))
            names.add(slot.name)
        templates = {"/confirmation/prompt": self.confirmation.prompt}
        if self.submit:
            templates["/submit/success_prompt"] = self.submit.success_prompt
        for pointer, template in templates.items():
            try:
                fields = template_fields(template or "")
            except ValueError as exc:
                found.append((pointer, f"is not a valid template: {exc}"))
                continue
            for field in fields:
                root = field.split(".")[0].split("[")[0]
                if root not in names and not (pointer.startswith("/submit") and root == "result"):
                    found.append((pointer, f"refers to {{{field}}}, which is not a slot of this frame"))
        return found

    def slot(self, name: str) -> Slot:
        for slot in self.slots:
            if slot.name == name:
                return slot
        raise KeyError(name)


def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def json_schema() -> dict[str, Any]:
    schema = Frame.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Rejoinder slot frame"
    return schema


def _pointer(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if not (isinstance(p, str) and p in {"str", "Choice", "list[str]"})]
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts) if parts else "/"


def parse_frame(data: Any, path: str | Path | None = None) -> Frame:
    """Validate frame data; errors name the JSON pointer of the fault."""
    try:
        frame = Frame.model_validate(data)
    except ValidationError as exc:
        # Of the alternatives pydantic reports (one per branch of a union), the deepest is the useful one.
        error = max(exc.errors(), key=lambda e: len(e["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (see frame.schema.json for the accepted ones)"
        raise SourceError(f"{_pointer(error['loc'])}: {message}", path=path) from None
    problems = frame.problems()
    if problems:
        pointer, message = problems[0]
        raise SourceError(f"{pointer}: {message}", path=path)
    return frame


def load_frame(path: str | Path) -> Frame:
    """Read a frame from a JSON (or YAML) file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read the frame: {exc.strerror}", path=p) from None
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SourceError.from_yaml(exc, p) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"not valid JSON: {exc.msg}", path=p, line=exc.lineno, column=exc.colno) from None
    return parse_frame(data, p)
