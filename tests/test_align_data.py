"""Curation of alignment data: PII masking, duplicates, the per-user cap, the split, use-case tags, the CLI."""

from __future__ import annotations

import json
from importlib.util import find_spec

import pytest

from conftest import DATA
from rejoinder.align.data import (
    CurateConfig,
    cap_per_user,
    curate,
    remove_exact_duplicates,
    remove_near_duplicates,
    split_by_user,
)
from rejoinder.align.pii import PiiMasker, iban_ok, luhn_ok, plausible_name
from rejoinder.align.usecase import evaluate, labelled_set, oasst_labelled, tag
from rejoinder.datasets.rlhf import Demonstration, Preference, PromptCompletion, Turn, read_records
from rejoinder.errors import ConfigError
from rejoinder.ner import Entity

needs_align = pytest.mark.skipif(
    find_spec("datasketch") is None or find_spec("matplotlib") is None,
    reason="the align extra is not installed: pip install -e '.[align]'",
)


@pytest.fixture(autouse=True)
def _shared_data(monkeypatch):
    monkeypatch.setenv("REJOINDER_SHARED_DATA", str(DATA))


def mask(text: str) -> str:
    return PiiMasker(ner=False).mask(text)


# --------------------------------------------------------------------------------------------
# PII


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Write to john.doe+work@example.co.uk today", "Write to <EMAIL> today"),
        ("Call +1 (415) 555-2671 or +44 20 7946 0958.", "Call <PHONE> or <PHONE>."),
        ("Or (555) 123-4567, 555-123-4567", "Or <PHONE>, <PHONE>"),
        ("his home phone number is 555-3476, fax (555-2428)", "his home phone number is <PHONE>, fax (<PHONE>)"),
        ("Мой номер +7 (912) 345-67-89", "Мой номер <PHONE>"),
        ("звоните 8 912 345 67 89 или 8 (495) 123-45-67 или 89123456789", "звоните <PHONE> или <PHONE> или <PHONE>"),
        ("card 4111 1111 1111 1111, 5500-0055-5555-5559 and 378282246310005", "card <CARD>, <CARD> and <CARD>"),
        ("IBAN DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432", "IBAN <IBAN> or <IBAN>"),
        ("р/с 40702810338000012345, счёт № 40817 810 0 9999 1234567", "р/с <ACCOUNT>, счёт № <ACCOUNT>"),
        ("my account number is 12345678", "my account number is <ACCOUNT>"),
        ("from 192.168.0.17 and 2001:db8::ff00:42:8329", "from <IP> and <IP>"),
        ("I live at 221B Baker Street, Apt 4 in London", "I live at <ADDRESS> in London"),
        ("the White House is at 1600 Pennsylvania Avenue NW.", "the White House is at <ADDRESS>."),
        ("Адрес: ул. Ленина, д. 5, кв. 12, Казань", "Адрес: <ADDRESS>, Казань"),
        ("живу на проспект Мира 15", "живу на <ADDRESS>"),
        ("офис: Невский проспект, д. 28, кв. 3", "офис: <ADDRESS>"),
        ("Call me at 2125551234", "Call me at <PHONE>"),
        ("+7-912-345-67-89, 8(912)345-67-89, тел.: 8 800 555 35 35", "<PHONE>, <PHONE>, тел.: <PHONE>"),
    ],
)
def test_personal_data_is_masked_with_typed_placeholders(text, masked):
    assert mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "The meeting is on 2024-03-15 at 10:30, or 15.03.2024, or March 15, 2024.",
        "It costs $1,299.99, €45 or 1 299 ₽ (1299 руб.).",
        "Order #4111111111111111 shipped; order number 55512345678; заказ № 89123456789.",
        "Tracking number 1Z999AA10123456784, invoice 2024-000123.",
        "A 16-digit number that fails Luhn: 4111 1111 1111 1112.",
        "An IBAN-shaped string with a bad checksum: DE89 3704 0044 0532 0130 01.",
        "Version 1.2.3.4.5 of the tool, 3.14159, the year 1969, 42 people.",
        "Встреча 5 мая 2024 года в 10:30, цена 2 500 рублей, заказ №123456.",
        "He walked down Baker Street.",
        "Between 100-2000 people came; pages 250-1399.",
        "The population was 1234567890 in the model; ISBN 978-3-16-148410-0.",
        "Время 12:30:45, счёт-фактура № 12345678.",
    ],
)
def test_dates_prices_order_numbers_and_non_luhn_numbers_are_left_alone(text):
    assert mask(text) == text


def test_the_checksums_are_the_published_ones():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89 3704 0044 0532 0130 01")


def test_names_come_from_the_ner_backend_per_language_and_are_counted():
    calls = []

    def fake_ner(language):
        def recognise(text):
            calls.append(language)
            name = "Anna" if language == "ru" else "John Smith"
            name = "Анна" if language == "ru" else name
            at = text.find(name)
            return [Entity(name, at, at + len(name), "PER"), Entity("x", 0, 1, "LOC")] if at >= 0 else []

        return recognise

    masker = PiiMasker(ner=True, ner_loader=fake_ner)
    assert masker.mask("Ask John Smith at john@example.com") == "Ask <NAME> at <EMAIL>"
    assert masker.mask("Спросите Анна Петровна") == "Спросите <NAME> Петровна"
    assert masker.mask("Ask John Smith at john@example.com") == "Ask <NAME> at <EMAIL>"  # cached
    assert calls == ["en", "ru"]
    assert masker.counts == {"NAME": 3, "EMAIL": 2}


def test_without_the_ner_models_names_are_left_and_the_report_says_why():
    def missing(language):
        raise ConfigError("English NER needs the spaCy model: pip install 'rejoinder[align]'")

    masker = PiiMasker(ner=True, ner_loader=missing)
    assert masker.mask("John Smith, john@example.com") == "John Smith, <EMAIL>"
    assert "person names in 'en' text are not masked" in masker.warning
    assert "pip install" in masker.warning


@pytest.mark.parametrize(
    ("entity", "kept"),
    [("John Smith", True), ("Ludwig van Beethoven", True), ("Jean-Luc O'Brien", True), ("Иван Петров", True),
     ("JSON", False), ("• Provide", False), ("https://spreadsheets.google.com/feeds", False), ("COVID-19", False),
     ("marijuana card", False), ("logger.info(await", False)],
)  # fmt: skip
def test_only_entities_that_look_like_names_are_masked_as_names(entity, kept):
    assert plausible_name(entity) is kept


def test_real_ner_masks_english_and_russian_names():
    pytest.importorskip("spacy")
    pytest.importorskip("natasha")
    masker = PiiMasker(ner=True)
    assert masker.mask("My name is John Smith and I live in Boston.") == "My name is <NAME> and I live in Boston."
    assert masker.mask("Меня зовут Иван Петров, я живу в Москве.") == "Меня зовут <NAME>, я живу в Москве."
    assert masker.warning is None


# --------------------------------------------------------------------------------------------
# Duplicates, cap, split


def demo(prompt, reply, user_id="u", id=None):
    return Demonstration((Turn("user", prompt), Turn("assistant", reply)), user_id=user_id, id=id)


def test_exact_duplicates_are_found_after_normalising_case_punctuation_and_spaces():
    records = [
        demo("What is  the capital of France?", "Paris.", id="a"),
        demo("what is the capital of france", "PARIS", id="b"),
    ]
    kept, step, examples = remove_exact_duplicates(records)
    assert [r.id for r in kept] == ["a"] and step.removed == 1
    assert examples[0]["kept"] == "a" and examples[0]["dropped"] == "b"


@needs_align
def test_near_duplicates_are_found_but_other_answers_to_the_same_prompt_are_kept():
    prompt = "Can you explain how a refrigerator keeps food cold, in simple words, for a curious child of ten?"
    answer = (
        "A fridge moves heat from the inside to the outside. A liquid called refrigerant evaporates in pipes "
        "inside the fridge, taking heat away, then a compressor squeezes it so it releases that heat outside."
    )
    records = [
        demo(prompt, answer, id="first"),
        demo(prompt.replace("ten?", "ten years?"), answer.replace("outside.", "outside, at the back."), id="near"),
        demo(prompt, "It uses electricity and a special gas to pump the warmth out of the box.", id="other"),
        Preference(prompt, answer, "No idea.", id="pref"),  # another format is never a duplicate of a demonstration
    ]  # fmt: skip
    kept, step, examples = remove_near_duplicates(records, threshold=0.7)
    assert [r.id for r in kept] == ["first", "other", "pref"]
    assert examples[0]["kept"] == "first" and examples[0]["dropped"] == "near" and examples[0]["jaccard"] >= 0.7
    assert step.removed == 1
    kept, _, _ = remove_near_duplicates(records, threshold=0.99)
    assert len(kept) == 4


def many_users():
    return [demo(f"prompt {u}-{i}", f"reply {i}", user_id=f"user{u}") for u in range(40) for i in range(u % 7 + 1)]


def test_the_per_user_cap_keeps_at_most_n_distinct_prompts_per_user_whatever_the_order():
    records = [demo(f"question {i}", "answer", user_id="heavy") for i in range(30)]
    records += [demo("question 0", "another answer", user_id="heavy"), demo("hi", "hello", user_id="light")]
    kept, _, info = cap_per_user(records, 10, seed=3)
    heavy_prompts = {r.messages[0].content for r in kept if r.user_id == "heavy"}
    assert len(heavy_prompts) == 10 and info["users_capped"] == 1 and info["most_prompts_after"] == 10
    assert any(r.user_id == "light" for r in kept)
    # every record of a kept prompt stays (both answers to "question 0", if it was kept)
    assert sum(r.messages[0].content == "question 0" for r in kept) in (0, 2)
    again, _, _ = cap_per_user(list(reversed(records)), 10, seed=3)
    assert {r.messages[0].content for r in again} == {r.messages[0].content for r in kept}
    other, _, _ = cap_per_user(records, 10, seed=4)
    assert {r.messages[0].content for r in other} != {r.messages[0].content for r in kept}


def test_the_split_puts_no_user_in_two_splits_and_is_the_same_for_a_seed():
    records = many_users()
    splits = split_by_user(records, (0.6, 0.2, 0.2), seed=7)
    users = {name: {r.user_id for r in rows} for name, rows in splits.items()}
    assert not (
        users["train"] & users["validation"] or users["train"] & users["test"] or users["validation"] & users["test"]
    )
    assert sum(map(len, splits.values())) == len(records)
    assert abs(len(splits["train"]) / len(records) - 0.6) < 0.08
    assert split_by_user(list(reversed(records)), (0.6, 0.2, 0.2), seed=7)["test"] != []
    same = split_by_user(records, (0.6, 0.2, 0.2), seed=7)
    assert {n: [r.user_id for r in rows] for n, rows in same.items()} == {
        n: [r.user_id for r in rows] for n, rows in splits.items()
    }
    other = split_by_user(records, (0.6, 0.2, 0.2), seed=8)
    assert {r.user_id for r in other["test"]} != users["test"]


def test_bad_curation_options_are_all_reported_at_once():
    config = CurateConfig(sources=[], max_per_user=0, near_dup_threshold=1.5, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ConfigError) as error:
        config.check()
    for option in ("--source", "--max-per-user 0", "--near-dup-threshold 1.5", "--split 0.5,0.2,0.2"):
        assert option in str(error.value)


# --------------------------------------------------------------------------------------------
# Use cases


def test_the_tagger_reads_the_instructgpt_categories():
    assert tag("Write a poem about the sea.") == "generation"
    assert tag("Summarize this article: ...") == "summarization"
    assert tag("Translate 'good morning' into German.") == "rewrite"
    assert tag("Why is the sky blue?") == "open_qa"
    assert tag("Привет! Как дела?") == "chat"
    assert tag("Set an alarm for 7.") == "other"


def test_the_tagger_accuracy_on_the_labelled_sets_stays_at_what_was_measured():
    own = labelled_set()
    assert len(own) == 200 and sum(e.language == "ru" for e in own) == 27
    assert len({e.label for e in own}) == 10
    # measured: 97% dev, 99% test on our own prompts (written with the rules in view)
    assert evaluate(own, split="dev").accuracy >= 0.95
    assert evaluate(own, split="test").accuracy >= 0.95
    per_class = evaluate(own).per_class
    assert all(c["recall"] >= 0.8 for c in per_class.values()), per_class


def test_the_tagger_accuracy_on_held_out_openassistant_prompts_stays_at_what_was_measured():
    if not (DATA / "rlhf").is_dir():
        pytest.skip("the shared RLHF data is not here")
    oasst = oasst_labelled()
    assert len(oasst) == 100
    # measured: 78.3% on the 60 dev prompts (tuned on), 67.5% on the 40 held-out ones
    assert evaluate(oasst, split="dev").accuracy >= 0.75
    assert evaluate(oasst, split="test").accuracy >= 0.65


# --------------------------------------------------------------------------------------------
# The whole curation and the CLI


def small_input(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "Write a haiku about rain. I am Ann, ann@example.com"},
                      {"role": "assistant", "content": "Soft rain on the roof"}], "user_id": "ann"},
        {"messages": [{"role": "user", "content": "write a haiku about rain! I am Ann, ann@example.com"},
                      {"role": "assistant", "content": "soft rain on the roof"}], "user_id": "ann"},
        {"prompt": "Why is the sea salty?", "completion": "Rivers carry salts into it.", "user_id": "bob"},
        {"prompt": "Summarize: the cat sat on the mat.", "chosen": "A cat sat.", "rejected": "Dogs.", "user_id": "cy"},
        {"prompt": "Name a colour", "completions": ["Blue", "Red", "Rock"], "ranks": [0, 0, 1]},
        {"prompt": "broken"},
    ]  # fmt: skip
    path = tmp_path / "input.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@needs_align
def test_curation_writes_the_split_files_and_the_report(tmp_path):
    out = tmp_path / "out"
    config = CurateConfig(sources=[str(small_input(tmp_path))], out=out, ner=False, skip_invalid=True,
                          fractions=(0.5, 0.25, 0.25))  # fmt: skip
    result = curate(config)
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["read"]["records_out"] == 5 and report["sources"][0]["invalid"] == 1
    assert steps["PII masked"]["changed"] == 2 and report["pii"]["counts"]["EMAIL"] == 2
    assert steps["exact duplicates"]["removed"] == 1
    assert steps["user ids"]["changed"] == 1  # the ranking had none
    written = [json.loads(line) for name in report["files"] if name.endswith(".jsonl")
               for line in (out / name).read_text().splitlines()]  # fmt: skip
    assert len(written) == 4 == sum(map(len, result.splits.values()))
    assert all(row["use_case"] for row in written)
    assert "ann@example.com" not in json.dumps(written)
    assert {row["use_case"] for row in written if row.get("user_id") == "ann"} == {"generation"}
    for name in report["files"]:
        if name.endswith(".jsonl"):
            list(read_records(out / name))  # what curation writes reads back


@needs_align
def test_curation_stops_at_a_bad_record_unless_asked_to_skip(tmp_path):
    with pytest.raises(Exception, match=r"input\.jsonl:6: fields: expected 'messages'"):
        curate(CurateConfig(sources=[str(small_input(tmp_path))], out=tmp_path / "out", ner=False))


@needs_align
def test_a_prompt_completion_file_curates_like_the_rest(tmp_path):
    records = [PromptCompletion(f"Question number {i}?", f"Answer {i}.", user_id=f"u{i % 3}") for i in range(12)]
    result = curate(
        CurateConfig(sources=["unused"], out=tmp_path, ner=False, max_per_user=2), records=records, write=False
    )
    assert sum(map(len, result.splits.values())) == 6


@needs_align
def test_the_cli_curates_a_file_and_prints_the_tables(tmp_path):
    from typer.testing import CliRunner

    from rejoinder.cli import app

    out = tmp_path / "out"
    args = ["data", "curate", "--source", str(small_input(tmp_path)), "--out", str(out), "--no-ner",
            "--skip-invalid", "--max-per-user", "5", "--seed", "1", "--near-dup-threshold", "0.9",
            "--split", "0.5,0.25,0.25"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Curation" in result.output and "InstructGPT" in result.output and "tagger accuracy" in result.output
    assert (out / "report.json").exists() and (out / "report.png").exists()
    assert any(p.name.endswith(".messages.jsonl") for p in out.iterdir())
    bad = CliRunner().invoke(
        app, ["data", "curate", "--source", str(small_input(tmp_path)), "--out", str(out), "--no-ner"]
    )
    assert bad.exit_code == 2 and "input.jsonl:6" in bad.output
    stats = CliRunner().invoke(app, ["data", "stats", str(small_input(tmp_path)), "--skip-invalid"])
    assert stats.exit_code == 0 and "1 invalid" in stats.output
    tagger = CliRunner().invoke(app, ["data", "tagger"])
    assert tagger.exit_code == 0 and "99.0% of 100" in tagger.output


@needs_align
def test_the_same_seed_writes_the_same_dataset(tmp_path):
    source = str(small_input(tmp_path))
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        curate(
            CurateConfig(sources=[source], out=out, ner=False, skip_invalid=True, seed=5, fractions=(0.5, 0.25, 0.25))
        )
        outputs.append({p.name: p.read_text() for p in sorted(out.glob("*.jsonl"))})
    assert outputs[0] == outputs[1] and outputs[0]
