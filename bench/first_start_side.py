"""Rejoinder side of the first-start benchmark: a fresh process builds the retrieval bot on an empty store.

    python bench/first_start_side.py --db DB --queries Q.jsonl [--corpus chitchat] [--embedder minilm]

Times are seconds from the start of this process (before Rejoinder is imported), as a user who
runs ``rejoinder chat --bot retrieval`` for the first time waits them: until ``prepare()``
returns, until the first reply, until the whole corpus is served by the lexical index (the
import pass is over), and until the embeddings are complete and the first hybrid reply comes.
While the preparation goes on in the background, one query a second is answered and timed.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from rejoinder.bots.retrieval.bot import create  # noqa: E402
from rejoinder.dialogue import Dialogue, Message  # noqa: E402
from rejoinder.store import Store  # noqa: E402


def now() -> float:
    return round(time.perf_counter() - STARTED, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--corpus", default="chitchat")
    parser.add_argument("--embedder", default="minilm")
    args = parser.parse_args()
    with open(args.queries, encoding="utf-8") as handle:
        queries = [json.loads(line)["text"] for line in handle if line.strip()]

    store = Store(f"sqlite:///{Path(args.db).resolve()}")
    bot = create(store=store, collection="bench", corpus=args.corpus, embedder=args.embedder, learn=False)
    marks: dict[str, float] = {"built_s": now()}
    last: dict[str, object] = {}

    def progress(event) -> None:
        if event.stage == "embed" and "lexical_whole_s" not in marks:
            marks["lexical_whole_s"] = now()
            last["import"] = {"done": last.get("import_done"), "total": last.get("import_total")}
        if event.stage == "import":
            last["import_done"], last["import_total"] = event.done, event.total
        if event.stage == "embed" and event.total:
            last["embed"] = {"done": event.done, "total": event.total}

    bot.prepare(progress)
    marks["ready_s"] = now()

    def ask(i: int) -> dict:
        dialogue = Dialogue(bot="retrieval", messages=[Message("user", queries[i % len(queries)])], conversation_id="b")
        started = time.perf_counter()
        reply = bot.respond(dialogue)
        return {
            "at_s": now(),
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "index": reply.meta.get("index"),
            "served": len(bot.served.index),
            "confidence": round(reply.confidence or 0.0, 3),
            "load": round(os.getloadavg()[0], 2),
            "query": queries[i % len(queries)],
            "reply": reply.text,
        }

    first = ask(0)
    marks["first_answer_s"] = first["at_s"]
    during = []
    i = 1
    while not bot.wait(timeout=1.0):
        during.append(ask(i))
        i += 1
    marks["embeddings_complete_s"] = now()
    bot.embedder.load()
    after = [ask(j) for j in range(i, i + 50)]
    marks["first_hybrid_answer_s"] = after[0]["at_s"]
    readiness = bot.readiness()
    json.dump(
        {
            "marks": marks,
            "first_answer": first,
            "during": during,
            "after": after,
            "served": readiness.total,
            "complete": readiness.complete,
            "stage": bot.preparation.stage,
            "error": str(bot.preparation.error) if bot.preparation.error else None,
            "progress": {k: v for k, v in last.items() if k in ("import", "embed")},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
