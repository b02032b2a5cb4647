"""The server's configuration: which bots it serves under which names, where it listens, who may call.

A YAML file (``rejoinder serve --config server.yaml``)::

    host: 127.0.0.1
    port: 8000
    keys: auto            # auto: required off loopback; required; off (any address, no keys - explicit)
    bots:
      - name: eliza       # the served name (the OpenAI API's "model"); the bot itself by default
      - name: assistant-sft
        bot: assistant
        options: {model: runs/x/sft}
        description: our SFT model

Options here are the operator's: they may name files, URLs and models, which clients never may.
Without a ``bots`` list every registered bot that starts on its defaults is served with them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rejoinder.errors import ConfigError, SourceError

KEYS_MODES = ("auto", "required", "off")


@dataclass(frozen=True)
class ServedBot:
    name: str
    """The name clients use (``model`` in the OpenAI API)."""
    bot: str
    """The registered bot it is."""
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    where: dict[str, str] = field(default_factory=dict)
    base: Path | None = None


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    keys: str = "auto"
    bots: list[ServedBot] = field(default_factory=list)
    max_message_chars: int = 8000
    max_body_bytes: int = 1_000_000
    max_n: int = 8
    requests_per_minute: int = 600
    streams_per_caller: int = 16
    request_timeout_s: float = 300.0
    """The longest one reply may take; it is then stopped (and stored as cancelled) and the client told so."""
    prepare: bool = True
    """Prepare every served bot in the background at start (the first requests get 503 until it is ready)."""
    arena: list[str] = field(default_factory=list)
    """The served bots the arena draws its two anonymous contestants from (empty: every served bot)."""
    arena_daily_cap: int = 100
    """The votes of one user on one UTC day that count on the leaderboard (the rest are kept, not counted)."""

    def keys_required(self) -> bool:
        if self.keys == "required":
            return True
        if self.keys == "off":
            return False
        return not is_loopback(self.host)

    def check(self) -> None:
        if self.keys not in KEYS_MODES:
            raise ConfigError(f"keys {self.keys!r}: expected one of {', '.join(KEYS_MODES)}")
        if self.request_timeout_s <= 0:
            raise ConfigError("request_timeout_s must be above 0")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port}: expected 1..65535")
        names = [b.name for b in self.bots]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ConfigError(f"bots: the name(s) {', '.join(doubled)} are served twice")
        if self.arena:
            served = set(names or [b.name for b in default_bots()])
            unknown = [n for n in self.arena if n not in served]
            if unknown:
                raise ConfigError(f"arena: {', '.join(unknown)} not served; served: {', '.join(sorted(served))}")
            if len(set(self.arena)) < 2:
                raise ConfigError("arena: name at least two served bots")
        if self.arena_daily_cap < 1:
            raise ConfigError("arena_daily_cap must be at least 1")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_bots() -> list[ServedBot]:
    """Every registered bot that starts on its defaults (``frames`` needs a domain file: ``bank`` and
    ``travel`` are it on the shipped domains)."""
    from rejoinder.bots import available_bots

    return [ServedBot(name, name, {}, entry.description) for name, entry in available_bots().items()
            if not any(option.required for option in entry.options())]  # fmt: skip


def load_server_config(path: str | Path) -> ServerConfig:
    """Read a server config (YAML); errors name the file and the key."""
    from rejoinder.configfile import read_yaml_mapping

    p = Path(path)
    data = read_yaml_mapping(p)
    known = {"host", "port", "keys", "bots", "max_message_chars", "max_body_bytes", "max_n", "requests_per_minute",
             "streams_per_caller", "request_timeout_s", "prepare", "arena", "arena_daily_cap"}  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise SourceError(f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}", path=p)
    config = ServerConfig()
    for key in known - {"bots"}:
        if key in data:
            expected = type(getattr(config, key))
            value = data[key]
            if expected is float and isinstance(value, int):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise SourceError(f"{key}: expected {expected.__name__}, got {value!r}", path=p)
            if expected is list and not all(isinstance(item, str) and item for item in value):
                raise SourceError(f"{key}: expected a list of served bot names, got {value!r}", path=p)
            setattr(config, key, list(value) if expected is list else value)
    bots = data.get("bots")
    if bots is not None:
        if not isinstance(bots, list) or not bots:
            raise SourceError("bots: expected a list of bots to serve", path=p)
        for i, item in enumerate(bots):
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise SourceError(f"bots[{i}]: expected a mapping with a 'name'", path=p)
            extra = sorted(set(item) - {"name", "bot", "options", "description"})
            if extra:
                raise SourceError(f"bots[{i}]: unknown key(s) {', '.join(extra)}", path=p)
            options = item.get("options") or {}
            if not isinstance(options, dict):
                raise SourceError(f"bots[{i}].options: expected a mapping", path=p)
            where = {str(k): f"{p}: bots[{i}].options.{k}" for k in options}
            config.bots.append(
                ServedBot(item["name"], str(item.get("bot") or item["name"]), dict(options),
                          str(item.get("description") or ""), where, p.parent.resolve())
            )  # fmt: skip
    try:
        config.check()
    except ConfigError as exc:
        raise SourceError(str(exc), path=p) from None
    return config
