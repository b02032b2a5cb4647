"""``rejoinder eval nlu``: intent accuracy, exact-span slot F1, the commonest confusions, train time.

Datasets: the user's own training file (split 80/20 by a fixed seed, stratified by intent),
BANKING77 and SNIPS from the shared data (:mod:`rejoinder.datasets.nlu`, their standard splits).
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rejoinder.bots.frames.nlu.data import load_nlu_data
from rejoinder.bots.frames.nlu.intents import make_intent_classifier
from rejoinder.bots.frames.nlu.slots import CRFSlotTagger, span_f1
from rejoinder.datasets import nlu as public
from rejoinder.datasets.nlu import ANCHORS, Example
from rejoinder.errors import ConfigError


@dataclass
class Report:
    dataset: str
    train_size: int
    test_size: int
    intent_accuracy: float | None = None
    """Top-1 accuracy, as papers report it (every utterance gets its most probable intent)."""
    fallback_rate: float | None = None
    """Share of test utterances below the confidence threshold (the bot would fall back on them)."""
    accuracy_when_confident: float | None = None
    slot: dict[str, float] | None = None
    train_seconds: dict[str, float] = field(default_factory=dict)
    confusions: list[tuple[str, str, int]] = field(default_factory=list)
    classifier: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "classifier": self.classifier,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "intent_accuracy": self.intent_accuracy,
            "fallback_rate": self.fallback_rate,
            "accuracy_when_confident": self.accuracy_when_confident,
            "slot": self.slot,
            "train_seconds": self.train_seconds,
            "confusions": self.confusions,
            "anchor": ANCHORS.get(self.dataset),
        }


def split(examples: list[Example], test_share: float = 0.2, seed: int = 7) -> tuple[list[Example], list[Example]]:
    by_intent: dict[str | None, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example.intent].append(example)
    rng = random.Random(seed)
    train, test = [], []
    for items in by_intent.values():
        items = items[:]
        rng.shuffle(items)
        cut = max(1, round(len(items) * test_share)) if len(items) > 1 else 0
        test.extend(items[:cut])
        train.extend(items[cut:])
    return train, test


def load_dataset(name: str) -> tuple[list[Example], list[Example]]:
    """(train, test) of ``banking77``, ``snips`` or a training file."""
    if name in public.DATASETS:
        return public.load_dataset(name)
    path = Path(name)
    if not path.exists():
        raise ConfigError(f"no dataset {name!r}: give banking77, snips or the path of a training file")
    return split(load_nlu_data(path).examples)


def evaluate(
    dataset: str,
    *,
    classifier: str = "embedding",
    classifier_options: dict[str, Any] | None = None,
    slots: bool = True,
    limit: int | None = None,
) -> Report:
    train, test = load_dataset(dataset)
    if limit:
        train = train[:limit]
    name = dataset if dataset in ANCHORS else Path(dataset).name
    report = Report(name, len(train), len(test), classifier=classifier)
    if classifier == "joint":
        return _evaluate_joint(report, train, test, classifier_options or {}, slots)
    labelled = [e for e in train if e.intent]
    if len({e.intent for e in labelled}) >= 2:
        model = make_intent_classifier(classifier, **(classifier_options or {}))
        started = time.perf_counter()
        model.fit([e.text for e in labelled], [e.intent for e in labelled])
        report.train_seconds["intents"] = round(time.perf_counter() - started, 1)
        _score_intents(report, model.probabilities([e.text for e in test]), model, test)
    if slots and any(e.spans for e in train):
        tagger = CRFSlotTagger()
        started = time.perf_counter()
        tagger.fit(train)
        report.train_seconds["slots"] = round(time.perf_counter() - started, 1)
        report.slot = span_f1([list(e.spans) for e in test], tagger.predict([e.text for e in test]))
    return report


def _score_intents(report: Report, probabilities: Any, model: Any, test: list[Example]) -> None:
    predicted = [model.labels[i] for i in probabilities.argmax(axis=1)]
    confident = probabilities.max(axis=1) >= model.threshold
    gold = [e.intent for e in test]
    right = [p == g for p, g in zip(predicted, gold, strict=True)]
    report.intent_accuracy = sum(right) / len(test)
    report.fallback_rate = float(1 - confident.mean())
    kept = [r for r, c in zip(right, confident, strict=True) if c]
    report.accuracy_when_confident = sum(kept) / len(kept) if kept else None
    confusions = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if g != p)
    report.confusions = [(g, p, n) for (g, p), n in confusions.most_common(10)]


def _evaluate_joint(
    report: Report, train: list[Example], test: list[Example], options: dict[str, Any], slots: bool
) -> Report:
    from rejoinder.bots.frames.nlu.joint import JointMiniLM

    model = JointMiniLM(**options)
    started = time.perf_counter()
    model.fit(train)
    report.train_seconds["joint (intents + slots)"] = round(time.perf_counter() - started, 1)
    probabilities, spans = model._run([e.text for e in test])
    _score_intents(report, probabilities, model, test)
    if slots and any(e.spans for e in train):
        report.slot = span_f1([list(e.spans) for e in test], spans)
    return report
