"""The vocabulary every bot and front end shares: Message, Dialogue, Reply and the Bot protocol.

A bot is a function of the dialogue so far. It reads ``dialogue.messages`` (the last one is the
user's new message), may read and change ``dialogue.state`` (a JSON-serialisable dict that the
store saves after every turn), and returns a :class:`Reply`. Because everything a bot remembers
lives in ``dialogue.state``, a conversation can stop after any turn and continue in another
process exactly as if it had never stopped - and one bot object can serve any number of
conversations at once: nothing a turn produces is kept on the bot.

- Everything a turn produces travels with its :class:`Reply`: the text, the confidence, the
  metadata (which rule, which neighbour, which model and how fast), why it ended
  (``finish_reason``) and the writes it wants made besides its state (``effects``, e.g. what the
  retrieval bot learned), which the session makes in the turn's own transaction - so a turn that
  is refused writes nothing at all.
- A :class:`StreamingBot` yields its reply in pieces from a generator whose *return value* is the
  Reply; it stops at the next piece once its :class:`Cancel` is set, from any thread.
- A bot whose first use needs slow work (importing a corpus, converting a model) is a
  :class:`PreparingBot`: building it is cheap and has no side effects, :meth:`~PreparingBot.prepare`
  does the work (resumable, with progress) and :meth:`~PreparingBot.readiness` says how far it is.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["user", "assistant", "system"]
FinishReason = Literal["stop", "length", "cancelled"]
"""Why a reply ended: it was complete, it hit the length limit, or it was stopped (as in the OpenAI API)."""

Effect = Callable[[Any], None]
"""A write a turn makes besides its messages and state; called with the turn's SQLAlchemy session."""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` with every string in it made storable on every database: NUL characters dropped
    (PostgreSQL's text and JSON columns refuse them) and lone surrogates (what Python makes of
    undecodable bytes) replaced by U+FFFD. Dicts and lists are copied; anything else is kept.

    User messages are checked before this (:func:`rejoinder.chat.clean_message` refuses invalid
    text with its position); this is for what bots, corpora and models produce.
    """
    if isinstance(value, str):
        return _UNSTORABLE.sub(_replacement, value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _replacement(match: re.Match[str]) -> str:
    return "" if match.group() == "\x00" else "\ufffd"


def utcnow() -> datetime:
    return datetime.now(UTC)


ROOT_DIGEST = hashlib.sha256(b"rejoinder-history").hexdigest()
"""The digest of an empty history."""


def chain_digest(parent: str | None, role: str, text: str) -> str:
    """The digest of a history: the parent's digest extended by one message.

    Only what a client of a stateless chat API sends back counts: user and assistant messages, not
    system prompts, and not an assistant's opening remark before the first user message (clients
    that never saw the greeting send histories without it)."""
    parent = parent or ROOT_DIGEST
    if role not in ("user", "assistant") or (role == "assistant" and parent == ROOT_DIGEST):
        return parent
    return hashlib.sha256(f"{parent}\x1f{role}\x1f{text}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Message:
    """One utterance in a conversation.

    ``id`` is stable once the message is stored; ``parent_id`` is the message it follows (None for
    the first), so a conversation is a tree: several replies to one prefix are siblings.
    """

    role: Role
    text: str
    bot: str | None = None
    user_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    meta: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    parent_id: str | None = None


@dataclass
class Reply:
    """What a bot says back, with how sure it is and why it said it.

    ``confidence`` (0..1, or None when the bot has no notion of it) lets a router fall back to
    another bot; ``meta`` carries bot-specific explanations (the ELIZA rule that fired, the
    retrieved neighbour, the frame slot asked for, the model and its speed); ``finish_reason``
    says whether the reply is whole; ``effects`` are written with the turn (see the module docstring).
    """

    text: str
    confidence: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    finish_reason: FinishReason = "stop"
    effects: list[Effect] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class TurnOptions:
    """What one request asks of one reply, beside the bot's own options (the sampling fields of the
    OpenAI chat API). None leaves the bot's setting. A bot that honours them itself lists them in
    its ``turn_options`` attribute; for any other bot the session applies ``stop`` and
    ``max_tokens`` (in words) to the reply's text, and the rest does not concern it."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    system: str | None = None
    """A system prompt for this turn (the request's system message)."""


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
    turn: TurnOptions | None = None
    """What the request being answered asks of this reply (never stored)."""

    @property
    def last_user_message(self) -> Message | None:
        for message in reversed(self.messages):
            if message.role == "user":
                return message
        return None

    @property
    def turns(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")


class Cancel:
    """Set from any thread (a Ctrl-C handler, a client that went away) to stop a reply being produced."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def set(self) -> None:
        self.event.set()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


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


ReplyPieces = Generator[str, None, Reply]
"""A reply in pieces: iterate for the text; the generator's return value is the whole Reply."""


@runtime_checkable
class StreamingBot(Bot, Protocol):
    """A bot that produces its reply piece by piece (tokens of a language model)."""

    def stream(self, dialogue: Dialogue, cancel: Cancel) -> ReplyPieces:
        """Yield the reply text in pieces and return the Reply (its text is the pieces joined).

        When ``cancel`` is set the generator stops before its next piece and returns what it has,
        with ``finish_reason="cancelled"``.
        """
        ...


def collect(pieces: ReplyPieces) -> Reply:
    """Run a reply generator to its end and return its Reply."""
    while True:
        try:
            next(pieces)
        except StopIteration as stop:
            return stop.value


@dataclass(frozen=True)
class Readiness:
    """How far a bot's preparation is: whether it can answer now and what is still being done."""

    ready: bool
    """The bot can answer (perhaps not yet with everything: see ``complete``)."""
    complete: bool
    """Nothing is left to prepare."""
    detail: str = ""
    done: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Progress:
    """One report from a preparation step: ``done`` of ``total`` items (``total`` None when unknown)."""

    stage: str
    done: int
    total: int | None = None
    detail: str = ""


ProgressFn = Callable[[Progress], None]


@runtime_checkable
class PanelBot(Bot, Protocol):
    """A bot that shows what it tracks beyond its replies' meta (a front end's side panel)."""

    def panel(self, dialogue: Dialogue) -> dict[str, Any]:
        """A JSON-ready description of the bot's state in ``dialogue``, with a ``kind`` key."""
        ...


@runtime_checkable
class PreparingBot(Bot, Protocol):
    """A bot with slow first-use work kept out of its constructor (see the module docstring)."""

    def readiness(self) -> Readiness:
        """Where the preparation stands; cheap enough to call on every request."""
        ...

    def prepare(self, progress: ProgressFn | None = None, cancel: Cancel | None = None) -> None:
        """Do what is left to prepare, resuming interrupted work; returns early when ``cancel`` is set.

        Idempotent: once complete, calling it again does nothing. It returns when the bot is ready
        to answer; work that can go on while it answers may continue in the background, and
        :meth:`readiness` reports it.
        """
        ...
