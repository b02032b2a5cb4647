"""Joint intent classification and slot filling with one fine-tuned encoder (JointBERT's recipe).

all-MiniLM-L6-v2 reads the utterance once; a linear head on the mean-pooled states gives the
intent, another on each word's first sub-token gives its BIO slot tag, and both losses train the
encoder together (Chen et al. 2019, with a smaller encoder that trains on a laptop CPU).
Usable wherever an intent classifier or a slot tagger is expected.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rejoinder.bots.frames.nlu.data import bio_tags, tokenize
from rejoinder.bots.frames.nlu.intents import DEFAULT_THRESHOLD, base_model_path, warmup_linear_schedule
from rejoinder.datasets.nlu import Example, Span, spans_from_bio
from rejoinder.errors import ConfigError


class JointMiniLM:
    kind = "joint"

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        epochs: int = 6,
        learning_rate: float = 1e-4,
        batch_size: int = 32,
        max_length: int = 64,
        seed: int = 13,
        threads: int | None = None,
        base: str | None = None,
    ) -> None:
        self.threshold = threshold
        self.epochs, self.learning_rate, self.batch_size = epochs, learning_rate, batch_size
        self.max_length, self.seed, self.threads, self.base = max_length, seed, threads, base
        self.labels: list[str] = []
        self.tags: list[str] = []
        self.model: Any = None
        self.tokenizer: Any = None
        self.log: list[dict[str, float]] = []

    def _base_path(self) -> str:
        return base_model_path(self.base)

    def _build(self, path: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        n_intents, n_tags = len(self.labels), len(self.tags)

        class Joint(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = AutoModel.from_pretrained(path)
                size = self.encoder.config.hidden_size
                self.dropout = torch.nn.Dropout(0.1)
                self.intent = torch.nn.Linear(size, n_intents)
                self.slots = torch.nn.Linear(size, n_tags)

            def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
                states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return self.intent(self.dropout(pooled)), self.slots(self.dropout(states))

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = Joint()

    def _encode(self, words: list[list[str]]) -> tuple[Any, list[list[int | None]]]:
        encoded = self.tokenizer(
            words, is_split_into_words=True, padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        )  # fmt: skip
        return encoded, [encoded.word_ids(i) for i in range(len(words))]

    def fit(self, examples: Sequence[Example]) -> None:
        import torch

        labelled = [e for e in examples if e.intent]
        self.labels = sorted({e.intent for e in labelled})  # type: ignore[misc]
        if len(self.labels) < 2:
            raise ConfigError("joint training needs at least 2 intents")
        sentences = [bio_tags(e) for e in labelled]
        self.tags = sorted({t for _, tags in sentences for t in tags} | {"O"})
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        self._build(self._base_path())
        tag_index = {t: i for i, t in enumerate(self.tags)}
        intent_index = {label: i for i, label in enumerate(self.labels)}
        order = list(range(len(labelled)))
        optimiser, scheduler = warmup_linear_schedule(
            self.model, self.learning_rate, self.epochs * math.ceil(len(order) / self.batch_size)
        )
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100)
        self.model.train()
        for epoch in range(self.epochs):
            random.shuffle(order)
            started, total = time.perf_counter(), 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                words = [sentences[i][0] for i in batch]
                encoded, word_ids = self._encode(words)
                slot_targets = torch.full(encoded["input_ids"].shape, -100, dtype=torch.long)
                for row, ids in enumerate(word_ids):
                    previous = None
                    for column, word in enumerate(ids):
                        if word is not None and word != previous:
                            slot_targets[row, column] = tag_index[sentences[batch[row]][1][word]]
                        previous = word
                intent_logits, slot_logits = self.model(encoded["input_ids"], encoded["attention_mask"])
                intents = torch.tensor([intent_index[labelled[i].intent] for i in batch])
                loss = loss_fn(intent_logits, intents) + loss_fn(
                    slot_logits.reshape(-1, len(self.tags)), slot_targets.reshape(-1)
                )
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimiser.step()
                scheduler.step()
                total += loss.item() * len(batch)
            self.log.append({"epoch": epoch + 1, "loss": total / len(order), "seconds": time.perf_counter() - started})
        self.model.eval()

    def _run(self, texts: Sequence[str]) -> tuple[np.ndarray, list[list[Span]]]:
        import torch

        if self.model is None:
            raise ConfigError("the joint model has not been trained")
        probabilities, spans = [], []
        with torch.no_grad():
            for start in range(0, len(texts), 64):
                chunk = list(texts[start : start + 64])
                tokens = [tokenize(t) or [("", 0, 0)] for t in chunk]
                encoded, word_ids = self._encode([[w for w, _, _ in sentence] for sentence in tokens])
                intent_logits, slot_logits = self.model(encoded["input_ids"], encoded["attention_mask"])
                probabilities.append(torch.softmax(intent_logits, -1).numpy())
                best = slot_logits.argmax(-1).numpy()
                for row, ids in enumerate(word_ids):
                    tags = ["O"] * len(tokens[row])
                    previous = None
                    for column, word in enumerate(ids):
                        if word is not None and word != previous:
                            tags[word] = self.tags[best[row, column]]
                        previous = word
                    spans.append(spans_from_bio(tokens[row], tags))
        return np.concatenate(probabilities), spans

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(texts)[0]

    def predict(self, texts: Sequence[str]) -> list[list[Span]]:
        return self._run(texts)[1]

    def save(self, folder: Path) -> None:
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "model.pt")
        meta = {
            "kind": self.kind,
            "labels": self.labels,
            "tags": self.tags,
            "threshold": self.threshold,
            "options": {"max_length": self.max_length, "base": self._base_path()},
        }
        (folder / "joint.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> JointMiniLM:
        import torch

        meta = json.loads((folder / "joint.json").read_text())
        model = cls(threshold=meta["threshold"], **meta["options"])
        model.labels, model.tags = meta["labels"], meta["tags"]
        model._build(model._base_path())
        model.model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu"))
        model.model.eval()
        return model
