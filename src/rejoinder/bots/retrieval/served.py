"""One process's view of a collection: the index kept in step with the store's change log."""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
from sqlalchemy.engine import make_url

from rejoinder.bots.retrieval.index import Hit, HybridIndex
from rejoinder.bots.retrieval.memory import RetrievalMemory, unpack_vectors
from rejoinder.embeddings import Embedder, context_vector
from rejoinder.store import Store, data_dir

SAVE_AFTER = 2000
"""Changes applied since the last save that make the index write its files again..."""
SAVE_EVERY_S = 60.0
"""...unless it saved less than this long ago (a bulk import saves once a minute, not once a batch:
the files are a cache, and what they miss is replayed from the change log at the next start)."""


def index_folder(store: Store, collection: str) -> Path:
    """Next to a SQLite file (``name.retrieval/``); in the data dir, per database, otherwise."""
    url = make_url(store.url)
    if store.is_sqlite and url.database and url.database != ":memory:":
        db = Path(url.database).expanduser()
        return db.parent / f"{db.stem}.retrieval" / collection
    digest = hashlib.sha256(store.display_url.encode()).hexdigest()[:12]
    return data_dir() / "retrieval" / digest / collection


class ServedIndex:
    """Searches a collection's served exchanges; replays the change log to stay current.

    The process that holds the folder's lock keeps the index files up to date; any other process
    working on the same collection at the same time builds its own copy in memory from the
    store instead of touching the files.
    """

    def __init__(self, memory: RetrievalMemory, embedder: Embedder, folder: Path) -> None:
        self.memory = memory
        self.embedder = embedder
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[str] | None = open(folder / ".lock", "w")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            persist = True
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            persist = False
        self.index = HybridIndex(folder, dim=embedder.dim, embedder=embedder.name, persist=persist)
        self._pending = 0
        self._saved_at = time.monotonic()
        self._mutex = threading.Lock()
        self.sync()

    def sync(self) -> int:
        """Apply the change log entries this index has not seen; returns how many."""
        applied = 0
        with self._mutex:
            while True:
                changes = self.memory.changes_after(self.index.applied_change)
                if not changes:
                    break
                final: dict[int, str] = {}
                embedded: set[int] = set()
                for _change_id, exchange_id, op in changes:
                    if op == "embed":
                        embedded.add(exchange_id)
                    else:
                        final[exchange_id] = op
                embedded -= set(final)  # an added exchange comes with its vector as it is now
                removes = [i for i, op in final.items() if op == "remove"]
                if removes:
                    self.index.remove(removes)
                adds = self.memory.served([i for i, op in final.items() if op == "add"])
                if adds:
                    self.index.add(
                        [i for i, _, _ in adds], [c[-1] for _, c, _ in adds], [" ".join(c[:-1]) for _, c, _ in adds]
                    )
                with_vectors = [(i, v) for i, _, v in adds if v is not None]
                with_vectors += [(i, v) for i, _, v in self.memory.served(sorted(embedded)) if v is not None]
                if with_vectors:
                    self.index.add_vectors(
                        [i for i, _ in with_vectors], unpack_vectors([v for _, v in with_vectors], self.embedder.dim)
                    )
                self.index.applied_change = changes[-1][0]
                applied += len(changes)
            if applied:
                self.index.commit()
                self._pending += applied
                if self._pending >= SAVE_AFTER and time.monotonic() - self._saved_at >= SAVE_EVERY_S:
                    self.save_locked()
        return applied

    @property
    def complete(self) -> bool:
        """Every served exchange this index knows has its embedding: searches are hybrid."""
        return self.index.complete

    def save_locked(self) -> None:
        self.index.save()
        self._pending = 0
        self._saved_at = time.monotonic()

    def save(self) -> None:
        with self._mutex:
            if self._pending:
                self.save_locked()

    def query_vector(self, turns: Sequence[str]) -> np.ndarray:
        return context_vector(self.embedder.encode(list(turns)))

    def catch_up(self) -> None:
        if self.memory.last_change() > self.index.applied_change:
            self.sync()

    def search(self, turns: Sequence[str], k: int = 20, vector: np.ndarray | None = None) -> list[Hit]:
        """Nearest served exchanges to a context (oldest turn first, the user's message last), by
        words and embeddings (see :meth:`search_lexical` while embeddings are missing)."""
        self.catch_up()
        if vector is None:
            vector = self.query_vector(turns)
        return self.index.search(turns[-1], " ".join(turns[:-1]), vector, k)

    def search_lexical(self, turns: Sequence[str], k: int = 20) -> list[tuple[int, float]]:
        """Served exchanges whose contexts share the most words with ``turns``: (id, BM25), best first."""
        self.catch_up()
        return self.index.search_lexical(turns[-1], " ".join(turns[:-1]), k)

    def close(self) -> None:
        self.save()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


_OPEN: dict[tuple[str, str, str], ServedIndex] = {}
_OPEN_LOCK = threading.Lock()


def served_index(memory: RetrievalMemory, embedder: Embedder) -> ServedIndex:
    """The process-wide ServedIndex of a collection (opened once, saved at exit)."""
    key = (memory.store.url, memory.collection, embedder.name)
    with _OPEN_LOCK:
        served = _OPEN.get(key)
        if served is None:
            served = ServedIndex(memory, embedder, index_folder(memory.store, memory.collection))
            _OPEN[key] = served
        return served


def close_all() -> None:
    with _OPEN_LOCK:
        for served in _OPEN.values():
            served.close()
        _OPEN.clear()


atexit.register(close_all)
