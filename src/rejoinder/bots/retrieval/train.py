"""Getting corpora into a retrieval collection, in two passes that stop and resume at any batch.

1. :func:`import_corpus` reads a corpus, screens each reply, skips what is already known and
   stores the rest as served, without embeddings, one batch per transaction. The batch's end
   position is recorded in that same transaction (``retrieval_imports``), so a process killed at
   any moment loses nothing committed and the next call resumes after the last committed batch;
   the bot answers from the lexical index from the first batch on.
2. :func:`embed_missing` computes the context and reply embeddings of the served exchanges that
   have none (the hybrid index needs them), batch by batch; what is done stays done.

Both stop before the next batch (or the next slice of texts to embed) once ``cancel`` is set,
and report :class:`~rejoinder.dialogue.Progress` with the total, the rate and the time left.
:func:`import_exchanges` does both passes at once for an iterable of exchanges (tests, benchmarks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from rejoinder.bots.retrieval.memory import NewExchange, RetrievalMemory
from rejoinder.bots.retrieval.served import served_index
from rejoinder.datasets.corpus import Exchange, read_corpus
from rejoinder.dialogue import Cancel, Progress, ProgressFn
from rejoinder.embeddings import Embedder, context_vector
from rejoinder.moderation import Moderator

BATCH = 1000
"""Exchanges screened and stored per transaction (about a second of work on two cores)."""
EMBED_BATCH = 256
"""Exchanges embedded per transaction."""
ENCODE_SLICE = 32
"""Texts embedded in one call: between two calls ``cancel`` is looked at and a reply may use the model."""


@dataclass
class ImportReport:
    """What one call of :func:`import_corpus` did (``resumed_from``: where it started in the corpus)."""

    corpus: str = ""
    read: int = 0
    imported: int = 0
    duplicates: int = 0
    refused: int = 0
    seconds: float = 0.0
    resumed_from: int = 0
    total: int | None = None
    complete: bool = False
    stopped: bool = False
    refused_examples: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0


@dataclass
class EmbedReport:
    """What one call of :func:`embed_missing` did."""

    embedded: int = 0
    total: int = 0
    seconds: float = 0.0
    complete: bool = False
    stopped: bool = False


class Pace:
    """Rate and time left of work that started at ``done`` items (for progress lines)."""

    def __init__(self, done: int = 0) -> None:
        self.start_done = done
        self.started = time.perf_counter()

    def rate(self, done: int) -> float:
        elapsed = time.perf_counter() - self.started
        return (done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def describe(self, done: int, total: int | None) -> str:
        rate = self.rate(done)
        text = f"{rate:,.0f}/s"
        if total is not None and rate > 0 and done < total:
            text += f", {_duration((total - done) / rate)} left"
        return text


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _stopped(cancel: Cancel | None) -> bool:
    return cancel is not None and cancel.is_set


def _batches(items: Iterable[Exchange], size: int) -> Iterator[list[Exchange]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def corpus_key(spec: str) -> str:
    """How an import of ``spec`` is recorded: a file or folder by its absolute path, a named corpus by name."""
    path = Path(spec)
    if spec not in ("chitchat", "self-dialogue", "chatterbot") and ":" not in spec and path.exists():
        return str(path.resolve())
    return spec


def count_exchanges(spec: str, window: int) -> int:
    """How many exchanges ``spec`` holds (one pass of reading, without screening or storing)."""
    return sum(1 for _ in read_corpus(spec, window=window))


def _screen(moderator: Moderator, batch: list[Exchange], report: ImportReport) -> tuple[list[NewExchange], int]:
    verdicts = moderator.check_many([e.reply for e in batch])
    rows, refused = [], 0
    for exchange, verdict in zip(batch, verdicts, strict=True):
        if verdict.allowed:
            rows.append(
                NewExchange(
                    exchange.context, exchange.reply, exchange.source, exchange.conversation, None, verdict.score
                )
            )
        else:
            refused += 1
            if len(report.refused_examples) < 5:
                report.refused_examples.append(exchange.reply)
    return rows, refused


def import_corpus(
    memory: RetrievalMemory,
    moderator: Moderator,
    spec: str,
    *,
    window: int = 3,
    limit: int | None = None,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
    on_batch: Callable[[], None] | None = None,
    batch: int | None = None,
) -> ImportReport:
    """Import the corpus ``spec`` (see :func:`~rejoinder.datasets.corpus.read_corpus`) without
    embeddings, resuming where an earlier import of it stopped; ``limit`` caps the position.

    ``on_batch`` runs after each committed batch (the bot brings its index up to date there).
    Two processes importing the same corpus at once share the work: a batch another process
    committed first is skipped.
    """
    batch = batch or BATCH
    started = time.perf_counter()
    read_corpus(spec, window=window)  # a spec or file that cannot be read fails here, before it is recorded
    record = memory.import_record(corpus_key(spec), window)
    report = ImportReport(corpus=spec, resumed_from=record.position, total=record.total)
    if record.complete or (limit is not None and record.position >= limit):
        report.complete = record.complete
        return report
    position = record.position
    total = record.total
    pace = Pace(position)
    exhausted = False
    while not exhausted:
        chunks = _batches(islice(read_corpus(spec, window=window), position, limit), batch)
        exhausted = True
        for chunk in chunks:
            if _stopped(cancel):
                report.stopped = True
                break
            rows, refused = _screen(moderator, chunk, report)
            added = memory.import_batch(record.id, position, position + len(chunk), rows, refused)
            if added is None:  # another process committed this batch first: go on from where it is
                record = memory.get_import(record.id)
                position = record.position
                exhausted = record.complete or (limit is not None and position >= limit)
                break
            position += len(chunk)
            report.read += len(chunk)
            report.imported += added
            report.duplicates += len(rows) - added
            report.refused += refused
            if on_batch is not None:
                on_batch()
            if total is None:  # after the first batch is served: counting reads the whole corpus once
                total = count_exchanges(spec, window)
                memory.set_import_total(record.id, total)
            if progress is not None:
                shown = min(total, limit) if limit is not None else total
                progress(
                    Progress(
                        "import",
                        position,
                        shown,
                        f"{spec}: {position:,} of {shown:,} exchanges read, {report.imported:,} new, "
                        f"{report.refused:,} refused ({pace.describe(position, shown)})",
                    )
                )
    if not report.stopped and (limit is None or position < limit or (total is not None and position >= total)):
        memory.finish_import(record.id, position)
        report.complete = True
        total = position
    report.total = total
    report.seconds = time.perf_counter() - started
    return report


def _encode(embedder: Embedder, texts: list[str], cancel: Cancel | None) -> dict[str, np.ndarray] | None:
    """Vectors of ``texts`` by text; None when ``cancel`` was set before the last slice."""
    vectors: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), ENCODE_SLICE):
        if _stopped(cancel):
            return None
        part = texts[start : start + ENCODE_SLICE]
        vectors.update(zip(part, embedder.encode(part), strict=True))
    return vectors


def embed_missing(
    memory: RetrievalMemory,
    embedder: Embedder,
    *,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
    on_batch: Callable[[], None] | None = None,
    batch: int | None = None,
) -> EmbedReport:
    """Compute and store the embeddings of every served exchange that has none, oldest first."""
    batch = batch or EMBED_BATCH
    started = time.perf_counter()
    report = EmbedReport(total=memory.count_unembedded())
    pace = Pace()
    after = 0
    while True:
        if _stopped(cancel):
            report.stopped = True
            break
        rows = memory.unembedded(after, batch)
        if not rows:
            break
        # By length, so that each slice the model embeds pads its texts to about the same length.
        texts = sorted({turn for row in rows for turn in (*row.context, row.reply)}, key=len)
        vectors = _encode(embedder, texts, cancel)
        if vectors is None:
            report.stopped = True
            break
        memory.set_vectors(
            [(row.id, context_vector(np.stack([vectors[t] for t in row.context])), vectors[row.reply]) for row in rows]
        )
        after = rows[-1].id
        report.embedded += len(rows)
        report.total = max(report.total, report.embedded)
        if on_batch is not None:
            on_batch()
        if progress is not None:
            progress(
                Progress(
                    "embed",
                    report.embedded,
                    report.total,
                    f"embeddings: {report.embedded:,} of {report.total:,} exchanges "
                    f"({pace.describe(report.embedded, report.total)})",
                )
            )
    report.complete = not report.stopped and not memory.unembedded(after, 1)
    report.seconds = time.perf_counter() - started
    return report


def import_exchanges(
    memory: RetrievalMemory,
    embedder: Embedder,
    moderator: Moderator,
    exchanges: Iterable[Exchange],
    *,
    limit: int | None = None,
    batch: int | None = None,
) -> ImportReport:
    """Screen, store and embed ``exchanges`` in one go (no resume record), then bring the index up to date."""
    report = ImportReport()
    started = time.perf_counter()
    if limit is not None:
        exchanges = islice(exchanges, limit)
    for chunk in _batches(exchanges, batch or BATCH):
        rows, refused = _screen(moderator, chunk, report)
        added = memory.add_approved(rows)
        report.read += len(chunk)
        report.imported += added
        report.duplicates += len(rows) - added
        report.refused += refused
    embed_missing(memory, embedder)
    served = served_index(memory, embedder)
    served.sync()
    served.save()
    report.complete = True
    report.seconds = time.perf_counter() - started
    return report
