"""The retrieval bot at a million exchanges: reply latency p50/p99 and memory on this machine.

    python bench/retrieval_scale.py [--size 1000000] [--queries 1000]

The chitchat corpus has about 131k exchanges; the rest up to ``--size`` are synthesised from it:
copy j of an exchange keeps its words (so the BM25 postings grow as they would) with a marker
on the reply, and its context vector is the original's plus Gaussian noise (cosine about 0.9 to
the original), so the HNSW graph holds a million distinct points around the real ones. The
reply path is timed end to end (screen, embed, BM25 + HNSW search, draw, screen the reply) with
learning off, on held-out Self-dialogue opening lines. Goal: p50 < 20 ms, p99 < 100 ms.
Writes bench/results/retrieval_scale.json.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time

import numpy as np
from common import WORK, percentile, print_table, write_record
from retrieval_vs_chatterbot import held_out_queries

from rejoinder.bots.retrieval.bot import RetrievalBot, shared_embedder
from rejoinder.bots.retrieval.memory import NewExchange, RetrievalMemory
from rejoinder.bots.retrieval.served import close_all, served_index
from rejoinder.bots.retrieval.train import import_exchanges
from rejoinder.datasets.corpus import read_chitchat
from rejoinder.dialogue import Dialogue, Message
from rejoinder.embeddings import normalise_rows
from rejoinder.moderation import Moderator
from rejoinder.store import Store

NOISE = 0.022  # per-dimension sigma; with 384 dimensions gives cosine ~0.9 to the original


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="reuse bench/work/scale.db if it is complete")
    args = parser.parse_args()

    db = WORK / "scale.db"
    if not args.keep:
        for stale in (db, WORK / "scale.db-wal", WORK / "scale.db-shm"):
            stale.unlink(missing_ok=True)
        shutil.rmtree(WORK / "scale.retrieval", ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    memory = RetrievalMemory(Store(f"sqlite:///{db}"), "scale")
    embedder = shared_embedder("minilm")
    moderator = Moderator()
    timings: dict[str, float] = {}

    if memory.stats().get("approved", 0) < args.size:
        t0 = time.perf_counter()
        real = import_exchanges(memory, embedder, moderator, read_chitchat())
        timings["import_real_s"] = time.perf_counter() - t0
        print(f"real exchanges: {real.imported} in {timings['import_real_s']:.0f}s")
        t0 = time.perf_counter()
        synthesise(memory, args.size)
        timings["synthesise_s"] = time.perf_counter() - t0
    close_all()

    t0 = time.perf_counter()
    served = served_index(memory, embedder)
    timings["open_index_s"] = time.perf_counter() - t0
    bot = RetrievalBot(memory, moderator=moderator, embedder=embedder, learn=False)
    bot.prepare(background=False)
    embedder.load()
    bot.respond(Dialogue(bot="r", messages=[Message("user", "warm up")]))
    latencies = []
    for query in held_out_queries(args.queries, seed=11):
        dialogue = Dialogue(bot="r", messages=[Message("user", query["text"])], conversation_id="scale")
        started = time.perf_counter()
        bot.respond(dialogue)
        latencies.append((time.perf_counter() - started) * 1000)
    served_count = len(served.index)
    close_all()

    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print_table(
        f"Retrieval bot at {served_count:,} served exchanges (2 cores)",
        ["metric", "measured", "goal", "measured / goal"],
        [
            ["reply p50 ms", f"{p50:.1f}", "20", f"{p50 / 20:.2f}"],
            ["reply p99 ms", f"{p99:.1f}", "100", f"{p99 / 100:.2f}"],
            ["peak RSS MB", f"{rss_mb():.0f}", "", ""],
            ["index open s", f"{timings['open_index_s']:.1f}", "", ""],
        ],
    )
    write_record(
        "retrieval_scale",
        {
            "served": served_count,
            "queries": len(latencies),
            "p50_ms": p50,
            "p99_ms": p99,
            "goal_p50_ms": 20,
            "goal_p99_ms": 100,
            "peak_rss_mb": rss_mb(),
            "timings_s": timings,
        },
    )


def synthesise(memory: RetrievalMemory, size: int) -> None:
    """Add noisy copies of the real exchanges until the collection serves ``size``."""
    from sqlalchemy import select

    from rejoinder.store.models import RetrievalExchange

    rng = np.random.default_rng(3)
    with memory.store.session() as s:
        real = s.execute(
            select(RetrievalExchange.context, RetrievalExchange.reply, RetrievalExchange.vector).where(
                RetrievalExchange.collection == memory.collection
            )
        ).all()
    have = memory.stats().get("approved", 0)
    copy = 1
    while have < size:
        for start in range(0, len(real), 5000):
            chunk = real[start : start + 5000][: size - have]
            if not chunk:
                break
            vectors = np.frombuffer(b"".join(v for _, _, v in chunk), dtype=np.float16).reshape(len(chunk), -1)
            noisy = normalise_rows(vectors.astype(np.float32) + rng.normal(0, NOISE, vectors.shape).astype(np.float32))
            rows = [
                NewExchange(tuple(c), f"{r} [{copy}]", "synthetic", None, v)
                for (c, r, _), v in zip(chunk, noisy, strict=True)
            ]
            have += memory.add_approved(rows)
            if have >= size:
                break
        print(f"synthesised copy {copy}: {have:,} exchanges")
        copy += 1


if __name__ == "__main__":
    main()
