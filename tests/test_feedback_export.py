"""``rejoinder data export``: the chat's feedback and the arena's votes as files the training steps read."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_tiny import tiny_model_dir, tiny_tokenizer
from rejoinder.bots import create_bot
from rejoinder.chat import ChatSession
from rejoinder.datasets.feedback import (
    ExportSummary,
    export,
    read_demonstrations,
    read_preferences,
    read_rankings,
    write_jsonl_atomically,
)
from rejoinder.datasets.rlhf import Demonstration, Turn, read_records
from rejoinder.dialogue import Dialogue, Message, Reply, utcnow
from rejoinder.errors import ConfigError


def user(text: str) -> Turn:
    return Turn("user", text)


def bot(text: str) -> Turn:
    return Turn("assistant", text)


class Versions:
    """ELIZA, each answer marked with its number: regenerating restores ELIZA's state, so without
    the mark its second answer to a message would repeat the first word for word."""

    name = "eliza"

    def __init__(self) -> None:
        self.eliza = create_bot("eliza")
        self.answers = 0

    def greet(self, dialogue: Dialogue) -> Reply | None:
        return self.eliza.greet(dialogue)

    def respond(self, dialogue: Dialogue) -> Reply:
        self.answers += 1
        reply = self.eliza.respond(dialogue)
        return replace(reply, text=f"{reply.text} (version {self.answers})")


def chat(store, who: str, *texts: str) -> ChatSession:
    session, _ = ChatSession.start(store, "eliza", user_id=who, bot=Versions())
    for text in texts:
        session.send(text)
    return session


def last_reply(session: ChatSession):
    return session.dialogue.messages[-1]


def versions(session: ChatSession, n: int) -> list:
    """The last reply and ``n - 1`` regenerated versions of it, oldest first."""
    first = last_reply(session)
    for _ in range(n - 1):
        session.regenerate()
    found = session.store.siblings(first.id)
    assert len(found) == n and found[0].id == first.id
    return found


def choose(store, session: ChatSession, message_id: str, who: str) -> None:
    """What the web chat does when a user moves to another version of a reply."""
    session.switch_branch(message_id)
    store.add_feedback(message_id, "choice", {"kept": message_id, "of": [m.id for m in store.siblings(message_id)]},
                       user_id=who)  # fmt: skip


def rate(store, message_id: str, score: int, who: str) -> None:
    store.add_feedback(message_id, "rating", {"score": score}, user_id=who)


def battle(store, who: str, vote: str | None, *texts: str):
    """An arena battle: plain ELIZA on the left, friendly ELIZA (mixed case) on the right."""
    sides = []
    for options in ({}, {"friendly": True}):
        session, _ = ChatSession.start(store, "eliza", options, user_id=who)
        for text in texts:
            session.send(text)
        sides.append(session)
    found = store.create_battle("eliza", "eliza-friendly", *(s.conversation_id for s in sides), user_id=who)
    if vote is not None:
        found = store.vote_battle(found.id, vote)
    return found, [s.dialogue.messages for s in sides]


# --------------------------------------------------------------------------------------------
# Preferences


def test_arena_votes_become_preferences_with_the_voter_and_ties_and_both_bad_are_skipped(store):
    won, (left, right) = battle(store, "ann", "b", "I am sad about my mother")
    battle(store, "ann", "tie", "I am sad about my mother")
    battle(store, "ann", "bad", "My father hates me")
    battle(store, "ann", None, "Nobody voted on this")
    summary = ExportSummary("preferences")
    [record] = list(read_preferences(store, summary=summary))
    assert left[0].text != right[0].text  # the two openings differ: they are not part of the prompt
    assert record.prompt == (user("I am sad about my mother"),)
    assert record.chosen == (bot(right[-1].text),) and record.rejected == (bot(left[-1].text),)
    assert record.chosen != record.rejected
    assert (record.user_id, record.source, record.id) == ("ann", "arena", f"arena:{won.id}")
    assert record.meta == {"battle": won.id, "chosen_bot": "eliza-friendly", "rejected_bot": "eliza", "turns": 1}
    assert summary.exported == {"arena": 1}
    assert summary.skipped == {"arena ties": 1, "arena votes 'both bad'": 1}


def test_a_battle_of_several_turns_is_one_pair_from_the_first_user_message_with_every_later_turn(store):
    _, (left, right) = battle(store, "ann", "a", "I am sad about my mother", "My father hates me")
    [record] = list(read_preferences(store))
    assert record.prompt == (user("I am sad about my mother"),)
    assert record.chosen == (bot(left[2].text), user("My father hates me"), bot(left[4].text))
    assert record.rejected == (bot(right[2].text), user("My father hates me"), bot(right[4].text))
    assert record.meta["turns"] == 2


def test_a_battle_with_a_cancelled_reply_is_skipped(store):
    sides = []
    for reply in (Message("assistant", "WHY?"), Message("assistant", "Tell me", meta={"finish_reason": "cancelled"})):
        cid = store.create_conversation("eliza", user_id="ann")
        store.append_turn(cid, [Message("user", "I am sad"), reply], {}, expected_version=0)
        sides.append(cid)
    store.vote_battle(store.create_battle("eliza", "eliza-friendly", *sides, user_id="ann").id, "a")
    summary = ExportSummary("preferences")
    assert list(read_preferences(store, summary=summary)) == []
    assert summary.skipped == {"arena battles with a cancelled reply": 1}


def test_the_kept_version_is_chosen_over_each_other_version_with_the_branch_up_to_their_parent(store):
    session = chat(store, "bob", "Hello", "I am sad about my mother")
    first, second, third = versions(session, 3)
    choose(store, session, third.id, "bob")
    choose(store, session, first.id, "bob")  # the latest choice of a user on a sibling set wins
    opening, _, hello_reply = store.load_dialogue(session.conversation_id, leaf=first.parent_id).messages[:3]
    summary = ExportSummary("preferences")
    records = list(read_preferences(store, summary=summary))
    assert [(r.chosen, r.rejected) for r in records] == [
        ((bot(first.text),), (bot(second.text),)),
        ((bot(first.text),), (bot(third.text),)),
    ]
    assert opening.role == "assistant"  # ELIZA's greeting, before the user spoke, is left out of the prompt
    assert all(r.prompt == (user("Hello"), bot(hello_reply.text), user("I am sad about my mother")) for r in records)
    assert {r.user_id for r in records} == {"bob"} and {r.source for r in records} == {"choice"}
    assert records[0].id.startswith("choice:") and records[0].id.endswith(f":{second.id}")
    assert records[0].meta == {"conversation": session.conversation_id, "chosen": first.id, "rejected": second.id}
    assert summary.exported == {"choice": 2}


def test_a_version_identical_to_the_kept_one_makes_no_pair(store):
    session, _ = ChatSession.start(store, "eliza", user_id="bob")  # plain ELIZA answers again word for word
    session.send("I am sad about my mother")
    first, again = versions(session, 2)
    assert first.text == again.text
    choose(store, session, first.id, "bob")
    summary = ExportSummary("preferences")
    assert list(read_preferences(store, summary=summary)) == []
    assert summary.skipped == {
        "versions identical to the kept one": 1,
        "choices with no other version to compare": 1,
    }


# --------------------------------------------------------------------------------------------
# Demonstrations


def test_thumbs_up_replies_are_demonstrations_and_each_users_latest_rating_counts(store):
    session = chat(store, "carol", "Hello")
    hello = last_reply(session)
    session.send("I am sad about my mother")
    sad = last_reply(session)
    session.send("My father hates me")
    father = last_reply(session)
    rate(store, hello.id, 1, "carol")
    rate(store, sad.id, 1, "carol")
    rate(store, sad.id, -1, "carol")  # changed her mind: not a demonstration
    rate(store, father.id, -1, "carol")
    rate(store, father.id, 1, "carol")
    summary = ExportSummary("sft")
    records = list(read_demonstrations(store, summary=summary))
    assert [r.messages for r in records] == [
        (user("Hello"), bot(hello.text)),
        (user("Hello"), bot(hello.text), user("I am sad about my mother"), bot(sad.text),
         user("My father hates me"), bot(father.text)),
    ]  # fmt: skip
    assert {r.user_id for r in records} == {"carol"} and {r.source for r in records} == {"rating"}
    assert [r.id for r in records] == [f"rating:{hello.id}", f"rating:{father.id}"]
    assert summary.exported == {"rating": 2} and summary.skipped == {"replies rated down (or neutral)": 1}


def test_a_reply_rated_up_by_one_user_and_down_by_another_is_skipped(store):
    session = chat(store, "carol", "Hello")
    rate(store, last_reply(session).id, 1, "carol")
    rate(store, last_reply(session).id, -1, "admin")
    summary = ExportSummary("sft")
    assert list(read_demonstrations(store, summary=summary)) == []
    assert summary.skipped == {"replies rated up by one user and down by another": 1}


def test_feedback_given_by_someone_else_keeps_the_prompts_author_as_user_and_names_the_judge(store):
    session = chat(store, "carol", "Hello")
    rate(store, last_reply(session).id, 1, "labeler:7")
    [record] = list(read_demonstrations(store))
    assert record.user_id == "carol" and record.meta["judge"] == "labeler:7"


# --------------------------------------------------------------------------------------------
# Rankings


def test_rankings_from_a_ranking_a_choice_and_mixed_thumbs_are_best_first(store):
    ranked = chat(store, "dan", "I am sad about my mother")
    r1, r2, r3 = versions(ranked, 3)
    store.add_feedback(r1.id, "ranking", {"order": [r3.id, r2.id, r1.id], "ties": [[r2.id, r1.id]]}, user_id="dan")
    chosen = chat(store, "dan", "My father hates me")
    c1, c2, c3 = versions(chosen, 3)
    choose(store, chosen, c2.id, "dan")
    thumbed = chat(store, "dan", "Hello")
    t1, t2, t3 = versions(thumbed, 3)
    rate(store, t1.id, -1, "dan")
    rate(store, t2.id, 1, "dan")  # t3 unrated: between them
    alike = chat(store, "dan", "You are like my father")
    a1, a2 = versions(alike, 2)
    rate(store, a1.id, 1, "dan")
    rate(store, a2.id, 1, "dan")
    summary = ExportSummary("rankings")
    records = {r.source: r for r in read_rankings(store, summary=summary)}
    assert records["ranking"].completions == ((bot(r3.text),), (bot(r2.text),), (bot(r1.text),))
    assert records["ranking"].ranks == (0, 1, 1)
    assert records["ranking"].prompt == (user("I am sad about my mother"),)
    assert records["choice"].completions == ((bot(c2.text),), (bot(c1.text),), (bot(c3.text),))
    assert records["choice"].ranks == (0, 1, 1)
    assert records["rating"].completions == ((bot(t2.text),), (bot(t3.text),), (bot(t1.text),))
    assert records["rating"].ranks is None  # a strict order
    assert {r.user_id for r in records.values()} == {"dan"}
    assert summary.exported == {"ranking": 1, "choice": 1, "rating": 1}
    assert summary.skipped == {"sibling sets whose thumbs are all alike": 1}


def test_on_one_sibling_set_a_users_ranking_beats_their_choice_which_beats_their_thumbs(store):
    session = chat(store, "eve", "I am sad about my mother")
    v1, v2, v3 = versions(session, 3)
    rate(store, v1.id, 1, "eve")
    rate(store, v3.id, -1, "eve")
    choose(store, session, v2.id, "eve")
    summary = ExportSummary("rankings")
    [record] = list(read_rankings(store, summary=summary))
    assert record.source == "choice" and record.completions[0] == (bot(v2.text),)
    assert summary.skipped == {"signals superseded by a more explicit one on the same set": 1}
    store.add_feedback(v3.id, "ranking", {"order": [v3.id, v1.id, v2.id]}, user_id="eve")
    rate(store, v1.id, 1, "frank")  # another user's thumbs are their own ranking
    rate(store, v2.id, -1, "frank")
    records = {r.source: r for r in read_rankings(store)}
    assert records["ranking"].completions == ((bot(v3.text),), (bot(v1.text),), (bot(v2.text),))
    assert records["ranking"].ranks is None
    assert records["rating"].meta["judge"] == "frank" and records["rating"].user_id == "eve"
    assert records["rating"].completions == ((bot(v1.text),), (bot(v3.text),), (bot(v2.text),))


def test_a_ranking_of_messages_that_are_not_siblings_is_skipped(store):
    session = chat(store, "dan", "Hello", "I am sad about my mother")
    hello, sad = session.dialogue.messages[2], session.dialogue.messages[4]
    store.add_feedback(sad.id, "ranking", {"order": [sad.id, hello.id]}, user_id="dan")
    summary = ExportSummary("rankings")
    assert list(read_rankings(store, summary=summary)) == []
    assert summary.skipped == {"rankings of messages that are not replies to one message": 1}


# --------------------------------------------------------------------------------------------
# Since, files and the command


def test_since_keeps_only_judgements_given_after_it(store):
    session = chat(store, "carol", "Hello")
    old = last_reply(session)
    rate(store, old.id, 1, "carol")
    cut = utcnow()
    session.send("I am sad about my mother")
    rate(store, last_reply(session).id, 1, "carol")
    summary = ExportSummary("sft")
    records = list(read_demonstrations(store, since=cut, summary=summary))
    assert [r.messages[-1] for r in records] == [bot(last_reply(session).text)]
    assert summary.skipped == {"ratings given before --since": 1}
    assert len(list(read_demonstrations(store, since=cut - timedelta(days=1)))) == 2


def test_a_failed_export_leaves_the_previous_file_whole_and_no_partial_file(tmp_path):
    out = tmp_path / "prefs.jsonl"
    out.write_text('{"messages": [{"role": "user", "content": "old"}]}\n', encoding="utf-8")
    before = out.read_bytes()

    def records():
        yield Demonstration((user("new"), bot("reply")))
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_jsonl_atomically(records(), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefs.jsonl"]


def test_an_export_is_read_back_by_the_training_data_reader(store, tmp_path):
    session = chat(store, "carol", "Hello")
    rate(store, last_reply(session).id, 1, "carol")
    summary = export("sft", store, tmp_path / "out" / "sft.jsonl")
    [record] = list(read_records(tmp_path / "out" / "sft.jsonl"))
    assert summary.total == 1 and isinstance(record, Demonstration) and record.user_id == "carol"
    with pytest.raises(ConfigError, match=r"name it \*\.jsonl"):
        export("sft", store, tmp_path / "sft.txt")


def test_rejoinder_data_export_writes_the_file_and_prints_the_counts(db_url, tmp_path):
    from rejoinder.cli import app
    from rejoinder.store import Store

    store = Store(db_url)
    battle(store, "ann", "a", "I am sad about my mother")
    battle(store, "ann", "tie", "My father hates me")
    store.close()
    out = tmp_path / "prefs.jsonl"
    result = CliRunner().invoke(app, ["data", "export", "preferences", "--out", str(out), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "arena votes" in result.output and "arena ties" in result.output
    assert "wrote 1 record to" in result.output
    [line] = out.read_text(encoding="utf-8").splitlines()
    assert set(json.loads(line)) >= {"prompt", "chosen", "rejected", "user_id", "source", "id"}


def test_rejoinder_data_export_names_the_accepted_kinds_and_an_unwritable_path(db_url, tmp_path):
    from rejoinder.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["data", "export", "votes", "--out", str(tmp_path / "x.jsonl"), "--db", db_url])
    assert result.exit_code == 2 and "expected one of preferences, sft, rankings" in result.output
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    result = runner.invoke(app, ["data", "export", "sft", "--out", str(blocked / "sft.jsonl"), "--db", db_url])
    assert result.exit_code == 2 and f"cannot write {blocked / 'sft.jsonl'}" in result.output
    result = runner.invoke(app, ["data", "export", "sft", "--out", str(tmp_path / "s.jsonl"), "--since", "May"])
    assert result.exit_code == 2 and "--since 'May'" in result.output


# --------------------------------------------------------------------------------------------
# The training steps read the exports as they are


def feedback_store(store) -> None:
    """Six users' battles, choices and thumbs: something of every kind to export."""
    questions = ["I am sad about my mother", "My father hates me", "Hello", "You are like my father",
                 "I need some help", "I remember my dog"]  # fmt: skip
    for i, question in enumerate(questions):
        who = f"user{i}"
        battle(store, who, "ab"[i % 2], question)
        session = chat(store, who, question)
        first, second, third = versions(session, 3)
        choose(store, session, (first, second, third)[i % 3].id, who)
        rate(store, second.id, 1, who)


def exports(store, tmp_path: Path) -> dict[str, Path]:
    feedback_store(store)
    paths = {}
    for kind in ("preferences", "sft", "rankings"):
        paths[kind] = tmp_path / f"{kind}.jsonl"
        assert export(kind, store, paths[kind]).total >= 6
    return paths


@pytest.mark.parametrize("kind", ["preferences", "rankings"])
def test_a_tiny_reward_model_trains_on_an_export(store, tmp_path, kind):
    pytest.importorskip("transformers")
    from rejoinder.align.reward import RewardConfig, train_reward

    data = exports(store, tmp_path)[kind]
    config = RewardConfig(model=str(tiny_model_dir(tmp_path / "tiny")), data=[str(data)], output_dir=tmp_path / "run",
                          max_steps=2, held_out=0.0, normalise_prompts=0, save_steps=1000, threads=1,
                          precision="fp32")  # fmt: skip
    report = train_reward(config).report
    assert report["steps"] == 2 and report["train_groups"] >= 6
    assert set(report["train_groups_by_k"]) == ({2} if kind == "preferences" else {3})
    assert (tmp_path / "run" / "reward" / ".complete").is_file()


def test_rl_dpo_and_sft_read_their_data_from_the_exports(store, tmp_path):
    pytest.importorskip("transformers")
    from rejoinder.align.rl.config import RLConfig
    from rejoinder.align.rl.dpo import preference_rows
    from rejoinder.align.rl.trainer import read_prompts
    from rejoinder.align.training_data import by_user, read_training_data

    paths = exports(store, tmp_path)
    for kind in ("preferences", "sft", "rankings"):
        train, held = read_prompts(RLConfig(data=[str(paths[kind])]), tiny_tokenizer())
        prompts = [*train, *held]
        assert len(prompts) == len(set(prompts)) >= 6
        assert all(p[-1].role == "user" and p[0].role == "user" for p in prompts)
    rows = preference_rows(RLConfig(algo="dpo", data=[str(paths["preferences"])]))
    assert 0 < len(rows) <= 18  # 6 arena pairs and 12 choice pairs, less those of the held-out prompts
    assert all(row["chosen"] != row["rejected"] and row["prompt"][-1]["role"] == "user" for row in rows)
    train, held, _ = read_training_data([str(paths["sft"])], ("messages", "prompt_completion"), held_out=0.1,
                                        seed=0, key=by_user)  # fmt: skip
    assert len(train) + len(held) == 6
