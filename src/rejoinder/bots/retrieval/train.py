"""Importing corpora into a retrieval collection: screen, deduplicate, embed, store, index."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from rejoinder.bots.retrieval.memory import NewExchange, RetrievalMemory
from rejoinder.bots.retrieval.served import served_index
from rejoinder.datasets.corpus import Exchange, read_corpus
from rejoinder.embeddings import Embedder, context_vector
from rejoinder.moderation import Moderator

BATCH = 512

Progress = Callable[[int, int, int], None]
"""Called after each batch with (exchanges read, imported, refused by the screen)."""


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    duplicates: int = 0
    refused: int = 0
    seconds: float = 0.0
    refused_examples: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0


def _batches(items: Iterable[Exchange], size: int) -> Iterator[list[Exchange]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def import_exchanges(
    memory: RetrievalMemory,
    embedder: Embedder,
    moderator: Moderator,
    exchanges: Iterable[Exchange],
    *,
    progress: Progress | None = None,
    limit: int | None = None,
) -> ImportReport:
    """Screen each reply, embed each context and reply, store the new exchanges as served, update the index."""
    report = ImportReport()
    started = time.perf_counter()
    if limit is not None:
        exchanges = islice(exchanges, limit)
    for batch in _batches(exchanges, BATCH):
        report.read += len(batch)
        verdicts = moderator.check_many([e.reply for e in batch])
        kept = []
        for exchange, verdict in zip(batch, verdicts, strict=True):
            if verdict.allowed:
                kept.append((exchange, verdict.score))
            else:
                report.refused += 1
                if len(report.refused_examples) < 5:
                    report.refused_examples.append(exchange.reply)
        texts = sorted({turn for exchange, _ in kept for turn in (*exchange.context, exchange.reply)})
        vectors = dict(zip(texts, embedder.encode(texts), strict=True)) if texts else {}
        rows = [
            NewExchange(
                context=exchange.context,
                reply=exchange.reply,
                source=exchange.source,
                conversation=exchange.conversation,
                vector=context_vector(np.stack([vectors[t] for t in exchange.context])),
                toxicity=score,
                reply_vector=vectors[exchange.reply],
            )
            for exchange, score in kept
        ]
        added = memory.add_approved(rows)
        report.imported += added
        report.duplicates += len(rows) - added
        if progress:
            progress(report.read, report.imported, report.refused)
    served = served_index(memory, embedder)
    served.sync()
    served.save()
    report.seconds = time.perf_counter() - started
    return report


def import_corpus(
    memory: RetrievalMemory,
    embedder: Embedder,
    moderator: Moderator,
    spec: str,
    *,
    window: int = 3,
    limit: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a named corpus or file (see :func:`~rejoinder.datasets.corpus.read_corpus`)."""
    return import_exchanges(
        memory, embedder, moderator, read_corpus(spec, window=window), progress=progress, limit=limit
    )


def progress_printer() -> Progress:
    """A one-line progress report on standard error (the CLI uses a rich progress bar instead)."""
    started = time.perf_counter()
    interactive = sys.stderr.isatty()

    def report(read: int, imported: int, refused: int) -> None:
        rate = read / max(time.perf_counter() - started, 1e-9)
        line = f"importing the corpus: {read} read, {imported} new, {refused} refused ({rate:.0f}/s)"
        if interactive:
            sys.stderr.write("\r" + line)
        elif read % (BATCH * 20) == 0:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return report
