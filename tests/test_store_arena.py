"""Arena battles in the store: two conversations, one vote, positions counted."""

from __future__ import annotations

import pytest

from rejoinder.errors import BattleNotFound, ConcurrentUpdate, InvalidMessage


def battle(store, a: str = "eliza", b: str = "retrieval", user: str | None = "visitor-1"):
    left = store.create_conversation(a, user_id=user)
    right = store.create_conversation(b, user_id=user)
    return store.create_battle(a, b, left, right, user_id=user)


def test_a_battle_stores_both_conversations_the_user_the_time_and_the_positions(store):
    created = battle(store)
    got = store.battle(created.id)
    assert (got.contestant_a, got.contestant_b, got.user_id) == ("eliza", "retrieval", "visitor-1")
    assert got.vote is None and got.voted_at is None and got.created_at.tzinfo is not None
    assert store.battle_of(got.conversation_b).id == got.id
    assert store.battle_of(store.create_conversation("eliza")) is None


def test_a_battle_has_one_vote_and_a_second_is_refused(store):
    created = battle(store)
    voted = store.vote_battle(created.id, "tie")
    assert voted.vote == "tie" and voted.voted_at is not None
    with pytest.raises(ConcurrentUpdate, match="already has a vote"):
        store.vote_battle(created.id, "a")
    assert store.battle(created.id).vote == "tie"


def test_an_unknown_vote_or_battle_is_refused_by_name(store):
    created = battle(store)
    with pytest.raises(InvalidMessage, match="expected one of a, b, tie, bad"):
        store.vote_battle(created.id, "left")
    with pytest.raises(BattleNotFound):
        store.vote_battle("nope", "a")


def test_arena_sides_stay_out_of_the_conversation_list_and_positions_are_counted(store):
    plain = store.create_conversation("eliza", user_id="visitor-1")
    first = battle(store)
    battle(store, "retrieval", "eliza")
    listed = [c.id for c in store.list_conversations(user_id="visitor-1")]
    assert listed == [plain]
    assert first.conversation_a in [c.id for c in store.list_conversations(user_id="visitor-1", arena=True)]
    assert store.left_counts() == {"eliza": (1, 1), "retrieval": (1, 1)}
    store.vote_battle(first.id, "a")
    assert [b.id for b in store.battles(voted=True)] == [first.id]
    assert len(store.battles(voted=False)) == 1


def test_the_votes_so_far_are_counted_without_loading_the_battles(store):
    assert store.votes_so_far() == (0, None)
    first = battle(store)
    battle(store)
    voted = store.vote_battle(first.id, "a")
    assert store.votes_so_far() == (1, voted.voted_at)
