"""The router: bots without a confidence answer, refused replies leave no trace, links are shared bots."""

from __future__ import annotations

import pytest

from rejoinder.bots.router import Link, RouterBot, create
from rejoinder.chat import ChatSession
from rejoinder.dialogue import Dialogue, Reply


class Teacher:
    """Answers with a fixed confidence and wants to store a lesson with every reply it gives."""

    def __init__(self, name: str, confidence: float | None) -> None:
        self.name, self.confidence = name, confidence
        self.stored: list[str] = []

    def greet(self, dialogue: Dialogue) -> Reply | None:
        return None

    def respond(self, dialogue: Dialogue) -> Reply:
        dialogue.state["turns"] = dialogue.state.get("turns", 0) + 1
        text = dialogue.last_user_message.text
        return Reply(f"{self.name}: {text}", self.confidence, effects=[lambda _s: self.stored.append(text)])


@pytest.mark.parametrize("position", [0, 1, 2])
def test_eliza_answers_in_any_position_of_a_chain_although_it_has_no_confidence(store, position):
    names = ["bank", "travel"]
    names.insert(position, "eliza")
    router = create(",".join(f"{n}:0.99" if n != "eliza" else n for n in names), store=store)
    session, _ = ChatSession.start(store, "router", bot=router)
    reply = session.send("I feel happy today")
    assert reply.meta["routed_to"] in names
    if position == 0:
        assert reply.meta["routed_to"] == "eliza"  # no confidence is an answer: the chain stops at ELIZA


def test_eliza_first_in_a_chain_answers_every_turn_from_the_command_line(store):
    session, _ = ChatSession.start(store, "router", {"chain": "eliza,eliza-ru"})
    for text in ["hello", "I am sad", "my mother hates me"]:
        assert session.send(text).meta["routed_to"] == "eliza"


def test_a_reply_the_router_refuses_writes_nothing_and_the_accepted_ones_effects_are_written(store):
    unsure, sure = Teacher("unsure", 0.1), Teacher("sure", 0.9)
    router = RouterBot([Link("unsure", unsure, 0.5), Link("sure", sure, 0.5)])
    session, _ = ChatSession.start(store, "router", bot=router)
    assert session.send("hello").text == "sure: hello"
    assert unsure.stored == [] and sure.stored == ["hello"]
    assert session.dialogue.state["bots"]["unsure"] == {}  # its refused turn left its state as it was


def test_router_links_come_from_the_pool_so_conversations_share_their_bots(store):
    first, _ = ChatSession.start(store, "router", {"chain": "eliza"})
    second, _ = ChatSession.start(store, "router", {"chain": "eliza"})
    alone, _ = ChatSession.start(store, "eliza")
    assert first.bot is second.bot
    assert first.bot.links[0].bot is alone.bot
