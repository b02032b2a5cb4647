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


class TickingBot:
    """Streams "tick 0 ", "tick 1 ", ... until cancelled or ``limit`` pieces; records a lesson as an effect."""

    name = "ticker"

    def __init__(self, limit: int = 1000, pause: float = 0.01) -> None:
        self.limit = limit
        self.pause = pause
        self.lessons: list[str] = []

    def greet(self, dialogue: Dialogue) -> Reply | None:
        return None

    def respond(self, dialogue: Dialogue) -> Reply:
        from rejoinder.dialogue import Cancel, collect

        return collect(self.stream(dialogue, Cancel()))

    def stream(self, dialogue: Dialogue, cancel):
        import time

        pieces = []
        for number in range(self.limit):
            if cancel.is_set:
                return Reply("".join(pieces), meta={"pieces": len(pieces)}, finish_reason="cancelled")
            time.sleep(self.pause)
            pieces.append(f"tick {number} ")
            yield pieces[-1]
        text = dialogue.last_user_message.text
        return Reply("".join(pieces), meta={"pieces": len(pieces)}, effects=[lambda _s: self.lessons.append(text)])


def test_a_stream_cancelled_from_another_thread_stops_and_is_stored_once_marked_cancelled(store):
    import threading

    session, _ = ChatSession.start(store, "ticker", bot=TickingBot())
    turn = session.stream("go")
    shown = []
    reader = threading.Thread(target=lambda: shown.extend(turn))
    reader.start()
    while len(turn.shown) < 3:
        threading.Event().wait(0.005)
    turn.cancel()
    reader.join(timeout=5)
    assert not reader.is_alive()
    stored = store.load_dialogue(session.conversation_id).messages
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[-1].text == "".join(shown).strip() and stored[-1].meta["cancelled"] is True
    assert stored[-1].meta["finish_reason"] == "cancelled"
    assert turn.reply.finish_reason == "cancelled"


def test_a_stream_nobody_reads_is_stored_at_the_moment_it_is_cancelled(store):
    session, _ = ChatSession.start(store, "ticker", bot=TickingBot())
    turn = session.stream("go")
    assert next(turn) == "tick 0 "
    turn.cancel()
    stored = store.load_dialogue(session.conversation_id).messages
    assert stored[-1].text == "tick 0" and stored[-1].meta["cancelled"] is True
    assert list(turn) == []
    assert len(store.load_dialogue(session.conversation_id).messages) == 2


def test_a_whole_streamed_reply_carries_the_bots_metadata_and_its_effects_are_written(store):
    bot = TickingBot(limit=3, pause=0)
    session, _ = ChatSession.start(store, "ticker", bot=bot)
    turn = session.stream("lesson one")
    assert "".join(turn) == "tick 0 tick 1 tick 2 "
    assert turn.reply.meta == {"pieces": 3} and turn.reply.text == "tick 0 tick 1 tick 2"
    assert bot.lessons == ["lesson one"]
    assert store.load_dialogue(session.conversation_id).messages[-1].meta == {"pieces": 3}


def test_a_turn_refused_as_a_concurrent_update_writes_none_of_its_effects(store):
    bot = TickingBot(limit=2, pause=0)
    first, _ = ChatSession.start(store, "ticker", bot=bot)
    second = ChatSession.resume(store, first.conversation_id, bot=bot)
    first.send("from the first")
    with pytest.raises(ConcurrentUpdate):
        second.send("from the second")
    assert bot.lessons == ["from the first"]


def test_regenerating_keeps_both_replies_as_siblings_and_each_branch_its_own_state(store):
    session, _ = ChatSession.start(store, "counter", bot=CountingBot())
    session.send("one")
    first = session.dialogue.messages[-1]
    again = session.regenerate()
    assert again.text == "seen 1"  # the state before the message was restored: the count did not double
    second = session.dialogue.messages[-1]
    assert [m.id for m in store.siblings(first.id)] == [first.id, second.id]
    assert session.send("two").text == "seen 2"
    session.switch_branch(first.id)
    assert [m.text for m in session.dialogue.messages] == ["ready", "one", "seen 1"]
    assert session.send("three").text == "seen 2"
    assert len(store.message_tree(session.conversation_id)) == 8


def test_a_message_can_start_a_new_branch_after_any_reply(store):
    session, _ = ChatSession.start(store, "counter", bot=CountingBot())
    root = session.dialogue.messages[0]
    session.send("one")
    session.send("two")
    assert session.send("other", after=root.id).text == "seen 1"
    assert [m.text for m in session.dialogue.messages] == ["ready", "other", "seen 1"]
    resumed = ChatSession.resume(store, session.conversation_id, bot=CountingBot())
    assert [m.text for m in resumed.dialogue.messages] == ["ready", "other", "seen 1"]


def test_sessions_with_the_same_bot_and_options_share_one_bot(store):
    first, _ = ChatSession.start(store, "eliza", {"friendly": "true"})
    second, _ = ChatSession.start(store, "eliza", {"friendly": True})
    resumed = ChatSession.resume(store, first.conversation_id)
    assert first.bot is second.bot is resumed.bot


def test_text_that_is_not_valid_unicode_is_refused_with_its_position():
    with pytest.raises(InvalidMessage, match=r"not valid UTF-8.*character 3"):
        clean_message("hi\udcff there", 100)


class GarbledBot:
    """Replies as a random model may: NUL characters and a lone surrogate, in text, meta and state."""

    name = "garbled"

    def greet(self, dialogue: Dialogue) -> Reply | None:
        return None

    def respond(self, dialogue: Dialogue) -> Reply:
        dialogue.state["last"] = "st\x00ate \udcff"
        return Reply("a\x00b \udcff c", meta={"matched": "m\x00", "pieces": ["\x00x"]})


def test_a_reply_with_nul_or_surrogates_is_stored_on_every_database(store):
    session, _ = ChatSession.start(store, "garbled", bot=GarbledBot())
    assert session.send("hello").text == "ab \ufffd c"  # what is returned is what is stored
    assert "".join(session.stream("again")) == "ab \ufffd c"
    stored = store.load_dialogue(session.conversation_id)
    reply = stored.messages[-1]
    assert reply.text == "ab \ufffd c"
    assert reply.meta["matched"] == "m" and reply.meta["pieces"] == ["x"]
    assert stored.state["last"] == "state \ufffd"
    assert [m.text for m in session.dialogue.messages] == [m.text for m in stored.messages]


def test_a_corpus_text_with_nul_is_imported_without_it():
    from rejoinder.datasets.corpus import normalise

    assert normalise(" hi\x00 there \udcff ") == "hi there \ufffd"


class NulFirstBot:
    """Streams a reply that begins with NUL and a space, as a random model may."""

    name = "nul-first"

    def greet(self, dialogue: Dialogue) -> Reply | None:
        return None

    def respond(self, dialogue: Dialogue) -> Reply:
        return Reply("\x00 there\x00 you go ")

    def stream(self, dialogue: Dialogue, cancel):
        pieces = ["\x00", " there", "\x00 you go "]
        yield from pieces
        return Reply("".join(pieces).strip())


def test_a_reply_that_begins_with_nul_and_a_space_is_stored_as_streamed(store):
    session, _ = ChatSession.start(store, "nul-first", bot=NulFirstBot())
    turn = session.stream("hello")
    shown = "".join(turn).strip()
    assert shown == "there you go"
    assert turn.reply.text == shown
    assert store.load_dialogue(session.conversation_id).messages[-1].text == shown
    assert session.send("again").text == "there you go"
