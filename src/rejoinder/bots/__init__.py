"""Bots by name: the registry, shared bot instances and bot configuration files.

Bots register through the ``rejoinder.bots`` entry-point group, so a package of your own can add
bots that every Rejoinder front end (CLI, server) then offers::

    [project.entry-points."rejoinder.bots"]
    mybot = "mypackage.bots:create_mybot"

A factory is a callable taking the bot's options as keyword arguments and returning a
:class:`~rejoinder.dialogue.Bot`; it declares its options with :func:`rejoinder.options.declare`
and receives them converted to their types. A factory parameter named ``store`` is not an option:
it receives the conversation store.

A :class:`BotPool` builds each (bot, options) once and hands the same instance to every
conversation that uses it: one model, one index, one decoding loop for all of them.

A bot configuration file (YAML, JSON or TOML) names the bot and its options::

    bot: eliza
    options:
      script: ./my_script.txt
      punctuation: modern
"""

from __future__ import annotations

import inspect
import json
import threading
import tomllib
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rejoinder.dialogue import Bot
from rejoinder.errors import SourceError, UnknownBot
from rejoinder.options import Option, check_options, declared_options, json_schema

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

    def options(self) -> tuple[Option, ...]:
        """The options the factory accepts, with their types, defaults and who may set them."""
        return declared_options(self.load())

    def option_names(self) -> list[str]:
        return [o.name for o in self.options()]

    def wants_store(self) -> bool:
        return "store" in inspect.signature(self.load()).parameters

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of this bot's options."""
        return json_schema(self.name, self.options(), self.description)

    def check(
        self,
        options: Mapping[str, Any] | None,
        *,
        where: Mapping[str, str] | None = None,
        base: Path | None = None,
        client: bool = False,
    ) -> dict[str, Any]:
        """``options`` converted to their types, with every default filled in (a canonical form)."""
        declared = self.options()
        given = check_options(self.name, declared, dict(options or {}), where=where, base=base, client=client)
        return {o.name: given.get(o.name, o.default) for o in declared}


@cache
def available_bots() -> dict[str, BotEntry]:
    """Every registered bot, by name."""
    found = {ep.name: BotEntry(ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return dict(sorted(found.items()))


def bot_entry(name: str) -> BotEntry:
    bots = available_bots()
    entry = bots.get(name)
    if entry is None:
        raise UnknownBot(name, list(bots))
    return entry


def create_bot(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    store: Any = None,
    where: Mapping[str, str] | None = None,
    base: Path | None = None,
    client: bool = False,
) -> Bot:
    """Build a new bot registered as ``name``; unknown names and bad options are errors.

    Front ends use :class:`BotPool` instead, which builds each (bot, options) once.
    """
    entry = bot_entry(name)
    converted = entry.check(options, where=where, base=base, client=client)
    return _build(entry, converted, store)


def _build(entry: BotEntry, converted: dict[str, Any], store: Any) -> Bot:
    arguments = dict(converted)
    if entry.wants_store():
        arguments["store"] = store
    return entry.load()(**arguments)


@dataclass
class BotPool:
    """One bot instance per (bot, options), built on first use and shared by every conversation.

    Bots keep nothing per conversation (everything lives in ``dialogue.state``), so one instance
    serves any number of conversations, from any number of threads. Building is serialised per
    key: two conversations asking for the same new bot at once get the same instance.
    """

    store: Any = None
    _bots: dict[tuple[str, str], Bot] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _building: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)

    @staticmethod
    def key(name: str, converted: Mapping[str, Any]) -> tuple[str, str]:
        return name, json.dumps(converted, sort_keys=True, default=str)

    def get(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        where: Mapping[str, str] | None = None,
        base: Path | None = None,
        client: bool = False,
    ) -> tuple[Bot, dict[str, Any]]:
        """The shared bot for ``name`` with ``options``, and the options in canonical form (to store)."""
        entry = bot_entry(name)
        converted = entry.check(options, where=where, base=base, client=client)
        key = self.key(name, converted)
        with self._lock:
            bot = self._bots.get(key)
            if bot is not None:
                return bot, converted
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                bot = self._bots.get(key)
            if bot is None:
                bot = _build(entry, converted, self.store)
                with self._lock:
                    self._bots[key] = bot
                    self._building.pop(key, None)
        return bot, converted

    def bots(self) -> list[Bot]:
        with self._lock:
            return list(self._bots.values())

    def close(self) -> None:
        """Release every bot that holds resources (models, threads, files)."""
        with self._lock:
            bots, self._bots = list(self._bots.values()), {}
        for bot in bots:
            close = getattr(bot, "close", None)
            if callable(close):
                close()


_POOLS: weakref.WeakKeyDictionary[Any, BotPool] = weakref.WeakKeyDictionary()
_POOLS_LOCK = threading.Lock()


def pool_for(store: Any) -> BotPool:
    """The process's pool of bots working on ``store`` (one per store object)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(store)
        if pool is None:
            pool = _POOLS[store] = BotPool(store)
        return pool


# -- configuration files ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BotConfig:
    """A bot configuration file, read: the bot, its options as written, and where each one is."""

    bot: str
    options: dict[str, Any]
    where: dict[str, str]
    """Each option's place in the file (``mybot.yaml:4``, or the file's name for JSON and TOML)."""
    base: Path
    """The file's folder: relative paths in options are resolved against it."""


def load_bot_config(path: str | Path) -> BotConfig:
    """Read a bot configuration file (YAML, JSON or TOML); errors name the file, line and key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read the bot configuration: {exc.strerror}", path=p) from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 text (byte {exc.start})", path=p) from None
    suffix = p.suffix.lower()
    lines: dict[str, int] = {}
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data, lines = _yaml_with_lines(text)
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
    where = {str(k): f"{p}:{lines[k]}" if k in lines else str(p) for k in options}
    return BotConfig(name, {str(k): v for k, v in options.items()}, where, p.parent.resolve())


def _yaml_with_lines(text: str) -> tuple[Any, dict[str, int]]:
    """The YAML document and the line of each key under ``options``."""
    import yaml

    data = yaml.safe_load(text)
    lines: dict[str, int] = {}
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "options" and isinstance(value, yaml.MappingNode):
                for option_key, _ in value.value:
                    lines[str(option_key.value)] = option_key.start_mark.line + 1
    return data, lines
