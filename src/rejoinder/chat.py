"""A conversation in progress: the one place where a bot, its dialogue and the store meet.

Every front end (the terminal, the HTTP server, the labeling app) talks to bots through
:class:`ChatSession`: it checks the user's message, lets the bot answer on a copy of the state,
and commits the message, the reply, the new state and the reply's effects in one transaction
before returning the reply. If the bot fails, nothing is written and the stored conversation is
unchanged.

Bots are shared: a session takes its bot from the store's :class:`~rejoinder.bots.BotPool`, so
every conversation with the same bot and options uses one instance (one model, one decoding loop).

A streamed reply is a :class:`TurnStream`: iterate it for the pieces; :meth:`TurnStream.cancel`
may be called from any thread (a Ctrl-C handler, a client that went away) and stops the bot
within one step; the partial reply is then committed once, marked cancelled.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rejoinder.bots import pool_for
from rejoinder.dialogue import (
    Bot,
    Cancel,
    Dialogue,
    Effect,
    Message,
    PreparingBot,
    ProgressFn,
    Reply,
    ReplyPieces,
    StreamingBot,
    TurnOptions,
    collect,
    storable,
)
from rejoinder.errors import ConfigError, InvalidMessage
from rejoinder.store import Store

DEFAULT_MAX_MESSAGE_CHARS = 8000


def max_message_chars() -> int:
    value = os.environ.get("REJOINDER_MAX_MESSAGE_CHARS")
    if not value:
        return DEFAULT_MAX_MESSAGE_CHARS
    try:
        limit = int(value)
    except ValueError:
        raise ConfigError(f"REJOINDER_MAX_MESSAGE_CHARS={value!r} is not a whole number") from None
    if limit < 1:
        raise ConfigError("REJOINDER_MAX_MESSAGE_CHARS must be at least 1")
    return limit


def clean_message(text: Any, limit: int) -> str:
    """The message as it will be stored, or :class:`InvalidMessage` saying what is wrong.

    Text that is not valid Unicode (lone surrogates, as Python makes of undecodable bytes) is
    refused with the position of the first bad character; NUL characters are dropped.
    """
    if not isinstance(text, str):
        raise InvalidMessage(f"a message must be text, not {type(text).__name__}")
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            raise InvalidMessage(
                f"the message is not valid UTF-8 text (an undecodable byte or lone surrogate at character {index + 1})"
            )
    text = text.replace("\x00", "").strip()
    if not text:
        raise InvalidMessage("the message is empty")
    if len(text) > limit:
        raise InvalidMessage(f"the message is {len(text)} characters long; the limit is {limit}")
    return text


def prepare_bot(bot: Bot, progress: ProgressFn | None = None, cancel: Cancel | None = None) -> None:
    """Run a bot's preparation if it has one (importing a corpus, training its NLU, ...)."""
    if isinstance(bot, PreparingBot) and not bot.readiness().complete:
        bot.prepare(progress, cancel)


@dataclass
class ChatSession:
    """One stored conversation with one bot."""

    store: Store
    bot: Bot
    dialogue: Dialogue
    max_chars: int = DEFAULT_MAX_MESSAGE_CHARS

    @property
    def conversation_id(self) -> str:
        assert self.dialogue.conversation_id is not None
        return self.dialogue.conversation_id

    # -- opening and resuming ---------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        store: Store,
        bot_name: str,
        bot_options: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        bot: Bot | None = None,
        where: Mapping[str, str] | None = None,
        base: Path | None = None,
        client: bool = False,
    ) -> tuple[ChatSession, Reply | None]:
        """Create a conversation; return the session and the bot's opening remark (already stored).

        ``bot_options`` are checked and converted by the bot's declared options (``where`` names
        each value's origin for error messages, ``base`` resolves relative paths, ``client=True``
        refuses options only the operator may set). ``bot`` skips the registry (tests, embedding).
        """
        if bot is None:
            bot, options = pool_for(store).get(bot_name, bot_options, where=where, base=base, client=client)
        else:
            options = dict(bot_options or {})
        conversation_id = store.create_conversation(bot_name, bot_options=options, user_id=user_id)
        dialogue = Dialogue(bot=bot_name, conversation_id=conversation_id, user_id=user_id)
        session = cls(store, bot, dialogue, max_message_chars())
        working = replace(dialogue, state=copy.deepcopy(dialogue.state))
        opening = bot.greet(working)
        messages = [session._reply_message(opening)] if opening else []
        session._commit(working, messages, opening.effects if opening else ())
        return session, opening

    @classmethod
    def resume(cls, store: Store, conversation_id: str, *, bot: Bot | None = None) -> ChatSession:
        """Continue a stored conversation with the bot (and options) it was started with."""
        info = store.get_conversation(conversation_id)
        if bot is None:
            bot, _ = pool_for(store).get(info.bot, info.bot_options)
        return cls(store, bot, store.load_dialogue(conversation_id), max_message_chars())

    # -- turns -------------------------------------------------------------------------------------
    def _begin(self, text: Any, after: str | None = None, turn: TurnOptions | None = None) -> tuple[Dialogue, Message]:
        """The working dialogue for a new user message: below the active leaf, or below ``after``."""
        cleaned = clean_message(text, self.max_chars)
        base = self.dialogue
        if after is not None and (not base.messages or base.messages[-1].id != after):
            base = replace(self.store.load_dialogue(self.conversation_id, leaf=after), version=self.dialogue.version)
        parent = base.messages[-1].id if base.messages else None
        message = Message("user", cleaned, user_id=self.dialogue.user_id, id=str(uuid.uuid4()), parent_id=parent)
        working = replace(base, messages=[*base.messages, message], state=copy.deepcopy(base.state), turn=turn)
        return working, message

    def send(self, text: str, *, after: str | None = None, turn: TurnOptions | None = None) -> Reply:
        """Answer one user message; the turn is stored before this returns.

        ``after`` (a message id) answers the message as a new branch below that message instead
        of continuing the active branch; the new branch becomes the active one. ``turn`` carries
        what the request asks of this reply (sampling, stop sequences, a JSON schema).
        """
        working, message = self._begin(text, after, turn)
        reply = self._shaped(self.bot.respond(working), turn)
        self._commit(working, [message, self._reply_message(reply, message)], reply.effects)
        return reply

    def send_many(self, text: str, n: int, *, after: str | None = None, turn: TurnOptions | None = None) -> list[Reply]:
        """``n`` candidate replies to one user message, produced at once (a language model decodes
        them in one batch) and stored as siblings; the first one continues the conversation."""
        if n < 1:
            raise InvalidMessage("n must be at least 1")
        if n == 1:
            return [self.send(text, after=after, turn=turn)]
        working, message = self._begin(text, after, turn)
        copies = [replace(working, state=copy.deepcopy(working.state)) for _ in range(n)]
        with ThreadPoolExecutor(max_workers=n) as pool:
            replies = [self._shaped(r, turn) for r in pool.map(self.bot.respond, copies)]
        order = [*range(1, n), 0]  # the first candidate is written last: it is the active branch
        first = order[0]
        self._commit(copies[first], [message, self._reply_message(replies[first], message)], replies[first].effects)
        for i in order[1:]:
            branch = replace(copies[i], messages=[*working.messages])
            self._commit(branch, [self._reply_message(replies[i], message)], replies[i].effects)
        return replies

    def replay(self, text: str, reply_text: str | None) -> None:
        """Store a turn a client already had (a stateless API sends the whole history): the bot
        answers it to rebuild its state - unless its state is only the messages (``stateless``) -
        and the client's version of the reply is what is stored, so that the next request's
        history matches."""
        working, message = self._begin(text)
        if getattr(self.bot, "stateless", False) and reply_text is not None:
            reply = Reply(reply_text)
        else:
            reply = self.bot.respond(working)
        meta = {"replayed": True}
        if reply_text is not None and reply_text.strip() != reply.text:
            meta["bot_text"] = reply.text
        stored = replace(reply, text=reply_text.strip() if reply_text is not None else reply.text)
        stored.meta = {**reply.meta, **meta}
        self._commit(working, [message, self._reply_message(stored, message)], reply.effects)

    def _shaped(self, reply: Reply, turn: TurnOptions | None) -> Reply:
        """``reply`` cut at the turn's stop sequences and ``max_tokens`` (in words), for bots that do
        not honour them themselves."""
        if turn is None or not (turn.stop or turn.max_tokens):
            return reply
        handled = getattr(self.bot, "turn_options", frozenset())
        text, reason = reply.text, reply.finish_reason
        if turn.stop and "stop" not in handled:
            cuts = [text.find(s) for s in turn.stop if s in text]
            if cuts:
                text = text[: min(cuts)].rstrip()
        if turn.max_tokens and "max_tokens" not in handled:
            words = text.split()
            if len(words) > turn.max_tokens:
                text, reason = " ".join(words[: turn.max_tokens]), "length"
        return replace(reply, text=text, finish_reason=reason) if text != reply.text else reply

    def stream(self, text: str, *, after: str | None = None, turn: TurnOptions | None = None) -> TurnStream:
        """The reply in pieces as the bot produces them (see :class:`TurnStream`)."""
        working, message = self._begin(text, after, turn)
        return TurnStream(self, working, message)

    def regenerate(self, reply_id: str | None = None) -> Reply:
        """Answer the user message before ``reply_id`` (default: the active branch's last reply) again.

        The new reply is a sibling of the old one (both are kept) and becomes the active branch.
        """
        working, message = self._regenerating(reply_id)
        reply = self.bot.respond(working)
        self._commit(working, [self._reply_message(reply, message)], reply.effects)
        return reply

    def regenerate_stream(self, reply_id: str | None = None) -> TurnStream:
        """:meth:`regenerate`, streamed."""
        working, message = self._regenerating(reply_id)
        return TurnStream(self, working, message, regenerate=True)

    def _regenerating(self, reply_id: str | None) -> tuple[Dialogue, Message]:
        messages = self.dialogue.messages
        if reply_id is None:
            replies = [m for m in messages if m.role == "assistant" and m.parent_id is not None]
            if not replies or messages[-1].role != "assistant":
                raise InvalidMessage("there is no reply to a user message to regenerate")
            reply_id = replies[-1].id
        target = next((m for m in self.store.message_tree(self.conversation_id) if m.id == reply_id), None)
        if target is None or target.role != "assistant" or target.parent_id is None:
            raise InvalidMessage(f"message {reply_id!r} is not a reply to a user message in this conversation")
        prefix = self.store.load_dialogue(self.conversation_id, leaf=target.parent_id)
        user = prefix.messages[-1]
        working = replace(prefix, version=self.dialogue.version, state=copy.deepcopy(prefix.state))
        return working, user

    def switch_branch(self, message_id: str) -> None:
        """Continue the conversation from ``message_id`` (e.g. the sibling reply a user kept)."""
        version = self.store.switch_branch(self.conversation_id, message_id, expected_version=self.dialogue.version)
        self.dialogue = replace(self.store.load_dialogue(self.conversation_id), version=version)

    def _reply_message(self, reply: Reply, answering: Message | None = None) -> Message:
        """The message that stores ``reply``. The reply's text is cleaned in place first (a model can
        emit NUL, which PostgreSQL cannot store), so what a turn returns is what it stores. It is
        stripped after cleaning: a reply that began with NUL and a space starts at its first word."""
        reply.text = storable(reply.text).strip()
        meta = dict(reply.meta)
        if reply.finish_reason != "stop":
            meta["finish_reason"] = reply.finish_reason
        if reply.finish_reason == "cancelled":
            meta["cancelled"] = True
        if reply.confidence is not None and "confidence" not in meta:
            meta["confidence"] = round(float(reply.confidence), 4)
        return Message(
            "assistant",
            reply.text,
            bot=self.bot.name,
            meta=storable(meta),
            id=str(uuid.uuid4()),
            parent_id=answering.id if answering is not None else None,
        )

    def _commit(self, working: Dialogue, messages: list[Message], effects: Sequence[Effect] = ()) -> None:
        """Store ``messages`` (a chain below the first one's parent), the state and the effects at once."""
        try:
            json.dumps(working.state)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bot {self.bot.name!r} left state that is not JSON-serialisable: {exc}") from None
        version = self.store.append_turn(
            self.conversation_id,
            messages,
            working.state,
            expected_version=self.dialogue.version,
            effects=effects,
            parent_id=messages[0].parent_id if messages else None,
        )
        written = {m.id for m in messages}
        before = [m for m in working.messages if m.id not in written]
        self.dialogue = replace(self.dialogue, messages=[*before, *messages], state=working.state, version=version)


class TurnStream(Iterator[str]):
    """One streamed turn: iterate for the pieces; ``reply`` holds the stored Reply once it is over.

    The turn is committed exactly once: when the bot finishes, or when the stream is cancelled
    (:meth:`cancel`, from any thread) or closed early - then with the text shown so far, marked
    ``cancelled``. Pieces the bot produced after the cancel are never shown nor stored. A bot
    that is not a :class:`~rejoinder.dialogue.StreamingBot` answers whole, as one piece.
    """

    def __init__(self, session: ChatSession, working: Dialogue, message: Message, *, regenerate: bool = False) -> None:
        self.session = session
        self.working = working
        self.message = message
        self.regenerate = regenerate
        self.cancel_event = Cancel()
        self.reply: Reply | None = None
        self.shown: list[str] = []
        # Not re-entrant on purpose: a Ctrl-C handler that cancels runs on the reading thread while it
        # is inside the bot; it must only set the event (the reader then stores the bot's own Reply).
        self._lock = threading.Lock()
        self._source: ReplyPieces | None = None
        if isinstance(session.bot, StreamingBot):
            self._source = session.bot.stream(working, self.cancel_event)

    @property
    def done(self) -> bool:
        return self.reply is not None

    def __iter__(self) -> TurnStream:
        return self

    def __next__(self) -> str:
        with self._lock:
            if self.reply is not None:
                raise StopIteration
            if self._source is None:
                return self._answer_whole()
            if self.cancel_event.is_set:
                self._finish_cancelled()
                raise StopIteration
            try:
                piece = next(self._source)
            except StopIteration as stop:
                result: Reply = stop.value if stop.value is not None else Reply("".join(self.shown))
                if self.cancel_event.is_set:
                    result = self._as_cancelled(result)
                else:
                    result.text = result.text.strip()
                self._finish(result)
                raise
            except KeyboardInterrupt:  # Ctrl-C inside the bot: the same as a cancel
                self.cancel_event.set()
                self._finish(self._as_cancelled(Reply("")))
                raise
            except Exception as exc:  # the bot failed mid-reply: keep what was shown, then report it
                self._finish(self._as_cancelled(Reply("", meta={"error": str(exc)})))
                raise
            if self.cancel_event.is_set:  # produced after the cancel: never shown
                self._finish_cancelled()
                raise StopIteration
            piece = storable(piece)  # what is shown is what will be stored
            self.shown.append(piece)
            return piece

    def _answer_whole(self) -> str:
        whole = self.session._shaped(self.session.bot.respond(self.working), self.working.turn)
        self._finish(whole)
        return whole.text

    def cancel(self) -> None:
        """Stop the reply (from any thread); what was shown so far is committed, marked cancelled.

        When another thread is reading the stream, it stops within one step of the bot and
        commits; when nobody is reading, the commit happens here, now.
        """
        self.cancel_event.set()
        if self._lock.acquire(blocking=False):
            try:
                if self.reply is None and self._source is not None:
                    self._finish_cancelled()
            finally:
                self._lock.release()

    def close(self) -> None:
        """Stop reading early: the same as :meth:`cancel`, waiting for a reader in another thread."""
        self.cancel_event.set()
        with self._lock:
            if self.reply is None and self._source is not None:
                self._finish_cancelled()

    def _finish_cancelled(self) -> None:
        assert self._source is not None
        try:
            result = collect(self._source) or Reply("")  # the bot sees the cancel at its next step and returns
        except Exception:
            result = Reply("")
        self._finish(self._as_cancelled(result))

    def _as_cancelled(self, result: Reply) -> Reply:
        return replace(result, text="".join(self.shown).strip(), finish_reason="cancelled")

    def _finish(self, result: Reply) -> None:
        if self.reply is not None:
            return
        self.reply = result
        if self._source is not None and not self.shown and result.finish_reason == "cancelled":
            return  # nothing was said: nothing to keep
        session = self.session
        reply = session._reply_message(result, self.message)
        session._commit(self.working, [reply] if self.regenerate else [self.message, reply], result.effects)
