"""Reading configuration files: one YAML reader whose errors name the file, the line and what is expected.

Shared by the training steps' configs, the pipeline and the server's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rejoinder.errors import ConfigError


def read_yaml_mapping(path: Path, expected: str = "a mapping of settings") -> dict[str, Any]:
    """The YAML file ``path`` as a mapping (empty file: {}); errors name the file, the line and what is expected."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config {path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected {expected}, got {type(data).__name__}")
    return data
