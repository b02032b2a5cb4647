"""The vocabulary every bot and front end shares: Message, Dialogue, Reply and the Bot protocol.

A bot is a function of the dialogue so far. It reads ``dialogue.messages`` (the last one is the
user's new message), may read and change ``dialogue.state`` (a JSON-serialisable dict that the
store saves after every turn), and returns a :class:`Reply`. Because everything a bot remembers
lives in ``dialogue.state``, a conversation can stop after any turn and continue in another
process exactly as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["user", "assistant", "system"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Message:
    """One utterance in a conversation."""

    role: Role
    text: str
    bot: str | None = None
    user_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reply:
    """What a bot says back, with how sure it is and why it said it.

    ``confidence`` (0..1, or None when the bot has no notion of it) lets a router fall back to
    another bot; ``meta`` carries bot-specific explanations (the ELIZA rule that fired, the
    retrieved neighbour, the frame slot asked for).
    """

    text: str
    confidence: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dialogue:
    """A conversation as a bot sees it: the history plus the state the bot tracks."""

    bot: str
    messages: list[Message] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None
    user_id: str | None = None
    version: int = 0
    """How many times the state has been saved; the store uses it to refuse lost updates."""

    @property
    def last_user_message(self) -> Message | None:
        for message in reversed(self.messages):
            if message.role == "user":
                return message
        return None

    @property
    def turns(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")


@runtime_checkable
class Bot(Protocol):
    """The interface every bot implements."""

    name: str

    def greet(self, dialogue: Dialogue) -> Reply | None:
        """The bot's opening remark for a new conversation, or None if it waits to be spoken to."""
        ...

    def respond(self, dialogue: Dialogue) -> Reply:
        """Answer the last user message of ``dialogue``; may update ``dialogue.state``."""
        ...


@runtime_checkable
class StreamingBot(Bot, Protocol):
    """A bot that produces its reply piece by piece (tokens of a language model)."""

    def stream(self, dialogue: Dialogue) -> Iterator[str]:
        """Yield the reply text in pieces; their concatenation is the reply."""
        ...
