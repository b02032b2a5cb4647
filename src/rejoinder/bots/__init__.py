"""Bots by name: the registry and bot configuration files.

Bots register through the ``rejoinder.bots`` entry-point group, so a package of your own can add
bots that every Rejoinder front end (CLI, server) then offers::

    [project.entry-points."rejoinder.bots"]
    mybot = "mypackage.bots:create_mybot"

A factory is a callable taking the bot's options as keyword arguments and returning a
:class:`~rejoinder.dialogue.Bot`. A bot configuration file (YAML, JSON or TOML) names the bot and
its options::

    bot: eliza
    options:
      script: ./my_script.txt
      punctuation: modern
"""

from __future__ import annotations

import inspect
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rejoinder.dialogue import Bot
from rejoinder.errors import ConfigError, SourceError, UnknownBot

ENTRY_POINT_GROUP = "rejoinder.bots"


@dataclass(frozen=True)
class BotEntry:
    name: str
    target: str
    """``module:function`` of the factory."""

    def load(self) -> Callable[..., Bot]:
        module_name, _, attr = self.target.partition(":")
        module = __import__(module_name, fromlist=[attr])
        return getattr(module, attr)

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.load()) or ""
        return doc.splitlines()[0] if doc else ""

    def options(self) -> dict[str, Any]:
        """The options the factory accepts, with their defaults (``inspect.Parameter.empty`` if required).

        A factory parameter named ``store`` is not an option: it receives the conversation store.
        """
        params = inspect.signature(self.load()).parameters
        return {
            name: p.default
            for name, p in params.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name != "store"
        }

    def wants_store(self) -> bool:
        return "store" in inspect.signature(self.load()).parameters


@cache
def available_bots() -> dict[str, BotEntry]:
    """Every registered bot, by name."""
    found = {ep.name: BotEntry(ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return dict(sorted(found.items()))


def create_bot(name: str, options: dict[str, Any] | None = None, *, store: Any = None) -> Bot:
    """Build the bot registered as ``name`` with ``options``; unknown names and options are errors.

    ``store`` (a :class:`~rejoinder.store.Store`) is handed to bots that keep data of their own.
    """
    bots = available_bots()
    entry = bots.get(name)
    if entry is None:
        raise UnknownBot(name, list(bots))
    options = dict(options or {})
    accepted = entry.options()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"bot {name!r} has no option {', '.join(unknown)}; its options are: {', '.join(accepted) or 'none'}"
        )
    if entry.wants_store():
        options["store"] = store
    return entry.load()(**options)


def as_bool(name: str, value: Any) -> bool:
    """An option value as a boolean (options from the command line arrive as text)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"option {name}={value!r}: expected true or false")


def as_number(name: str, value: Any, kind: type[int] | type[float]) -> Any:
    """An option value as an int or float, or a ConfigError naming the option."""
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    try:
        return kind(str(value).strip())
    except ValueError:
        raise ConfigError(
            f"option {name}={value!r}: expected {'a whole number' if kind is int else 'a number'}"
        ) from None


def load_bot_config(path: str | Path) -> tuple[str, dict[str, Any]]:
    """Read a bot configuration file; relative paths in options resolve against the file's folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read the bot configuration: {exc.strerror}", path=p) from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"invalid JSON: {exc.msg}", path=p, line=exc.lineno, column=exc.colno) from None
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"invalid TOML: {exc}", path=p) from None
    except Exception as exc:  # yaml.YAMLError and friends
        raise SourceError.from_yaml(exc, p, "invalid YAML") from None
    if not isinstance(data, dict):
        raise SourceError("expected a mapping with the keys 'bot' and 'options'", path=p)
    unknown = sorted(set(data) - {"bot", "options"})
    if unknown:
        raise SourceError(f"unknown key(s) {', '.join(unknown)}; expected 'bot' and 'options'", path=p)
    name = data.get("bot")
    if not isinstance(name, str) or not name:
        raise SourceError("the key 'bot' must name a bot (see `rejoinder bots`)", path=p)
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise SourceError("the key 'options' must be a mapping of option names to values", path=p)
    for key in ("script", "path", "model"):
        value = options.get(key)
        if isinstance(value, str) and ("/" in value or value.endswith(".txt")):
            candidate = (p.parent / value).expanduser()
            if not Path(value).is_absolute():
                options[key] = str(candidate.resolve())
    return name, options
