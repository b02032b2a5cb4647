"""Rejoinder side of the retrieval-bot benchmarks (run in its own process, like chatterbot_side.py).

    python bench/retrieval_side.py train   --db DB --conversations C.jsonl [--limit N] [--embedder minilm]
    python bench/retrieval_side.py answer  --db DB --queries Q.jsonl [--limit N]
    python bench/retrieval_side.py neighbors --db DB --queries Q.jsonl --k K
    python bench/retrieval_side.py embed   --texts T.jsonl

Each command prints one JSON object on stdout. ``answer`` times the whole reply path of the bot
(screen the message, embed the context, search, draw, screen the reply) with learning off, as a
ChatterBot ``get_response`` with ``read_only=True`` does no learning either.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from rejoinder.bots.retrieval.bot import RetrievalBot, shared_embedder
from rejoinder.bots.retrieval.memory import RetrievalMemory
from rejoinder.bots.retrieval.served import close_all, served_index
from rejoinder.bots.retrieval.train import import_exchanges
from rejoinder.datasets.corpus import read_jsonl
from rejoinder.dialogue import Dialogue, Message
from rejoinder.moderation import Moderator
from rejoinder.store import Store


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def texts(path: str, field: str = "text") -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)[field] for line in handle if line.strip()]


def memory_for(db: str) -> RetrievalMemory:
    return RetrievalMemory(Store(f"sqlite:///{Path(db).resolve()}"), "bench")


def train(args: argparse.Namespace) -> dict:
    memory = memory_for(args.db)
    started = time.perf_counter()
    report = import_exchanges(
        memory, shared_embedder(args.embedder), Moderator(), read_jsonl(Path(args.conversations)), limit=args.limit
    )
    close_all()
    return {
        "exchanges": report.imported,
        "refused": report.refused,
        "import_s": round(time.perf_counter() - started, 2),
        "peak_rss_mb": peak_rss_mb(),
    }


def answer(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    memory = memory_for(args.db)
    embedder = shared_embedder(args.embedder)
    bot = RetrievalBot(memory, moderator=Moderator(), embedder=embedder, learn=False)
    bot.prepare(background=False)
    embedder.load()
    bot.respond(Dialogue(bot="r", messages=[Message("user", "warm up")]))
    load_s = time.perf_counter() - started
    latencies, replies = [], []
    for text in texts(args.queries)[: args.limit]:
        dialogue = Dialogue(bot="r", messages=[Message("user", text)], conversation_id="bench")
        t0 = time.perf_counter()
        reply = bot.respond(dialogue)
        latencies.append(round((time.perf_counter() - t0) * 1000, 3))
        replies.append(reply.text)
    close_all()
    return {"latencies_ms": latencies, "replies": replies, "load_s": round(load_s, 2), "peak_rss_mb": peak_rss_mb()}


def neighbors(args: argparse.Namespace) -> dict:
    memory = memory_for(args.db)
    served = served_index(memory, shared_embedder(args.embedder))
    out = []
    with open(args.queries, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            context = json.loads(line)["context"]
            hits = served.search(context, k=args.k)
            rows = memory.replies([h.id for h in hits])
            out.append(
                [
                    {"context": rows[h.id].context[-1], "text": rows[h.id].reply, "score": h.score}
                    for h in hits
                    if h.id in rows
                ]
            )
    close_all()
    return {"neighbors": out}


def embed(args: argparse.Namespace) -> dict:
    vectors = shared_embedder(args.embedder).encode(texts(args.texts))
    return {"vectors": [[round(float(x), 5) for x in v] for v in vectors]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "answer", "neighbors", "embed"):
        p = sub.add_parser(name)
        p.add_argument("--embedder", default="minilm")
        if name != "embed":
            p.add_argument("--db", required=True)
    sub.choices["train"].add_argument("--conversations", required=True)
    sub.choices["train"].add_argument("--limit", type=int)
    sub.choices["answer"].add_argument("--queries", required=True)
    sub.choices["answer"].add_argument("--limit", type=int)
    sub.choices["neighbors"].add_argument("--queries", required=True)
    sub.choices["neighbors"].add_argument("--k", type=int, default=10)
    sub.choices["embed"].add_argument("--texts", required=True)
    args = parser.parse_args()
    result = {"train": train, "answer": answer, "neighbors": neighbors, "embed": embed}[args.command](args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
