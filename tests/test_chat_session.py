"""ChatSession: bad messages are refused with a reason, failed bots write nothing, turns are stored."""

from __future__ import annotations

import pytest

from rejoinder.chat import ChatSession, clean_message
from rejoinder.dialogue import Dialogue, Reply
from rejoinder.errors import ConcurrentUpdate, ConfigError, InvalidMessage


class CountingBot:
    """Says how many messages it has seen; fails on request."""

    name = "counter"

    def greet(self, dialogue: Dialogue) -> Reply | None:
        dialogue.state["seen"] = 0
        return Reply("ready")

    def respond(self, dialogue: Dialogue) -> Reply:
        text = dialogue.last_user_message.text
        dialogue.state["seen"] += 1
        if text == "explode":
            raise RuntimeError("boom")
        if text == "unserialisable":
            dialogue.state["bad"] = object()
        return Reply(f"seen {dialogue.state['seen']}")


def test_empty_and_blank_messages_are_refused():
    for text in ["", "   ", "\n\t"]:
        with pytest.raises(InvalidMessage, match="empty"):
            clean_message(text, 100)


def test_huge_messages_are_refused_with_length_and_limit():
    with pytest.raises(InvalidMessage, match="101 characters long; the limit is 100"):
        clean_message("x" * 101, 100)


def test_non_text_messages_are_refused():
    with pytest.raises(InvalidMessage, match="must be text"):
        clean_message(b"bytes", 100)  # type: ignore[arg-type]


def test_nul_characters_are_removed_and_whitespace_trimmed():
    assert clean_message("  hi\x00 there ", 100) == "hi there"


def test_opening_and_turns_are_stored_before_the_reply_returns(store):
    session, opening = ChatSession.start(store, "counter", bot=CountingBot())
    assert opening.text == "ready"
    assert session.send("one").text == "seen 1"
    stored = store.load_dialogue(session.conversation_id)
    assert [m.text for m in stored.messages] == ["ready", "one", "seen 1"]
    assert stored.state == {"seen": 1}


def test_a_failing_bot_leaves_the_stored_conversation_unchanged(store):
    session, _ = ChatSession.start(store, "counter", bot=CountingBot())
    session.send("one")
    with pytest.raises(RuntimeError):
        session.send("explode")
    stored = store.load_dialogue(session.conversation_id)
    assert [m.text for m in stored.messages] == ["ready", "one", "seen 1"]
    assert stored.state == {"seen": 1} == session.dialogue.state
    assert session.send("two").text == "seen 2"


def test_state_that_cannot_be_stored_is_refused_naming_the_bot(store):
    session, _ = ChatSession.start(store, "counter", bot=CountingBot())
    with pytest.raises(ConfigError, match="counter"):
        session.send("unserialisable")
    assert store.load_dialogue(session.conversation_id).state == {"seen": 0}


def test_refused_messages_write_nothing(store, monkeypatch):
    monkeypatch.setenv("REJOINDER_MAX_MESSAGE_CHARS", "10")
    session, _ = ChatSession.start(store, "counter", bot=CountingBot())
    with pytest.raises(InvalidMessage):
        session.send("x" * 11)
    with pytest.raises(InvalidMessage):
        session.send("   ")
    assert [m.text for m in store.load_dialogue(session.conversation_id).messages] == ["ready"]


def test_two_sessions_on_one_conversation_cannot_overwrite_each_other(store):
    first, _ = ChatSession.start(store, "counter", bot=CountingBot())
    second = ChatSession.resume(store, first.conversation_id, bot=CountingBot())
    first.send("one")
    with pytest.raises(ConcurrentUpdate):
        second.send("two")
    assert [m.text for m in store.load_dialogue(first.conversation_id).messages] == ["ready", "one", "seen 1"]


def test_resume_rebuilds_the_bot_from_the_stored_name_and_options(store):
    session, _ = ChatSession.start(store, "eliza", {"punctuation": "modern"})
    resumed = ChatSession.resume(store, session.conversation_id)
    assert resumed.bot.name == "eliza" and resumed.bot.engine.punctuation == "modern"


def test_stream_yields_the_reply_and_stores_the_turn(store):
    session, _ = ChatSession.start(store, "counter", bot=CountingBot())
    assert "".join(session.stream("one")) == "seen 1"
    assert [m.text for m in store.load_dialogue(session.conversation_id).messages][-1] == "seen 1"
