"""Typed bot options: each bot declares its options once; the registry checks and converts values.

A bot factory declares what it accepts with :func:`declare`::

    @declare(
        Option("script", "path", None, "ELIZA script file in the 1966 format"),
        Option("punctuation", "choice", "1966", "how ? and ! are read", choices=("1966", "modern")),
        Option("friendly", "bool", False, "sentence case and final punctuation"),
    )
    def create(script: Path | None = None, punctuation: str = "1966", friendly: bool = False) -> Bot: ...

and receives values already converted to their type. Values arrive as text from the command
line, as YAML/JSON/TOML scalars from a configuration file, or as JSON from a network client;
:func:`check_options` converts them all the same way and reports every bad option at once, each
with where it came from and what is accepted.

Who may set an option: anything that names a file, a folder, a URL or a model (kinds ``path``,
``url``, ``model``) is for the operator only, since a network client could otherwise make the
server read its files or send its requests anywhere; other options are client-settable unless
declared otherwise. :func:`json_schema` describes a bot's options for front ends.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from rejoinder.errors import ConfigError

OptionKind = Literal["bool", "int", "float", "text", "choice", "path", "url", "model", "json"]
OPERATOR_KINDS = frozenset({"path", "url", "model"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Option:
    """One option of a bot: its name, kind, default, help text and who may set it."""

    name: str
    kind: OptionKind
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    """For ``choice``: the values accepted; for ``path`` and ``model``: shipped names accepted besides paths."""
    minimum: float | None = None
    maximum: float | None = None
    client: bool | None = None
    """May a client (an HTTP caller) set it? Default: yes, except for paths, URLs and models."""
    schema: dict[str, Any] = field(default_factory=dict)
    """For kind ``json``: the JSON Schema of the value (shown to front ends; checked by the factory)."""
    required: bool = False
    """The bot cannot start without it (a server serving every bot by default leaves such a bot out)."""

    @property
    def client_settable(self) -> bool:
        return self.kind not in OPERATOR_KINDS if self.client is None else self.client

    # -- conversion ----------------------------------------------------------------------------------
    def convert(self, value: Any, *, base: Path | None = None) -> Any:
        """``value`` as this option's type, or ValueError saying what is accepted.

        ``base`` is the folder a relative path is resolved against (a configuration file's own).
        """
        if value is None:
            if self.default is None:
                return None
            raise ValueError(f"expected {self.accepted()}")
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind in ("int", "float"):
            if self.default is None and isinstance(value, str) and not value.strip():
                return None  # "-o seed=" leaves an optional number unset
            number = self._number(value)
            if self.minimum is not None and number < self.minimum:
                raise ValueError(f"expected {self.accepted()}")
            if self.maximum is not None and number > self.maximum:
                raise ValueError(f"expected {self.accepted()}")
            return number
        if kind == "choice":
            text = str(value).strip()
            if text not in self.choices:
                raise ValueError(f"expected one of: {', '.join(self.choices)}")
            return text
        if kind == "json":
            if isinstance(value, str):
                stripped = value.strip()
                if stripped[:1] in ("[", "{"):
                    try:
                        return json.loads(stripped)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"invalid JSON at column {exc.colno}: {exc.msg}") from None
            return value
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"expected {self.accepted()}, not {type(value).__name__}")
        text = str(value)
        if kind in ("path", "model") and text in self.choices:
            return text  # a shipped name (a script, a model), not a path
        if kind == "path" and text.partition(":")[0] in self.choices and ":" in text:
            return text  # a shipped name with its argument (chatterbot:russian)
        if kind == "path":
            if not text.strip():
                return None if self.default is None else self.default
            path = Path(text).expanduser()
            if base is not None and not path.is_absolute():
                path = base / path
            return str(path.resolve()) if base is not None else str(path)
        if kind == "model" and base is not None and ("/" in text or text.endswith(".gguf")):
            path = Path(text).expanduser()
            return str((base / path).resolve()) if not path.is_absolute() else str(path)
        return text

    def _number(self, value: Any) -> int | float:
        if isinstance(value, bool):
            raise ValueError(f"expected {self.accepted()}")
        try:
            number = int(str(value).strip()) if self.kind == "int" else float(str(value).strip())
        except ValueError:
            raise ValueError(f"expected {self.accepted()}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"expected {self.accepted()}")
        return number

    def accepted(self) -> str:
        """What this option accepts, in words."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of: " + ", ".join(self.choices)
        if self.kind in ("path", "model") and self.choices:
            noun = "a file path" if self.kind == "path" else "a model path"
            return f"{noun} or one of: {', '.join(self.choices)}"
        if self.kind in ("int", "float"):
            noun = "a whole number" if self.kind == "int" else "a number"
            if self.minimum is not None and self.maximum is not None:
                return f"{noun} from {self.minimum:g} to {self.maximum:g}"
            if self.minimum is not None:
                return f"{noun} of at least {self.minimum:g}"
            if self.maximum is not None:
                return f"{noun} of at most {self.maximum:g}"
            return noun
        return {"path": "a file or folder path", "url": "a URL", "model": "a model name or path"}.get(
            self.kind, "text" if self.kind == "text" else "a JSON value"
        )

    def json_schema(self) -> dict[str, Any]:
        """This option as a JSON Schema property (with ``x-client-settable``)."""
        types = {"bool": "boolean", "int": "integer", "float": "number", "json": None}
        schema: dict[str, Any] = dict(self.schema) if self.kind == "json" else {"type": types.get(self.kind, "string")}
        if self.kind in ("path", "url", "model"):
            schema["format"] = {"path": "path", "url": "uri", "model": "model"}[self.kind]
        if self.choices and self.kind == "choice":
            schema["enum"] = list(self.choices)
        elif self.choices:
            schema["examples"] = list(self.choices)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.default is not None:
            schema["default"] = self.default
        if self.help:
            schema["description"] = self.help
        schema["x-client-settable"] = self.client_settable
        return schema


def declare(*options: Option) -> Callable[[F], F]:
    """Attach option declarations to a bot factory (see the module docstring).

    The factory is wrapped so that a direct call (a test, an embedding program) is checked and
    converted exactly as a call through the registry is.
    """

    def attach(factory: F) -> F:
        names = [o.name for o in options]
        if len(set(names)) != len(names):
            raise TypeError(f"{factory.__qualname__}: an option is declared twice: {names}")
        signature = inspect.signature(factory)
        params = signature.parameters
        missing = [n for n in names if n not in params]
        if missing:
            raise TypeError(f"{factory.__qualname__}: declared options {missing} are not parameters")
        differ = [o.name for o in options if params[o.name].default != o.default]
        if differ:
            raise TypeError(f"{factory.__qualname__}: the declared defaults of {differ} differ from the signature's")

        @functools.wraps(factory)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            given = {k: v for k, v in bound.arguments.items() if k in names}
            bound.arguments.update(check_options(factory.__name__, options, given))
            return factory(*bound.args, **bound.kwargs)

        checked.__rejoinder_options__ = tuple(options)  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return attach


def declared_options(factory: Callable[..., Any]) -> tuple[Option, ...]:
    """A factory's declared options; for an undeclared (third-party) factory, options read off its
    signature: kinds from the defaults, and none of them client-settable."""
    declared = getattr(factory, "__rejoinder_options__", None)
    if declared is not None:
        return declared
    found = []
    for name, p in inspect.signature(factory).parameters.items():
        if name == "store" or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        kind: OptionKind = (
            "bool"
            if isinstance(default, bool)
            else "int"
            if isinstance(default, int)
            else "float"
            if isinstance(default, float)
            else "text"
            if isinstance(default, str) or default is None
            else "json"
        )
        found.append(Option(name, kind, default, client=False))
    return tuple(found)


def check_options(
    bot: str,
    options: tuple[Option, ...],
    given: Mapping[str, Any],
    *,
    where: Mapping[str, str] | None = None,
    base: Path | None = None,
    client: bool = False,
) -> dict[str, Any]:
    """``given`` checked and converted; every problem reported at once in one :class:`ConfigError`.

    ``where`` names each value's origin (``mybot.yaml:4``) for the message; ``base`` resolves
    relative paths; ``client=True`` refuses options only the operator may set.
    """
    by_name = {o.name: o for o in options}
    problems: list[str] = []
    converted: dict[str, Any] = {}
    for name, value in given.items():
        origin = f" ({where[name]})" if where and name in where else ""
        option = by_name.get(name)
        if option is None:
            accepted = ", ".join(by_name) or "none"
            problems.append(f"no option {name!r}{origin}; its options are: {accepted}")
            continue
        if client and not option.client_settable:
            problems.append(f"option {name!r}{origin} can be set only by the operator, not by a client")
            continue
        try:
            converted[name] = option.convert(value, base=base)
        except ValueError as exc:
            shown = value if len(repr(value)) <= 80 else f"{str(value)[:77]}..."
            problems.append(f"option {name}={shown!r}{origin}: {exc}")
    if problems:
        raise ConfigError(f"bot {bot!r}: " + "; ".join(problems))
    return converted


def json_schema(bot: str, options: tuple[Option, ...], description: str = "") -> dict[str, Any]:
    """The JSON Schema of a bot's options object."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"options of {bot}",
        "description": description,
        "type": "object",
        "properties": {o.name: o.json_schema() for o in options},
        **({"required": required} if (required := [o.name for o in options if o.required]) else {}),
        "additionalProperties": False,
    }
