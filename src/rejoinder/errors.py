"""One exception hierarchy for everything a user can cause.

Every error names what is wrong and where (file, line, column, field or id) and, where it
helps, what would have been accepted.
"""

from __future__ import annotations

from pathlib import Path


class RejoinderError(Exception):
    """Base class of every error Rejoinder raises on purpose."""


class ConfigError(RejoinderError):
    """A bot name, bot option or configuration file is not acceptable."""


class UnknownBot(ConfigError):
    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = available
        super().__init__(f"unknown bot {name!r}; available bots: {', '.join(available) or 'none'}")


class SourceError(RejoinderError):
    """A file the user wrote (script, frame, dataset) is malformed at a known place."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.column = column
        super().__init__(self._format())

    @classmethod
    def from_yaml(cls, error: Exception, path: str | Path | None, what: str = "not valid YAML") -> SourceError:
        """The position and problem of a PyYAML error, as a SourceError about ``path``."""
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or getattr(error, "context", None) or str(error)
        return cls(
            f"{what}: {problem}",
            path=path,
            line=mark.line + 1 if mark is not None else None,
            column=mark.column + 1 if mark is not None else None,
        )

    def _format(self) -> str:
        where = self.path or "<string>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.reason}"


class ScriptError(SourceError):
    """An ELIZA script does not follow the 1966 script format."""


class InvalidMessage(RejoinderError):
    """A user message cannot be accepted (empty, too long, not text)."""


class ConversationNotFound(RejoinderError):
    def __init__(self, conversation_id: str, message: str | None = None) -> None:
        self.conversation_id = conversation_id
        super().__init__(message or f"no conversation with id {conversation_id!r} in the store")


class BattleNotFound(RejoinderError):
    def __init__(self, battle_id: str) -> None:
        self.battle_id = battle_id
        super().__init__(f"no arena battle with id {battle_id!r} in the store")


class MessageNotFound(RejoinderError):
    def __init__(self, message_id: str, conversation_id: str | None = None) -> None:
        self.message_id = message_id
        where = f" in conversation {conversation_id}" if conversation_id else ""
        super().__init__(f"no message with id {message_id!r}{where}")


class StoreError(RejoinderError):
    """The store cannot be opened, migrated or written."""


class ConcurrentUpdate(StoreError):
    """Another process answered in the same conversation first; nothing was written."""
