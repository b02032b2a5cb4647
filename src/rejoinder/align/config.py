"""Typed training configs: one dataclass per step, read from YAML, overridden by command-line flags.

Every field of a step's config is declared once, with its type, default and help text
(``field(metadata={"help": ...})``); the YAML file, the flags of ``rejoinder train <step>`` and the
``config.yaml`` written into each run folder are all made from that declaration. An unknown key,
or a value of the wrong type, is an error naming the file, the key and what is accepted.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from rejoinder.configfile import read_yaml_mapping
from rejoinder.errors import ConfigError

C = TypeVar("C")


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A config field with its help text (lists and other mutable defaults are copied per instance)."""
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


PRECISION_HELP = (
    "auto (bfloat16 mixed precision where the hardware computes it natively: a GPU with bf16, a CPU with "
    "AVX512-BF16 or AMX; else fp32), bf16 or fp32."
)


def native_bf16() -> bool:
    """Whether this machine computes bfloat16 natively (bf16 autocast is then ~3x faster on a CPU, measured)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def use_bf16(precision: str) -> bool:
    """Whether a step trains in bf16 mixed precision, for its ``precision`` setting."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"precision {precision!r}: expected auto, bf16 or fp32")
    return precision == "bf16" or (precision == "auto" and native_bf16())


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _plain(kind: Any) -> tuple[Any, bool]:
    """The type a field holds, and whether it may be None."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return kind, False


def coerce(kind: Any, value: Any, where: str) -> Any:
    """``value`` as a field of type ``kind``; strings (from flags) are parsed, others checked."""
    kind, optional = _plain(kind)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    origin = typing.get_origin(kind)
    if origin is list:
        (item,) = typing.get_args(kind) or (str,)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if kind is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    return value


def build(cls: type[C], values: Mapping[str, Any], where: str) -> C:
    """An instance of the config dataclass ``cls`` from ``values``; unknown keys are refused by name."""
    kinds = field_types(cls)
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; the keys are: {', '.join(kinds)}")
    parsed = {name: coerce(kinds[name], value, f"{where}: {name}") for name, value in values.items()}
    config = cls(**parsed)
    check = getattr(config, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return config


def load_config(cls: type[C], path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> C:
    """The config from the YAML file ``path`` (a mapping of field names), then ``overrides`` on top."""
    values: dict[str, Any] = {}
    if path is not None:
        data = read_yaml_mapping(path)
        values.update({str(k).replace("-", "_"): v for k, v in data.items()})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build(cls, values, f"config {path}" if path else "config")


def to_plain(config: Any) -> dict[str, Any]:
    """The config as YAML-ready values (paths as strings)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def save_config(config: Any, path: Path) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_plain(config), sort_keys=False, allow_unicode=True), encoding="utf-8")


def help_of(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
