"""Corpus readers for the retrieval bot: shipped corpora, the generic JSONL and CSV formats, errors."""

from __future__ import annotations

import csv
import json
import logging
from itertools import islice
from pathlib import Path

import pytest

from conftest import DATA
from rejoinder.datasets.corpus import (
    Exchange,
    conversation_exchanges,
    read_chatterbot_corpus,
    read_chitchat,
    read_corpus,
    read_csv,
    read_jsonl,
    read_self_dialogue,
)
from rejoinder.errors import ConfigError, SourceError

SELF_DIALOGUE = DATA / "dialogues" / "self_dialogue_corpus"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, *records: object) -> Path:
    return write(path, "".join(json.dumps(record) + "\n" for record in records))


# --------------------------------------------------------------------------------------------
# Turns to exchanges


def test_every_turn_after_the_first_answers_the_turns_before_it():
    exchanges = list(conversation_exchanges(["a", "b", "c"], source="s", conversation="c1"))
    assert exchanges == [
        Exchange(("a",), "b", "s", "c1"),
        Exchange(("a", "b"), "c", "s", "c1"),
    ]


def test_window_limits_context_to_the_latest_turns():
    exchanges = list(conversation_exchanges(["1", "2", "3", "4", "5"], source="s", conversation=None, window=2))
    assert [e.context for e in exchanges] == [("1",), ("1", "2"), ("2", "3"), ("3", "4")]
    assert exchanges[-1].reply == "5"


def test_whitespace_is_normalised_and_blank_turns_skipped():
    turns = ["  Hello \n there ", "   ", "", "How\tare   you?"]
    assert list(conversation_exchanges(turns, source="s", conversation=None)) == [
        Exchange(("Hello there",), "How are you?", "s", None)
    ]


def test_window_below_one_is_refused():
    with pytest.raises(ConfigError, match="window"):
        list(conversation_exchanges(["a", "b"], source="s", conversation=None, window=0))


# --------------------------------------------------------------------------------------------
# Chit Chat Challenge


def test_chitchat_joins_the_messages_of_a_turn_with_a_space():
    exchanges = list(islice(read_chitchat(), 30))
    # The dataset opens with "Hello" and "How are you doing today?" sent by one person as one turn.
    assert exchanges[0] == Exchange(
        ("Hello How are you doing today?",),
        "whats up MD im doing good how are you doing?",
        "chitchat",
        "a07edb12-6b91-4138-b11e-02421888d699",
    )
    assert all(e.reply and all(e.context) and len(e.context) <= 3 for e in exchanges)


def test_chitchat_window_limits_context():
    assert max(len(e.context) for e in islice(read_chitchat(window=1), 20)) == 1


# --------------------------------------------------------------------------------------------
# Self-dialogue Corpus

BLOCKED = "A1BLOCKEDWORKER"
ALLOWED = "A2ALLOWEDWORKER"


def fake_self_dialogue(root: Path) -> Path:
    """A two-topic corpus folder; the header lists sentence columns in lexicographic order, like MTurk's."""
    sentences = [f"Answer.sentence{n}" for n in sorted(range(1, 12), key=str)]  # 1, 10, 11, 2, ..., 9
    header = ["HITId", "AssignmentId", "WorkerId", "Input.filler", *sentences, "Approve"]

    def row(worker: str, texts: dict[int, str]) -> list[str]:
        return [
            "H",
            "AS-" + worker,
            worker,
            "x",
            *(texts.get(int(c.removeprefix("Answer.sentence")), "") for c in sentences),
            "",
        ]

    movies = root / "corpus" / "movies"
    movies.mkdir(parents=True)
    with (movies / "Batch_1_batch_results.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerow(row(ALLOWED, {n: f"turn {n}" for n in range(1, 12)}))
        writer.writerow(row(BLOCKED, {1: "blocked one", 2: "blocked two"}))
        writer.writerow(row(ALLOWED, {1: "first", 2: "", 3: "  third\nline ", 4: "fourth"}))
    music = root / "corpus" / "music"
    music.mkdir(parents=True)
    with (music / "Batch_2_batch_results.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerow(row(ALLOWED, {1: "do you like jazz?", 2: "I do."}))
    write(root / "blocked_workers.txt", f"{BLOCKED}\n")
    return root


def test_self_dialogue_orders_sentence_columns_by_number(tmp_path):
    exchanges = list(read_self_dialogue(fake_self_dialogue(tmp_path), window=20))
    first = [e for e in exchanges if e.conversation == "movies/Batch_1_batch_results/1"]
    assert [e.reply for e in first] == [f"turn {n}" for n in range(2, 12)]
    assert first[-1].context == tuple(f"turn {n}" for n in range(1, 11))
    assert {e.source for e in exchanges} == {"self_dialogue"}


def test_self_dialogue_skips_blocked_workers_and_never_keeps_worker_ids(tmp_path):
    exchanges = list(read_self_dialogue(fake_self_dialogue(tmp_path)))
    assert not any("blocked" in e.reply or any("blocked" in c for c in e.context) for e in exchanges)
    assert "movies/Batch_1_batch_results/2" not in {e.conversation for e in exchanges}
    for exchange in exchanges:
        fields = [*exchange.context, exchange.reply, exchange.source, exchange.conversation or ""]
        assert not any(worker in field for field in fields for worker in (BLOCKED, ALLOWED, "AS-"))


def test_self_dialogue_skips_empty_cells(tmp_path):
    exchanges = list(read_self_dialogue(fake_self_dialogue(tmp_path)))
    third = [e for e in exchanges if e.conversation == "movies/Batch_1_batch_results/3"]
    assert third == [
        Exchange(("first",), "third line", "self_dialogue", "movies/Batch_1_batch_results/3"),
        Exchange(("first", "third line"), "fourth", "self_dialogue", "movies/Batch_1_batch_results/3"),
    ]
    assert [e.conversation for e in exchanges if e.conversation.startswith("music/")] == [
        "music/Batch_2_batch_results/1"
    ]


def test_self_dialogue_missing_sentence_column_names_file_and_line(tmp_path):
    topic = tmp_path / "corpus" / "t"
    topic.mkdir(parents=True)
    path = write(topic / "b.csv", "WorkerId,Answer.sentence1,Answer.sentence3\nW,a,b\n")
    with pytest.raises(SourceError) as info:
        list(read_self_dialogue(tmp_path))
    assert (info.value.path, info.value.line) == (str(path), 1)
    assert "Answer.sentence2" in str(info.value)


def test_self_dialogue_unreadable_csv_names_file_and_line(tmp_path):
    topic = tmp_path / "corpus" / "t"
    topic.mkdir(parents=True)
    path = topic / "b.csv"
    path.write_bytes(b"WorkerId,Answer.sentence1,Answer.sentence2\nW,hi,there\nW,caf\xe9,x\n")
    with pytest.raises(SourceError) as info:
        list(read_self_dialogue(tmp_path))
    assert (info.value.path, info.value.line) == (str(path), 3)


def test_self_dialogue_folder_without_corpus_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="corpus/<topic>"):
        read_self_dialogue(tmp_path)


@pytest.mark.skipif(not SELF_DIALOGUE.is_dir(), reason="the Self-dialogue Corpus subset is not in shared/data")
def test_real_self_dialogue_subset_has_about_38_thousand_exchanges():
    # README: 2,655 dialogues and 40,680 utterances -> 38,025 exchanges before blocked rows and empty cells.
    count = sum(1 for _ in read_self_dialogue(SELF_DIALOGUE))
    assert 36_000 <= count <= 38_025


# --------------------------------------------------------------------------------------------
# chatterbot-corpus


def test_chatterbot_english_yields_exchanges():
    exchanges = list(read_chatterbot_corpus("english"))
    assert len(exchanges) > 1000
    assert {e.source for e in exchanges} == {"chatterbot:english"}
    assert Exchange(("What is AI?",), exchanges[0].reply, "chatterbot:english", "ai/0") == exchanges[0]


def test_chatterbot_tolerates_malformed_entries_and_keeps_scalars_as_written(tmp_path, caplog):
    path = write(
        tmp_path / "odd.yml",
        "categories: [odd]\n"
        "conversations:\n"
        "- - Is it on?\n"
        "  - yes\n"
        "  - 42\n"
        "- just a string - not a list\n"
        "- - [nested]\n"
        "  - list\n"
        "- - Hello\n"
        "  - Hi\n",
    )
    with caplog.at_level(logging.WARNING):
        exchanges = list(read_chatterbot_corpus("custom", path=path))
    assert [(e.context[-1], e.reply) for e in exchanges] == [("Is it on?", "yes"), ("yes", "42"), ("Hello", "Hi")]
    assert exchanges[0].source == "chatterbot:custom"
    assert "skipped 2 malformed" in caplog.text


def test_chatterbot_file_that_is_not_yaml_names_line_and_column(tmp_path):
    path = write(tmp_path / "bad.yml", "conversations:\n- - a\n  - [b\n")
    with pytest.raises(SourceError) as info:
        list(read_chatterbot_corpus(path=path))
    assert info.value.path == str(path)
    assert info.value.line is not None and info.value.column is not None


def test_chatterbot_file_without_conversations_names_the_field(tmp_path):
    path = write(tmp_path / "empty.yml", "categories: [x]\n")
    with pytest.raises(SourceError, match="'conversations'") as info:
        list(read_chatterbot_corpus(path=path))
    assert (info.value.path, info.value.line) == (str(path), 1)


def test_chatterbot_unknown_language_lists_the_available_ones():
    with pytest.raises(ConfigError, match="english"):
        read_chatterbot_corpus("klingon")


# --------------------------------------------------------------------------------------------
# Generic JSON Lines


def test_jsonl_reads_conversations_of_texts_and_of_speaker_turns(tmp_path):
    path = jsonl(
        tmp_path / "talks.jsonl",
        {"id": "c1", "turns": ["Hi there.", "Hello!", "Fine."]},
        {
            "turns": [
                {"speaker": "a", "text": "Hi."},
                {"speaker": "a", "text": "Anyone?"},
                {"speaker": "b", "text": "Hey."},
            ]
        },
    )
    assert list(read_jsonl(path)) == [
        Exchange(("Hi there.",), "Hello!", "talks", "c1"),
        Exchange(("Hi there.", "Hello!"), "Fine.", "talks", "c1"),
        Exchange(("Hi. Anyone?",), "Hey.", "talks", "2"),
    ]


def test_jsonl_reads_one_exchange_per_line_and_ignores_blank_lines(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write(
        path,
        json.dumps({"context": ["one", "two", "three", "four"], "reply": "five"})
        + "\n\n   \n"
        + json.dumps({"id": "x", "context": " How  are you? ", "reply": "Fine."})
        + "\n",
    )
    assert list(read_jsonl(path, window=2)) == [
        Exchange(("three", "four"), "five", "pairs", None),
        Exchange(("How are you?",), "Fine.", "pairs", "x"),
    ]


def test_jsonl_broken_json_names_line_and_column(tmp_path):
    path = write(tmp_path / "broken.jsonl", '{"turns": ["a", "b"]}\n\n{"turns": ["a",, "b"]}\n')
    with pytest.raises(SourceError, match="broken JSON") as info:
        list(read_jsonl(path))
    assert (info.value.path, info.value.line, info.value.column) == (str(path), 3, 16)


@pytest.mark.parametrize(
    ("record", "field", "expected"),
    [
        ({"turns": ["a", "b", "c", {"speaker": "a", "txt": "d"}]}, "turns[3].text", "a string"),
        ({"turns": ["a", 7]}, "turns[1]", "a string or"),
        ({"turns": "a b"}, "turns", "a list"),
        ({"context": ["a", None], "reply": "b"}, "context[1]", "a string"),
        ({"context": "a"}, "reply", "a string"),
        ({"id": 3, "turns": ["a", "b"]}, "id", "a string"),
    ],
)
def test_jsonl_wrong_shape_names_line_field_and_what_is_expected(tmp_path, record, field, expected):
    path = jsonl(tmp_path / "shape.jsonl", {"turns": ["fine", "line"]}, record)
    with pytest.raises(SourceError) as info:
        list(read_jsonl(path))
    assert info.value.line == 2
    assert info.value.reason.startswith(f"{field}: expected {expected}")


def test_jsonl_line_that_is_neither_shape_lists_both(tmp_path):
    path = jsonl(tmp_path / "neither.jsonl", {"text": "hi"})
    with pytest.raises(SourceError, match=r"'turns'.*'context' and 'reply'") as info:
        list(read_jsonl(path))
    assert info.value.line == 1


# --------------------------------------------------------------------------------------------
# Generic CSV


def test_csv_orders_turns_by_the_turn_column(tmp_path):
    path = write(
        tmp_path / "turns.csv",
        "conversation_id,turn,speaker,text\n"
        "c1,2,b,Hello!\nc1,1,a,Hi there.\nc1,3,a,Fine.\nc1,4,a,  And you? \nc2,1,a,Yo\n",
    )
    assert list(read_csv(path)) == [
        Exchange(("Hi there.",), "Hello!", "turns", "c1"),
        Exchange(("Hi there.", "Hello!"), "Fine. And you?", "turns", "c1"),
    ]


def test_csv_without_turn_column_keeps_file_order(tmp_path):
    path = write(tmp_path / "plain.csv", 'text,conversation_id\n"Hi,\nthere.",c1\nHello!,c1\nBye.,c2\nSee you.,c2\n')
    assert list(read_csv(path)) == [
        Exchange(("Hi, there.",), "Hello!", "plain", "c1"),
        Exchange(("Bye.",), "See you.", "plain", "c2"),
    ]


def test_csv_reads_one_exchange_per_row_with_context_turns_split_on_bars(tmp_path):
    path = write(tmp_path / "pairs.csv", "context,reply\none ||| two|||three,four\nsolo,reply\n")
    assert list(read_csv(path, window=2)) == [
        Exchange(("two", "three"), "four", "pairs", None),
        Exchange(("solo",), "reply", "pairs", None),
    ]


def test_csv_missing_columns_names_found_and_expected(tmp_path):
    path = write(tmp_path / "bad.csv", "id,utterance\nc1,hi\n")
    with pytest.raises(SourceError, match="found columns id, utterance; expected conversation_id,text") as info:
        list(read_csv(path))
    assert (info.value.path, info.value.line) == (str(path), 1)


def test_csv_bad_turn_value_names_the_line(tmp_path):
    path = write(tmp_path / "bad.csv", 'conversation_id,turn,text\nc1,1,hi\nc1,"two\nlines",there\nc1,x,again\n')
    with pytest.raises(SourceError, match="turn must be a whole number") as info:
        list(read_csv(path))
    assert info.value.line == 3


def test_csv_interleaved_conversation_is_refused_with_both_lines(tmp_path):
    path = write(tmp_path / "mixed.csv", "conversation_id,text\nc1,a\nc1,b\nc2,x\nc1,c\n")
    with pytest.raises(SourceError, match="began at line 2") as info:
        list(read_csv(path))
    assert info.value.line == 5


# --------------------------------------------------------------------------------------------
# Corpus specs


def test_read_corpus_dispatches_on_the_spec(tmp_path):
    assert next(read_corpus()).source == "chitchat"
    assert next(read_corpus("chatterbot")).source == "chatterbot:english"
    assert next(read_corpus("chatterbot:spanish")).source == "chatterbot:spanish"
    assert next(read_corpus("chatterbot", language="german")).source == "chatterbot:german"
    jsonl(tmp_path / "a.jsonl", {"turns": ["x", "y"]})
    jsonl(tmp_path / "b.JSON", {"context": "x", "reply": "y"})
    write(tmp_path / "c.csv", "context,reply\nx,y\n")
    assert [next(read_corpus(str(tmp_path / name))).source for name in ("a.jsonl", "b.JSON", "c.csv")] == [
        "a",
        "b",
        "c",
    ]
    folder = fake_self_dialogue(tmp_path / "sd")
    assert next(read_corpus(str(folder), window=1)).source == "self_dialogue"
    assert next(read_corpus(f"self-dialogue:{folder}")).source == "self_dialogue"


@pytest.mark.skipif(not SELF_DIALOGUE.is_dir(), reason="the Self-dialogue Corpus subset is not in shared/data")
def test_read_corpus_self_dialogue_defaults_to_the_shared_folder():
    assert next(read_corpus("self-dialogue")).source == "self_dialogue"


def test_read_corpus_self_dialogue_is_found_through_the_shared_data_setting(tmp_path, monkeypatch):
    """An installed Rejoinder finds the corpus through REJOINDER_SHARED_DATA, not beside its source files."""
    fake_self_dialogue(tmp_path / "data" / "dialogues" / "self_dialogue_corpus")
    monkeypatch.setenv("REJOINDER_SHARED_DATA", str(tmp_path / "data"))
    assert next(read_corpus("self-dialogue")).conversation == "movies/Batch_1_batch_results/1"


def test_read_corpus_self_dialogue_without_the_shared_data_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("REJOINDER_SHARED_DATA", str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="REJOINDER_SHARED_DATA"):
        read_corpus("self-dialogue")


def test_read_corpus_unknown_spec_lists_the_accepted_ones():
    with pytest.raises(ConfigError) as info:
        read_corpus("reddit")
    for accepted in ("chitchat", "self-dialogue", "chatterbot:<language>", ".jsonl", ".csv"):
        assert accepted in str(info.value)


def test_read_corpus_missing_file_names_it(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        read_corpus(str(tmp_path / "nowhere.jsonl"))
