"""How a retrieval bot gets ready: its corpus imported, then embedded, while it already answers.

:class:`Preparation` runs the two passes of :mod:`~rejoinder.bots.retrieval.train` for one bot in
a worker thread and says where they stand:

1. open the moderation screen and the index (what earlier runs stored is served at once);
2. import the corpus without embeddings, one committed batch at a time; after the first batch the
   bot is *ready* and answers from the lexical index (BM25 over what is imported so far), and the
   embedding model starts loading beside the import;
3. compute the missing embeddings; when the last batch is in, the bot answers from the hybrid
   index (BM25 + HNSW, with reply fit), and the preparation is *complete*.

Every step resumes where an interrupted one stopped (see ``train.py``); the worker stops before its
next batch when the caller's :class:`~rejoinder.dialogue.Cancel` or :meth:`Preparation.stop` is
set, and at interpreter exit. Progress callbacks run on the worker thread.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from rejoinder.bots.retrieval.train import embed_missing, import_corpus
from rejoinder.dialogue import Cancel, Progress, ProgressFn, Readiness

if TYPE_CHECKING:
    from rejoinder.bots.retrieval.bot import RetrievalBot

SYNC_EVERY_S = 3.0
"""While importing, how often the index catches up with what is stored (the first batch at once)."""

IDLE, OPENING, IMPORTING, EMBEDDING, COMPLETE, STOPPED, FAILED = (
    "idle",
    "opening",
    "importing",
    "embedding",
    "complete",
    "stopped",
    "failed",
)


class _AnyOf(Cancel):
    """Set when this one or any of ``others`` is set."""

    def __init__(self, *others: Cancel | None) -> None:
        super().__init__()
        self.others = [c for c in others if c is not None]

    @property
    def is_set(self) -> bool:
        return self.event.is_set() or any(c.is_set for c in self.others)


class Preparation:
    """The preparation of one :class:`~rejoinder.bots.retrieval.bot.RetrievalBot` (see the module docstring)."""

    def __init__(self, bot: RetrievalBot) -> None:
        self.bot = bot
        self.stage = IDLE
        self.error: BaseException | None = None
        self.done: int | None = None
        self.total: int | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._stop = Cancel()
        self._active = False
        self._lock = threading.Lock()
        self._embedder_thread: threading.Thread | None = None
        self._synced_at = 0.0

    # -- what front ends call --------------------------------------------------------------------
    def readiness(self) -> Readiness:
        served = len(self.bot.served.index) if self.bot.served_open else 0
        ready = self._ready.is_set() and self.stage != IDLE
        if self.stage == IDLE:
            return Readiness(False, False, "not prepared yet: prepare() imports the corpus and computes embeddings")
        if self.stage == OPENING:
            return Readiness(False, False, "opening the moderation screen and the index")
        if self.stage == IMPORTING:
            what = f"importing {self.bot.corpus}: {self.done or 0:,} of {self._of()} exchanges read"
            if ready:
                what = f"answering by words from {served:,} exchanges; {what}; embeddings follow"
            return Readiness(ready, False, what, self.done, self.total)
        if self.stage == EMBEDDING:
            return Readiness(
                True,
                False,
                f"answering by words from {served:,} exchanges; computing embeddings: "
                f"{self.done or 0:,} of {self._of()}",
                self.done,
                self.total,
            )
        if self.stage == COMPLETE:
            how = "words and embeddings" if self.bot.hybrid else "words (the embedding model is loading)"
            return Readiness(True, True, f"answering by {how} from {served:,} exchanges", served, served)
        if self.stage == STOPPED:
            return Readiness(
                ready,
                False,
                f"stopped with {served:,} exchanges served by words; prepare() again (or the next start) resumes",
                self.done,
                self.total,
            )
        return Readiness(ready, False, f"preparation failed: {self.error}", self.done, self.total)

    @property
    def ready(self) -> bool:
        """The bot can answer (what earlier runs or this one stored is served)."""
        return self._ready.is_set()

    def _of(self) -> str:
        return f"{self.total:,}" if self.total is not None else "?"

    def prepare(
        self, progress: ProgressFn | None = None, cancel: Cancel | None = None, *, background: bool = True
    ) -> None:
        """Start (or resume) the preparation; return once the bot can answer (see the module docstring).

        With ``background=False`` everything runs in the calling thread and this returns when
        the preparation is complete or stopped. Raises what made the preparation fail before
        the bot could answer.
        """
        with self._lock:
            if self.stage == COMPLETE:
                return
            start = not self._active
            if start:
                self._active = True
                self._stop = Cancel()
                self._finished.clear()
                self.error = None
                self.stage = OPENING
                either = _AnyOf(self._stop, cancel)
                if background:
                    _RUNNING.add(self)
                    threading.Thread(
                        target=self._run, args=(progress, either), name="rejoinder-retrieval-prepare", daemon=True
                    ).start()
        if start and not background:
            self._run(progress, either)
        else:
            while not (self._ready.is_set() or self._finished.is_set() or (cancel is not None and cancel.is_set)):
                self._finished.wait(0.05)
        if self.stage == FAILED and not self._ready.is_set() and self.error is not None:
            raise self.error

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the work to end (complete, stopped or failed); False if it still runs after ``timeout``."""
        return self._finished.wait(timeout) if self._active else True

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the work to stop before its next batch and wait for it; True once it has stopped."""
        self._stop.set()
        return self.wait(timeout)

    # -- the worker ------------------------------------------------------------------------------
    def _report(self, progress: ProgressFn | None, event: Progress) -> None:
        self.done, self.total = event.done, event.total
        if progress is not None:
            progress(event)

    def _run(self, progress: ProgressFn | None, cancel: Cancel) -> None:
        try:
            self._work(progress, cancel)
        except BaseException as exc:  # reported through readiness() and prepare()
            self.error = exc
            self.stage = FAILED
        finally:
            self._active = False
            self._finished.set()
            _RUNNING.discard(self)

    def _work(self, progress: ProgressFn | None, cancel: Cancel) -> None:
        bot = self.bot
        self._report(progress, Progress("open", 0, None, "opening the moderation screen and the index"))
        moderator = bot.moderator
        served = bot.served
        if len(served.index):
            self._became_ready()
        self.stage = IMPORTING
        if bot.corpus:
            report = import_corpus(
                bot.memory,
                moderator,
                bot.corpus,
                window=bot.window,
                progress=lambda event: self._report(progress, event),
                cancel=cancel,
                on_batch=lambda: self._imported_batch(served),
            )
            if report.stopped:
                self.stage = STOPPED
                return
        served.sync()
        self._became_ready()
        self.stage = EMBEDDING
        self.done, self.total = 0, None
        if served.index.vector_count < len(served.index) or bot.memory.count_unembedded():
            self._report(progress, Progress("embed", 0, None, "loading the embedding model"))
            load = getattr(bot.embedder, "load", None)
            if load is not None:
                load()  # if it did not load beside the import; an error here is the preparation's
            embedded = embed_missing(
                bot.memory,
                bot.embedder,
                progress=lambda event: self._report(progress, event),
                cancel=cancel,
                on_batch=served.sync,
            )
            if embedded.stopped:
                self.stage = STOPPED
                return
        served.sync()
        served.save()
        self.stage = COMPLETE
        self._load_embedder()  # answers are hybrid once the model is in memory

    def _imported_batch(self, served: Any) -> None:
        """Serve what the import has stored: at once after the first batch, then every few seconds
        (each catch-up commits the lexical index, which costs more than a batch)."""
        if not self._ready.is_set() or time.monotonic() - self._synced_at >= SYNC_EVERY_S:
            served.sync()
            self._synced_at = time.monotonic()
            self._became_ready()

    def _became_ready(self) -> None:
        if not self._ready.is_set():
            self._ready.set()
            self._load_embedder()

    def _load_embedder(self) -> None:
        """Load the embedding model beside the import, so lessons and the embedding pass find it loaded."""
        embedder: Any = self.bot.embedder
        if getattr(embedder, "loaded", True) or self._embedder_thread is not None:
            return
        self._embedder_thread = threading.Thread(target=_quietly_load, args=(embedder,), daemon=True)
        self._embedder_thread.start()


def _quietly_load(embedder: Any) -> None:
    with contextlib.suppress(Exception):  # the embedding pass loads it again and reports the error
        embedder.load()


_RUNNING: weakref.WeakSet[Preparation] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """At exit, stop every worker before its next batch (the index is saved after this)."""
    for preparation in list(_RUNNING):
        preparation.stop(timeout=30)
