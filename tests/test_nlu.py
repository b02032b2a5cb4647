"""NLU: training data with positioned errors, intents with a fallback, slots by sequence tagging."""

from __future__ import annotations

import pytest

from rejoinder.bots.frames.nlu.data import bio_tags, load_nlu_data, parse_annotated, tokenize
from rejoinder.bots.frames.nlu.intents import (
    EmbeddingIntentClassifier,
    load_intent_classifier,
    make_intent_classifier,
    predict,
)
from rejoinder.bots.frames.nlu.slots import CRFSlotTagger, span_f1
from rejoinder.datasets.nlu import Example, Span, load_snips, spans_from_bio
from rejoinder.errors import ConfigError, SourceError

BANK_YAML = """\
language: en
intents:
  block_card:
    - block my card
    - please block my [visa](card) card
    - freeze my [mastercard](card) now
    - I want to block my card
    - stop my [debit](card) card please
    - can you block the [credit](card) card
  balance:
    - what's my balance
    - how much money do I have
    - show my balance please
    - balance on my [savings](account) account
    - how much is on my [checking](account) account
    - tell me my balance
  opening_hours:
    - when are you open
    - what are your opening hours
    - are you open on sunday
    - what time do you close
    - opening hours please
    - when does the branch open
"""


def test_annotations_become_plain_text_with_spans_and_bio_tags():
    example = parse_annotated("please block my [visa](card) card in [New York](city)", "block_card")
    assert example.text == "please block my visa card in New York"
    assert example.spans == (Span(16, 20, "card"), Span(29, 37, "city"))
    assert bio_tags(example)[1] == ["O", "O", "O", "B-card", "O", "O", "B-city", "I-city"]
    tokens = tokenize(example.text)
    assert spans_from_bio(tokens, bio_tags(example)[1]) == list(example.spans)


def test_training_data_loads_from_yaml(tmp_path):
    path = tmp_path / "bank.yaml"
    path.write_text(BANK_YAML)
    data = load_nlu_data(path)
    assert data.language == "en" and data.intents == ["balance", "block_card", "opening_hours"]
    assert data.slots == ["account", "card"]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("language: en\nintents:\n  block_card:\n    - ok\n    - 42\n", 5, "non-empty string"),
        ("language: en\nintents:\n  block_card:\n    - block my [visa(card) card\n", 4, "unbalanced"),
        ("language: en\nintents:\n  block_card: []\n", 3, "non-empty list"),
        ("language: de\nintents:\n  a: [x]\n", 1, "'en' or 'ru'"),
        ("language: en\nintent:\n  a: [x]\n", 2, "unknown key"),
        ("language: en\nintents:\n  a: [x\n", 4, "not valid YAML"),
    ],
)
def test_a_malformed_training_file_names_the_line(tmp_path, text, line, reason):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SourceError) as info:
        load_nlu_data(path)
    assert info.value.line == line and reason in str(info.value)


def test_snips_splits_load_as_examples_with_spans(tmp_path):
    (tmp_path / "seq.in").write_text("play the beatles on spotify\n")
    (tmp_path / "seq.out").write_text("O B-artist I-artist O B-service\n")
    (tmp_path / "label").write_text("PlayMusic\n")
    [example] = load_snips(tmp_path)
    assert example.intent == "PlayMusic"
    assert [(example.text[s.start : s.end], s.slot) for s in example.spans] == [
        ("the beatles", "artist"),
        ("spotify", "service"),
    ]


def test_snips_length_mismatch_is_reported_with_the_line(tmp_path):
    (tmp_path / "seq.in").write_text("play it\n")
    (tmp_path / "seq.out").write_text("O\n")
    (tmp_path / "label").write_text("PlayMusic\n")
    with pytest.raises(SourceError, match="2 words but 1 tags") as info:
        load_snips(tmp_path)
    assert info.value.line == 1


@pytest.fixture
def bank(tmp_path):
    path = tmp_path / "bank.yaml"
    path.write_text(BANK_YAML)
    return load_nlu_data(path)


def test_intents_are_learned_from_examples_and_low_confidence_falls_back(bank, tmp_path):
    classifier = EmbeddingIntentClassifier(embedder="hashing", threshold=0.5)
    classifier.fit([e.text for e in bank.examples], [e.intent for e in bank.examples])
    [(intent, confidence)] = predict(classifier, ["please block my card"])
    assert intent == "block_card" and confidence > 0.5
    [(intent, _)] = predict(classifier, ["zzz qqq xyzzy"])
    assert intent is None
    classifier.save(tmp_path / "model")
    again = load_intent_classifier(tmp_path / "model")
    assert predict(again, ["what's my balance please"])[0][0] == "balance"


def test_an_intent_classifier_needs_two_intents_and_a_known_kind():
    with pytest.raises(ConfigError, match="at least 2 intents"):
        EmbeddingIntentClassifier(embedder="hashing").fit(["a", "b"], ["x", "x"])
    with pytest.raises(ConfigError, match="unknown intent classifier"):
        make_intent_classifier("magic")


def test_slots_are_tagged_by_a_crf_and_scored_by_exact_span_f1(bank, tmp_path):
    tagger = CRFSlotTagger(max_iterations=50)
    tagger.fit(bank.examples)
    [spans] = tagger.predict(["please block my visa card"])
    assert [(s.slot, "please block my visa card"[s.start : s.end]) for s in spans] == [("card", "visa")]
    gold = [[Span(0, 4, "card")], [Span(0, 2, "x")]]
    assert span_f1(gold, [[Span(0, 4, "card")], []]) == {"precision": 1.0, "recall": 0.5, "f1": 2 / 3}
    tagger.save(tmp_path / "slots")
    assert CRFSlotTagger.load(tmp_path / "slots").predict(["freeze my mastercard"])[0][0].slot == "card"


def test_a_tagger_without_annotated_slots_is_refused():
    with pytest.raises(ConfigError, match="annotated slots"):
        CRFSlotTagger().fit([Example("hello", "greet")])


def test_fine_tuned_and_joint_models_train_save_and_load(bank, tmp_path):
    from rejoinder.bots.frames.nlu.intents import FineTunedIntentClassifier
    from rejoinder.bots.frames.nlu.joint import JointMiniLM

    texts, labels = [e.text for e in bank.examples], [e.intent for e in bank.examples]
    classifier = FineTunedIntentClassifier(epochs=1, batch_size=8)
    classifier.fit(texts, labels)
    classifier.save(tmp_path / "intents")
    loaded = load_intent_classifier(tmp_path / "intents")
    assert loaded.probabilities(["block my card"]).shape == (1, 3)
    joint = JointMiniLM(epochs=1, batch_size=8)
    joint.fit(bank.examples)
    joint.save(tmp_path / "joint")
    again = JointMiniLM.load(tmp_path / "joint")
    assert again.probabilities(["what's my balance"]).shape == (1, 3)
    assert isinstance(again.predict(["block my visa card"])[0], list)
