"""A conversation in progress: the one place where a bot, its dialogue and the store meet.

Every front end (the terminal, the HTTP server, the labeling app) talks to bots through
:class:`ChatSession`: it checks the user's message, lets the bot answer on a copy of the state,
and commits the message, the reply and the new state in one transaction before returning the
reply. If the bot fails, nothing is written and the stored conversation is unchanged.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rejoinder.bots import create_bot
from rejoinder.dialogue import Bot, Dialogue, Effect, Message, Reply, StreamingBot
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
    """The message as it will be stored, or :class:`InvalidMessage` saying what is wrong."""
    if not isinstance(text, str):
        raise InvalidMessage(f"a message must be text, not {type(text).__name__}")
    text = text.replace("\x00", "").strip()
    if not text:
        raise InvalidMessage("the message is empty")
    if len(text) > limit:
        raise InvalidMessage(f"the message is {len(text)} characters long; the limit is {limit}")
    return text


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
        bot_options: dict[str, Any] | None = None,
        *,
        user_id: str | None = None,
        bot: Bot | None = None,
    ) -> tuple[ChatSession, Reply | None]:
        """Create a conversation; return the session and the bot's opening remark (already stored)."""
        options = dict(bot_options or {})
        bot = bot or create_bot(bot_name, options, store=store)
        conversation_id = store.create_conversation(bot_name, bot_options=options, user_id=user_id)
        dialogue = Dialogue(bot=bot_name, conversation_id=conversation_id, user_id=user_id)
        session = cls(store, bot, dialogue, max_message_chars())
        working = replace(dialogue, state=copy.deepcopy(dialogue.state))
        opening = bot.greet(working)
        messages = [Message("assistant", opening.text, bot=bot.name, meta=opening.meta)] if opening else []
        session._commit(working, messages)
        return session, opening

    @classmethod
    def resume(cls, store: Store, conversation_id: str, *, bot: Bot | None = None) -> ChatSession:
        """Continue a stored conversation with the bot (and options) it was started with."""
        info = store.get_conversation(conversation_id)
        bot = bot or create_bot(info.bot, info.bot_options, store=store)
        return cls(store, bot, store.load_dialogue(conversation_id), max_message_chars())

    # -- turns -------------------------------------------------------------------------------------
    def _begin(self, text: Any) -> tuple[Dialogue, Message]:
        cleaned = clean_message(text, self.max_chars)
        message = Message("user", cleaned, user_id=self.dialogue.user_id)
        working = replace(
            self.dialogue,
            messages=[*self.dialogue.messages, message],
            state=copy.deepcopy(self.dialogue.state),
        )
        return working, message

    def send(self, text: str) -> Reply:
        """Answer one user message; the turn is stored before this returns."""
        working, message = self._begin(text)
        reply = self.bot.respond(working)
        self._commit(working, [message, self._reply_message(reply)], reply.effects)
        return reply

    def stream(self, text: str) -> Iterator[str]:
        """Yield the reply in pieces as the bot produces them; the turn is stored after the last piece.

        Closing the iterator early (the user pressed Ctrl-C, the client went away) stops the bot and
        stores what was said so far, marked ``cancelled`` in the reply's meta.
        """
        working, message = self._begin(text)
        if not isinstance(self.bot, StreamingBot):
            reply = self.bot.respond(working)
            self._commit(working, [message, self._reply_message(reply)])
            yield reply.text
            return
        pieces: list[str] = []
        finished = False
        source = self.bot.stream(working)
        try:
            for piece in source:
                pieces.append(piece)
                yield piece
            finished = True
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
            if finished or pieces:
                meta = dict(getattr(self.bot, "last_stats", {}) or {})
                if not finished:
                    meta["cancelled"] = True
                self._commit(working, [message, self._reply_message(Reply("".join(pieces).strip(), meta=meta))])

    def _reply_message(self, reply: Reply) -> Message:
        return Message("assistant", reply.text, bot=self.bot.name, meta=reply.meta)

    def _commit(self, working: Dialogue, messages: list[Message], effects: Sequence[Effect] = ()) -> None:
        try:
            json.dumps(working.state)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bot {self.bot.name!r} left state that is not JSON-serialisable: {exc}") from None
        version = self.store.append_turn(
            self.conversation_id, messages, working.state, expected_version=self.dialogue.version, effects=effects
        )
        self.dialogue = replace(
            self.dialogue,
            messages=[*self.dialogue.messages, *messages],
            state=working.state,
            version=version,
        )
