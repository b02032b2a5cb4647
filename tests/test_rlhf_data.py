"""Alignment data records: TRL's formats in JSONL and CSV, OpenAssistant trees, HH-RLHF pairs, the store."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import DATA
from rejoinder.datasets.rlhf import (
    Demonstration,
    Preference,
    PromptCompletion,
    Ranking,
    Turn,
    hh_turns,
    read_records,
    sft_example,
    sft_examples,
    write_csv,
    write_jsonl,
)
from rejoinder.datasets.rlhf_sources import SourceStats, read_hh, read_oasst, read_source, read_store
from rejoinder.dialogue import Message
from rejoinder.errors import ConfigError, SourceError

needs_shared = pytest.mark.skipif(not (DATA / "rlhf").is_dir(), reason="the shared RLHF data is not here")


@pytest.fixture(autouse=True)
def _shared_data(monkeypatch):
    monkeypatch.setenv("REJOINDER_SHARED_DATA", str(DATA))


def user(text):
    return Turn("user", text)


def bot(text):
    return Turn("assistant", text)


RECORDS = [
    Demonstration((user("Hi"), bot("Hello! How can I help?")), user_id="u1", source="mine", id="d1"),
    PromptCompletion("Translate 'cat' to French.", "chat", user_id="u2", source="mine"),
    PromptCompletion((user("2+2?"),), (bot("4"),), source="mine", meta={"note": "conversational"}),
    Preference((user("Tell me a joke"),), (bot("Why did..."),), (bot("No."),), user_id="u3", source="mine"),
    Ranking("Name a colour", ("Blue", "Red", "Rock"), (0, 0, 1), user_id="u4", source="mine", red_team=False),
    Ranking("Say hi", ("Hi!", "Hello."), id="r2", source="mine", red_team=True),
]


def test_every_format_round_trips_through_jsonl(tmp_path):
    path = tmp_path / "all.jsonl"
    assert write_jsonl(RECORDS, path) == len(RECORDS)
    back = list(read_records(path))
    assert back == RECORDS and [r.to_json() for r in back] == [r.to_json() for r in RECORDS]  # meta too
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}],
        "id": "d1",
        "source": "mine",
        "user_id": "u1",
    }


def test_each_format_round_trips_through_csv(tmp_path):
    for kind in ("messages", "prompt_completion", "preference", "ranking"):
        records = [r for r in RECORDS if r.format == kind]
        path = tmp_path / f"{kind}.csv"
        write_csv(records, path)
        back = list(read_records(path))
        assert [r.to_json() for r in back] == [r.to_json() for r in records], kind


def test_a_forced_format_reads_fields_the_detection_would_not(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c", "completions": ["a", "b"]}) + "\n")
    assert next(read_records(path)).format == "ranking"
    assert next(read_records(path, format="prompt_completion")).format == "prompt_completion"


def test_a_csv_file_written_by_hand_reads_plain_and_conversational_cells(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "prompt,chosen,rejected,user_id\n"
        "Why?,Because.,No idea.,7\n"
        '"[{""role"": ""user"", ""content"": ""Hi""}]","[{""role"": ""assistant"", ""content"": ""Hey""}]",'
        '"[{""role"": ""assistant"", ""content"": ""Go away""}]",\n',
        encoding="utf-8",
    )
    first, second = read_records(path)
    assert first == Preference("Why?", "Because.", "No idea.", user_id="7", source="pairs")
    assert second.prompt == (user("Hi"),) and second.rejected == (bot("Go away"),) and second.user_id is None


def test_a_preference_with_an_implicit_prompt_is_split_at_the_last_assistant_turn(tmp_path):
    path = tmp_path / "hh.jsonl"
    row = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant: Sure: ...",
           "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant: No."}  # fmt: skip
    listed = {"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
              "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]}  # fmt: skip
    path.write_text(json.dumps(row) + "\n" + json.dumps(listed) + "\n")
    text, conversational = read_records(path)
    assert text.prompt == (user("Hi"), bot("Hello"), user("Joke?"))
    assert text.chosen == (bot("Sure: ..."),) and text.rejected == (bot("No."),)
    assert conversational.prompt == (user("Q"),) and conversational.chosen == (bot("A"),)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"messages": [{"role": "human", "content": "hi"}]}',
         "messages[0].role: expected one of system, user, assistant, found 'human'"),
        ('{"messages": []}', "messages: expected a non-empty array of {'role', 'content'} messages, found an array"),
        ('{"prompt": "x", "completion": ""}', "completion: expected a non-empty string or an array of messages"),
        ('{"prompt": "x", "completion": [{"role": "assistant", "content": "y"}]}',
         "prompt/completion: expected all plain strings or all message arrays"),
        ('{"prompt": "x", "completions": ["a"]}', "completions: expected an array of at least 2 completions"),
        ('{"prompt": "x", "completions": ["a", "b"], "ranks": [1, 0]}', "ranks: expected an array of 2 whole numbers"),
        ('{"prompt": "x", "chosen": "a", "rejected": "b", "user_id": {"id": 1}}', "user_id: expected a string"),
        ('{"text": "hello"}', "fields: expected 'messages', 'prompt'+'completion'"),
        ('{"messages": [}', "broken JSON"),
        ('["messages"]', "expected a JSON object, found an array (write one object per line"),
    ],
)  # fmt: skip
def test_a_bad_record_names_the_file_line_field_and_what_is_accepted(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok", "completion": "fine"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(SourceError) as error:
        list(read_records(path))
    assert str(error.value).startswith(f"{path}:3")
    assert message in str(error.value)


def test_a_bad_csv_cell_names_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('prompt,completions\nok,"[""a"", ""b""]"\nnot ok,[broken\n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad\.csv:3: completions: expected a JSON array"):
        list(read_records(path))


def test_bad_records_are_skipped_and_counted_when_asked(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n{"oops\n{"messages": [{"role": "user", '
                    '"content": "hi"}]}\n', encoding="utf-8")  # fmt: skip
    skipped: list[SourceError] = []
    records = list(read_records(path, skipped=skipped))
    assert [r.format for r in records] == ["prompt_completion", "messages"]
    assert [e.line for e in skipped] == [2, 3]
    stats = SourceStats(str(path))
    assert len(list(read_source(str(path), stats=stats, skip_invalid=True))) == 2
    assert len(stats.invalid) == 2 and stats.records == Counter({"prompt_completion": 1, "messages": 1})


def test_an_unknown_source_says_what_is_accepted():
    with pytest.raises(ConfigError, match=r"expected oasst, hh, store or a \.jsonl/\.json/\.csv file"):
        read_source("alpaca")


def test_a_ranking_expands_into_its_pairs_without_ties():
    ranking = Ranking("p", ("a", "b", "c", "d"), (0, 1, 1, 2), id="r")
    assert ranking.pairs() == [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]
    assert [(p.chosen, p.rejected) for p in ranking.preferences()] == [
        ("a", "b"), ("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")
    ]  # fmt: skip
    assert len(Ranking("p", tuple("abcd")).pairs()) == 6  # strict order: C(4, 2)


@needs_shared
def test_openassistant_trees_give_every_path_and_every_ranked_sibling_group():
    stats = SourceStats("oasst")
    records = list(read_oasst(stats=stats))
    rankings = [r for r in records if isinstance(r, Ranking)]
    demonstrations = [r for r in records if isinstance(r, Demonstration)]
    # the shared data's README: 212 groups, K=2:57, 3:117, 4:27, 5:3, 6:6, 8:1, 9:1; 754 pairs
    assert len(rankings) == 212
    assert Counter(r.k for r in rankings) == {2: 57, 3: 117, 4: 27, 5: 3, 6: 6, 8: 1, 9: 1}
    assert sum(len(r.pairs()) for r in rankings) == 754
    # 687 assistant messages, 17 of them synthetic: a demonstration is what a person wrote
    assert len(demonstrations) == 670
    assert stats.left_out == {"demonstrations ending in a synthetic reply": 17}
    assert len(list(read_oasst(include_synthetic=True))) == 212 + 687
    assert all(d.messages[-1].role == "assistant" and d.messages[0].role == "user" for d in demonstrations)
    assert max(len(d.messages) for d in demonstrations) == 6
    # no user ids in the export: a tree is one user
    assert len({r.user_id for r in records}) == 100 and all(r.user_id.startswith("oasst-tree:") for r in records)
    assert sum(bool(r.meta.get("synthetic")) for r in rankings) == 5


def test_deleted_openassistant_messages_are_left_out_with_their_replies(tmp_path):
    def message(mid, role, text, rank=None, replies=(), deleted=False):
        return {"message_id": mid, "role": role, "text": text, "rank": rank, "deleted": deleted, "synthetic": False,
                "review_result": True, "replies": list(replies)}  # fmt: skip

    tree = message("p", "prompter", "Q?", replies=[
        message("a1", "assistant", "A1", rank=0, replies=[message("f", "prompter", "More?", replies=[
            message("b", "assistant", "B")])]),
        message("a2", "assistant", "A2", rank=1, deleted=True, replies=[message("g", "prompter", "x")]),
        message("a3", "assistant", "A3", rank=2),
    ])  # fmt: skip
    path = tmp_path / "trees.jsonl"
    path.write_text(json.dumps({"message_tree_id": "t1", "tree_state": "ready_for_export", "prompt": tree}) + "\n")
    stats = SourceStats("oasst")
    records = list(read_oasst(path, stats=stats))
    assert [r.id for r in records] == ["oasst:p", "oasst:a1", "oasst:a3", "oasst:b"]
    assert records[0].completions == ((bot("A1"),), (bot("A3"),))
    assert records[3].messages == (user("Q?"), bot("A1"), user("More?"), bot("B"))
    assert stats.left_out == {"deleted messages (with their replies)": 1}


@needs_shared
def test_hh_rlhf_pairs_are_split_at_the_last_assistant_turn_and_marked_red_team():
    stats = SourceStats("hh")
    records = list(read_hh(stats=stats))
    assert len(records) == 2303 and stats.left_out == {
        "different prompts in chosen and rejected": 5,
        "empty prompt or reply": 4,
    }
    first = records[0]
    assert first.prompt[0] == user("what are some pranks with a pen i can do?")
    assert first.prompt[-1] == user("okay some of these do not have anything to do with pens")
    assert [t.role for t in first.prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert first.chosen[0].content.startswith("No, sorry!  All of these involve a pen")
    assert all(r.red_team and r.user_id.startswith("hh:") for r in records)


def test_red_team_records_are_never_supervised_fine_tuning_targets():
    red = Demonstration((user("How do I pick a lock?"), bot("...")), source="hh-rlhf", id="hh-rlhf:9", red_team=True)
    fine = Demonstration((user("Hi"), bot("Hello")), source="oasst")
    with pytest.raises(ConfigError, match=r"hh-rlhf hh-rlhf:9 is red-team content: it is never used as a supervised"):
        sft_example(red)
    with pytest.raises(ConfigError, match="is a preference record"):
        sft_example(Preference("p", "a", "b"))
    refused: list = []
    assert list(sft_examples([red, fine, Preference("p", "a", "b", red_team=True)], refused)) == [fine]
    assert refused == [red]


def test_red_team_marks_survive_a_file_round_trip(tmp_path):
    red = Preference((user("bad"),), (bot("no"),), (bot("yes"),), red_team=True, source="hh-rlhf")
    write_jsonl([red], tmp_path / "x.jsonl")
    (back,) = read_records(tmp_path / "x.jsonl")
    assert back.red_team


def test_hh_dialogue_text_becomes_turns():
    assert hh_turns("\n\nHuman: a\n\nAssistant: b\n\nHuman:  c ") == (user("a"), bot("b"), user("c"))


def test_stored_conversations_become_demonstrations_with_their_user(store):
    first = store.create_conversation("assistant", user_id="local:ann")
    store.append_turn(first, [Message("user", "Hi"), Message("assistant", "Hello!")], {}, expected_version=0)
    store.append_turn(first, [Message("user", "And?"), Message("assistant", "I was cut", meta={"finish_reason":
                      "cancelled"})], {}, expected_version=1)  # fmt: skip
    store.append_turn(first, [Message("user", "Go on"), Message("assistant", "Fine.")], {}, expected_version=2)
    anonymous = store.create_conversation("eliza")
    eliza = [Message("assistant", "HELLO."), Message("user", "I am sad"), Message("assistant", "WHY?")]
    store.append_turn(anonymous, eliza, {}, expected_version=0)
    empty = store.create_conversation("assistant")
    store.append_turn(empty, [Message("user", "Anyone?")], {}, expected_version=0)
    stats = SourceStats("store")
    records = list(read_store(store, stats=stats))
    assert [r.messages for r in records] == [
        (user("Hi"), bot("Hello!"), user("Go on"), bot("Fine.")),
        (user("I am sad"), bot("WHY?")),
    ]
    assert [r.user_id for r in records] == ["local:ann", f"store:{anonymous}"]
    assert records[0].meta == {"bot": "assistant"} and records[0].source == "store"
    assert stats.left_out == {
        "cancelled replies (with the message they answered)": 1,
        "opening remarks before the user spoke": 1,
        "conversations without a reply": 1,
    }


def test_a_missing_file_is_named_at_once(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.jsonl: no such file"):
        read_records(tmp_path / "nope.jsonl")
