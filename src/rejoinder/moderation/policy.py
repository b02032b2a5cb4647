"""Policy files: a moderator's settings as YAML (or JSON by extension), checked field by field.

See :meth:`rejoinder.moderation.Moderator.from_policy_file` for the keys. Errors name the file,
the field (``rules[2].pattern``) and, for YAML, the line, and say what was expected.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rejoinder.errors import SourceError
from rejoinder.moderation.rules import PatternRule
from rejoinder.moderation.words import SHIPPED_WORDLISTS, EntryError, parse_entry, read_text

_POLICY_KEYS = ("threshold", "model", "wordlists", "extra_words", "allow", "rules", "builtin_rules")
_RULE_KEYS = ("name", "pattern", "lang")
FieldPath = tuple[str | int, ...]


def _field_name(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "<top level>"


def _type_name(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}
    return names.get(type(value), f"a {type(value).__name__}")


def _yaml_line(text: str, path: FieldPath) -> int | None:
    """The line of a field in YAML (or JSON) text, found again with positions kept."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            pairs = [(k, v) for k, v in node.value if str(k.value) == str(part)]
            if not pairs:
                break
            node = pairs[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1


class _PolicyReader:
    """Checks a parsed policy file field by field; errors name the file, field and line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def error(self, field_path: FieldPath, message: str) -> SourceError:
        line = _yaml_line(self.text, field_path) if field_path else None
        return SourceError(f"{_field_name(field_path)}: {message}", path=self.path, line=line)

    def load(self) -> Any:
        if self.path.suffix.lower() == ".json":
            try:
                return json.loads(self.text)
            except json.JSONDecodeError as error:
                raise SourceError(
                    f"not valid JSON: {error.msg}", path=self.path, line=error.lineno, column=error.colno
                ) from None
        import yaml

        try:
            return yaml.safe_load(self.text)
        except yaml.YAMLError as error:
            raise SourceError.from_yaml(error, self.path) from None

    def strings(self, value: Any, field_path: FieldPath, what: str) -> list[str]:
        if not isinstance(value, list):
            raise self.error(field_path, f"expected a list of {what}, found {_type_name(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(
                    (*field_path, i),
                    f"expected {what[:-1] if what.endswith('s') else what} as a string, found {_type_name(item)}",
                )
        return value

    def entries(self, value: Any, field_path: FieldPath, *, allow_term: bool = False) -> list[str]:
        items = self.strings(value, field_path, "terms" if allow_term else "word list entries")
        for i, item in enumerate(items):
            try:
                parse_entry(item, allow_term=allow_term)
            except EntryError as error:
                raise self.error((*field_path, i), str(error)) from None
        return items

    def rule(self, value: Any, i: int) -> PatternRule:
        where: FieldPath = ("rules", i)
        if not isinstance(value, dict):
            raise self.error(where, f"expected a mapping with name, pattern and lang, found {_type_name(value)}")
        for key in value:
            if key not in _RULE_KEYS:
                raise self.error((*where, str(key)), f"unknown key {key!r} in a rule; expected {', '.join(_RULE_KEYS)}")
        for key in ("name", "pattern"):
            if key not in value:
                raise self.error(where, f"the rule has no {key}; every rule needs a name and a pattern")
            if not isinstance(value[key], str) or not value[key].strip():
                raise self.error((*where, key), f"expected a non-empty string, found {value[key]!r}")
        lang = value.get("lang", "any")
        if not isinstance(lang, str) or not lang.strip():
            raise self.error((*where, "lang"), f"expected a language code like 'en' or 'any', found {lang!r}")
        pattern = value["pattern"]
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error as error:
            raise self.error(
                (*where, "pattern"),
                f"{pattern!r} is not a valid regular expression ({error}); expected Python re syntax",
            ) from None
        if regex.search("") is not None:
            raise self.error((*where, "pattern"), f"{pattern!r} matches empty text, so it would flag everything")
        return PatternRule(value["name"].strip(), pattern, lang.strip())

    def read(self) -> dict[str, Any]:
        """Keyword arguments for :class:`Moderator`."""
        data = self.load()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SourceError(
                f"expected a mapping of policy settings ({', '.join(_POLICY_KEYS)}) at the top level, "
                f"found {_type_name(data)}",
                path=self.path,
            )
        for key in data:
            if key not in _POLICY_KEYS:
                raise self.error((str(key),), f"unknown key {key!r}; expected one of {', '.join(_POLICY_KEYS)}")
        kwargs: dict[str, Any] = {}
        if "threshold" in data:
            value = data["threshold"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise self.error(("threshold",), f"expected a number above 0 and at most 1, found {value!r}")
            kwargs["threshold"] = float(value)
        for key, option in (("model", "use_model"), ("builtin_rules", "builtin_rules")):
            if key in data:
                if not isinstance(data[key], bool):
                    raise self.error((key,), f"expected true or false, found {data[key]!r}")
                kwargs[option] = data[key]
        if "wordlists" in data:
            names = self.strings(data["wordlists"], ("wordlists",), "word list names")
            for i, name in enumerate(names):
                if name not in SHIPPED_WORDLISTS:
                    raise self.error(
                        ("wordlists", i),
                        f"no shipped word list {name!r}; expected one of {', '.join(SHIPPED_WORDLISTS)} "
                        "(put words for other languages under extra_words)",
                    )
            kwargs["wordlists"] = tuple(names)
        if "extra_words" in data:
            extra = data["extra_words"]
            if not isinstance(extra, dict):
                raise self.error(
                    ("extra_words",), f"expected a mapping from language to entries, found {_type_name(extra)}"
                )
            kwargs["extra_words"] = {
                str(lang): self.entries(words, ("extra_words", str(lang))) for lang, words in extra.items()
            }
        if "allow" in data:
            kwargs["allow"] = tuple(self.entries(data["allow"], ("allow",), allow_term=True))
        if "rules" in data:
            rules = data["rules"]
            if not isinstance(rules, list):
                raise self.error(
                    ("rules",), f"expected a list of rules (name, pattern, lang), found {_type_name(rules)}"
                )
            kwargs["rules"] = tuple(self.rule(rule, i) for i, rule in enumerate(rules))
        return kwargs


def read_policy_file(path: str | Path) -> dict[str, Any]:
    """Keyword arguments for :class:`~rejoinder.moderation.Moderator` from a policy file."""
    path = Path(path)
    return _PolicyReader(path, read_text(path, "policy file")).read()
