"""The retrieval bot's nearest-neighbour index: BM25 over words and HNSW over embeddings, fused.

Two well-kept engines do the searching: tantivy (a Lucene-like search library) scores the
context's words with BM25, the last turn weighing more than the turns before it; usearch holds
the context embeddings in an HNSW graph (float16) and finds the nearest by cosine. The two
candidate lists are merged and each candidate gets

    score = VECTOR_WEIGHT * cosine + (1 - VECTOR_WEIGHT) * bm25 / best_bm25

An exchange enters the lexical index as soon as it is stored and the vector index once its
embedding is computed; until every served exchange has its embedding (:attr:`HybridIndex.complete`)
the bot searches by words only (:meth:`HybridIndex.search_lexical`). Both engines add and remove
documents one at a time, so learning an exchange costs milliseconds. The index is a cache of
the store: it lives in a folder next to the database, remembers which entry of the store's
change log it has applied, and catches up by replaying the later entries (or rebuilds from the
vectors kept in the store when its files are gone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rejoinder.errors import ConfigError, StoreError

VECTOR_WEIGHT = 0.7
PREVIOUS_TURNS_BOOST = 0.3
_QUERY_CHARS = re.compile(r"[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    cosine: float
    bm25: float


def _lexical_text(text: str) -> str:
    """Words only: the query parser must never see user punctuation as syntax."""
    return " ".join(_QUERY_CHARS.sub(" ", text).split())


def _query_words(text: str) -> str:
    """A query's words without English stop words, whose long postings cost time and add little
    to BM25 (4.9 ms -> 1.0 ms a search at a million exchanges); all of them when nothing else is left."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = _lexical_text(text)
    kept = " ".join(w for w in words.split() if w.lower() not in ENGLISH_STOP_WORDS)
    return kept or words


def _content_words(text: str) -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = {w.casefold() for w in _lexical_text(text).split()}
    return (words - ENGLISH_STOP_WORDS) or words


def word_overlap(a: str, b: str) -> float:
    """Cosine of the two texts' sets of words (English stop words left out when others remain), 0..1:
    how alike two utterances are when there are no embeddings to compare."""
    first, second = _content_words(a), _content_words(b)
    if not first or not second:
        return 0.0
    return len(first & second) / float(np.sqrt(len(first) * len(second)))


class HybridIndex:
    """BM25 + HNSW over one collection's served exchanges, persisted in ``folder``."""

    META = "meta.json"

    def __init__(self, folder: Path, *, dim: int, embedder: str, persist: bool = True) -> None:
        import tantivy
        from usearch.index import Index

        self.folder = folder
        self.dim = dim
        self.embedder = embedder
        self.persist = persist
        self.applied_change = 0
        meta = self._read_meta() if persist else None
        vector_file = folder / "vectors.usearch"
        if meta is not None and (
            meta.get("dim") != dim or meta.get("embedder") != embedder or not vector_file.exists()
        ):
            meta = None  # built with another embedder, or half gone: start again from the store
        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("id", stored=True, indexed=True, fast=True)
        builder.add_text_field("last", stored=False, tokenizer_name="en_stem")
        builder.add_text_field("prev", stored=False, tokenizer_name="en_stem")
        schema = builder.build()
        if persist:
            lexical_dir = folder / "lexical"
            lexical_dir.mkdir(parents=True, exist_ok=True)
            if meta is None:
                for child in lexical_dir.iterdir():
                    child.unlink() if child.is_file() else shutil.rmtree(child)
            try:
                self.lexical = tantivy.Index(schema, path=str(lexical_dir))
            except ValueError as exc:
                raise StoreError(f"the lexical index in {lexical_dir} cannot be opened: {exc}") from None
        else:
            self.lexical = tantivy.Index(schema)
        self._tantivy = tantivy
        self._writer = None
        self.vectors = Index(
            ndim=dim, metric="cos", dtype="f16", connectivity=16, expansion_add=64, expansion_search=64
        )
        if meta is not None:
            self.vectors.load(str(vector_file))
            self.applied_change = int(meta.get("applied_change", 0))
        self.lexical.reload()
        self._lexical_count = self.lexical.searcher().num_docs

    # -- persistence ---------------------------------------------------------------------------
    def _read_meta(self) -> dict | None:
        try:
            return json.loads((self.folder / self.META).read_text())
        except (OSError, ValueError):
            return None

    def save(self) -> None:
        """Commit the lexical index and write the vectors, then record the applied change."""
        self.commit()
        if not self.persist:
            return
        tmp = self.folder / "vectors.usearch.tmp"
        self.vectors.save(str(tmp))
        os.replace(tmp, self.folder / "vectors.usearch")
        meta = {
            "dim": self.dim,
            "embedder": self.embedder,
            "applied_change": self.applied_change,
            "count": len(self),
            "vectors": self.vector_count,
        }
        tmp_meta = self.folder / (self.META + ".tmp")
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, self.folder / self.META)

    def clear(self) -> None:
        writer = self._writer_()
        writer.delete_all_documents()
        self.commit()
        self.vectors.reset()
        self.applied_change = 0

    # -- writing ---------------------------------------------------------------------------------
    def _writer_(self):
        if self._writer is None:
            self._writer = self.lexical.writer(heap_size=64_000_000, num_threads=1)
        return self._writer

    def add(self, ids: Sequence[int], lasts: Sequence[str], prevs: Sequence[str]) -> None:
        """Make exchanges findable by their words (adding one again replaces it)."""
        writer = self._writer_()
        for exchange_id, last, prev in zip(ids, lasts, prevs, strict=True):
            writer.delete_documents_by_term("id", int(exchange_id))
            writer.add_document(
                self._tantivy.Document(id=int(exchange_id), last=_lexical_text(last), prev=_lexical_text(prev))
            )

    def add_vectors(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Make exchanges findable by their context embeddings (adding one again replaces it)."""
        if len(ids) == 0:
            return
        if vectors.shape != (len(ids), self.dim):
            raise ConfigError(f"vectors of shape {vectors.shape} do not fit an index of dimension {self.dim}")
        keys = np.asarray(ids, dtype=np.uint64)
        present = [k for k in keys if self.vectors.contains(int(k))]
        if present:
            self.vectors.remove(np.asarray(present, dtype=np.uint64))
        # Bulk loads use every core; single additions (learning) stay on the calling thread.
        self.vectors.add(keys, vectors.astype(np.float32, copy=False), threads=0 if len(ids) > 1000 else 1)

    def remove(self, ids: Sequence[int]) -> None:
        writer = self._writer_()
        for exchange_id in ids:
            writer.delete_documents_by_term("id", int(exchange_id))
        present = [int(k) for k in ids if self.vectors.contains(int(k))]
        if present:
            self.vectors.remove(np.asarray(present, dtype=np.uint64))

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.commit()
            self._writer.wait_merging_threads()
            self._writer = None
            self.lexical.reload()
            self._lexical_count = self.lexical.searcher().num_docs

    def __len__(self) -> int:
        """How many exchanges the index holds (all findable by words)."""
        return self._lexical_count

    @property
    def vector_count(self) -> int:
        return len(self.vectors)

    @property
    def complete(self) -> bool:
        """Every exchange in the index has its embedding: searches can be hybrid."""
        return len(self.vectors) >= self._lexical_count

    # -- searching --------------------------------------------------------------------------------
    def search(self, last: str, previous: str, query_vector: np.ndarray, k: int = 20) -> list[Hit]:
        """The best ``k`` exchanges for a context, by fused BM25 and cosine score."""
        if len(self.vectors) == 0:
            return []
        cosines: dict[int, float] = {}
        matches = self.vectors.search(query_vector.astype(np.float32), min(k * 2, len(self.vectors)))
        for key, distance in zip(matches.keys, matches.distances, strict=True):
            cosines[int(key)] = 1.0 - float(distance)

        bm25 = dict(self.search_lexical(last, previous, k * 2))

        missing = [key for key in bm25 if key not in cosines]
        if missing:
            stored = self.vectors.get(np.asarray(missing, dtype=np.uint64))
            for key, vector in zip(missing, np.atleast_2d(stored), strict=True):
                vector = np.asarray(vector, dtype=np.float32)
                norm = float(np.linalg.norm(vector))
                cosines[key] = float(vector @ query_vector) / norm if norm else 0.0
        best_bm25 = max(bm25.values(), default=0.0) or 1.0
        hits = [
            Hit(
                key,
                VECTOR_WEIGHT * cosines[key] + (1 - VECTOR_WEIGHT) * bm25.get(key, 0.0) / best_bm25,
                cosines[key],
                bm25.get(key, 0.0),
            )
            for key in cosines
        ]
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:k]

    def search_lexical(self, last: str, previous: str, k: int = 20) -> list[tuple[int, float]]:
        """The best ``k`` exchanges for a context by BM25 alone, as (id, score), best first."""
        text = _query_words(last)
        if not text or self._lexical_count == 0:
            return []
        query = self._lexical_query(text, _query_words(previous) if previous else "")
        searcher = self.lexical.searcher()
        return [
            (int(searcher.doc(address)["id"][0]), float(score)) for score, address in searcher.search(query, k).hits
        ]

    def _lexical_query(self, last: str, previous: str):
        query, _errors = self.lexical.parse_query_lenient(last, ["last"])
        if not previous:
            return query
        earlier, _errors = self.lexical.parse_query_lenient(previous, ["prev"])
        Occur = self._tantivy.Occur
        Query = self._tantivy.Query
        return Query.boolean_query(
            [(Occur.Should, query), (Occur.Should, Query.boost_query(earlier, PREVIOUS_TURNS_BOOST))]
        )
