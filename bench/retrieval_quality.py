"""Answer quality: next-utterance retrieval on held-out Self-dialogue conversations, Recall@1 and @10 of 100.

    python bench/retrieval_quality.py [--tests 500] [--skip-chatterbot]

The Self-dialogue corpus is split by conversation, 90% to learn from and 10% held out. For each of
``--tests`` held-out exchanges (up to 3 turns of context and the reply a human wrote), the true
reply is mixed with 99 replies drawn from other held-out conversations, and each system ranks
the 100 candidates, as in response-selection papers (Recall@k among 100 = how often the true reply
is in the top k).

A retrieval bot ranks a candidate by how well it agrees with what humans said next in the most
similar contexts it has learned: ``score(c) = max over the 20 nearest learned exchanges n of
match(context, n) * similarity(reply_n, c)``, each system with its own machinery:

- Rejoinder: nearest exchanges by its hybrid index (fused BM25 + MiniLM cosine), similarity of
  replies by MiniLM cosine; then, as the bot ranks its candidates, half that score and half the
  candidate's fit to the context (MiniLM cosine of candidate and context). Both halves are also
  shown alone.
- Rejoinder before its embeddings are complete (the first minutes of a first start): nearest
  exchanges by BM25 alone, weighted by BM25 relative to the best; once the model has loaded
  (seconds after the start), similarity of replies by MiniLM cosine and, as the bot ranks, half
  that and half the candidate's fit to the context, as above; before that, similarity of replies
  by word overlap (the cosine of their sets of words) and nothing else.
- ChatterBot: nearest statements by its own BestMatch search (``chatterbot_side.py neighbors``:
  the statements whose ``in_response_to`` its search and Levenshtein comparison find closest),
  similarity of replies by its comparison function (difflib ratio of the lower-cased texts,
  computed here with the same standard-library call).

Random ranking gives Recall@1 = 0.01 and Recall@10 = 0.10. Writes bench/results/retrieval_quality.json.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import shutil
import subprocess
from difflib import SequenceMatcher

import numpy as np
from common import BENCH, CHATTERBOT_PY, RESULTS, SHARED, WORK, print_table, run_side, write_jsonl, write_record

from rejoinder.bots.retrieval.bot import REPLY_FIT_WEIGHT, shared_embedder
from rejoinder.bots.retrieval.index import word_overlap
from rejoinder.bots.retrieval.memory import RetrievalMemory
from rejoinder.bots.retrieval.served import close_all, served_index
from rejoinder.bots.retrieval.train import import_exchanges
from rejoinder.datasets.corpus import read_jsonl
from rejoinder.embeddings import context_vector
from rejoinder.moderation import Moderator
from rejoinder.store import Store

NEIGHBOURS = 20
CANDIDATES = 100


def dialogues() -> list[list[str]]:
    root = SHARED / "data" / "dialogues" / "self_dialogue_corpus"
    blocked = set((root / "blocked_workers.txt").read_text().split())
    out = []
    for path in sorted((root / "corpus").glob("*/*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("WorkerId") in blocked:
                    continue
                columns = sorted(
                    (c for c in row if c.startswith("Answer.sentence")), key=lambda c: int(c.rsplit("sentence", 1)[1])
                )
                turns = [" ".join(row[c].split()) for c in columns if row[c] and row[c].strip()]
                if len(turns) >= 2:
                    out.append(turns)
    return out


def held_out(turns: list[str]) -> bool:
    return int(hashlib.sha256("\n".join(turns).encode()).hexdigest(), 16) % 10 == 0


def recall(ranks: list[int], k: int) -> float:
    return float(np.mean([r < k for r in ranks]))


def rank_of_truth(scores: list[float]) -> int:
    """Rank of candidate 0 (the true reply), ties counted against it."""
    return int(sum(1 for s in scores[1:] if s >= scores[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("--skip-chatterbot", action="store_true")
    args = parser.parse_args()
    rng = random.Random(5)

    all_dialogues = dialogues()
    train = [d for d in all_dialogues if not held_out(d)]
    test = [d for d in all_dialogues if held_out(d)]
    train_file = write_jsonl(WORK / "quality_train.jsonl", [{"turns": d} for d in train])
    cases = [(d_index, d[max(0, i - 3) : i], d[i]) for d_index, d in enumerate(test) for i in range(1, len(d))]
    rng.shuffle(cases)
    cases = cases[: args.tests]
    tests = []
    for d_index, context, reply in cases:
        pool = [r for j, _, r in rng.sample(cases, min(len(cases), 3 * CANDIDATES)) if j != d_index and r != reply]
        tests.append({"context": context, "candidates": [reply, *pool[: CANDIDATES - 1]]})
    print(f"{len(train)} dialogues to learn from, {len(test)} held out, {len(tests)} test cases")

    # -- Rejoinder --------------------------------------------------------------------------------
    db = WORK / "quality.db"
    for stale in WORK.glob("quality.db*"):
        stale.unlink()
    shutil.rmtree(WORK / "quality.retrieval", ignore_errors=True)
    memory = RetrievalMemory(Store(f"sqlite:///{db}"), "quality")
    embedder = shared_embedder("minilm")
    import_exchanges(memory, embedder, Moderator(), read_jsonl(train_file))
    served = served_index(memory, embedder)
    texts = sorted({c for t in tests for c in t["candidates"]})
    vectors = dict(zip(texts, embedder.encode(texts), strict=True))
    ours_ranks, knn_ranks, bi_ranks, lexical_ranks, loaded_ranks = [], [], [], [], []
    for test_case in tests:
        found = served.search_lexical(test_case["context"], k=NEIGHBOURS)
        lexical_rows = memory.replies([i for i, _ in found])
        best = found[0][1] if found else 1.0
        lexical = [(score / best, lexical_rows[i].reply) for i, score in found if i in lexical_rows]
        lexical_ranks.append(
            rank_of_truth(
                [max((w * word_overlap(r, c) for w, r in lexical), default=0.0) for c in test_case["candidates"]]
            )
        )
        lexical_weights = np.asarray([w for w, _ in lexical], dtype=np.float32)
        lexical_vectors = embedder.encode([r for _, r in lexical])
        hits = served.search(test_case["context"], k=NEIGHBOURS)
        rows = memory.replies([h.id for h in hits])
        neighbours = [(h.score, rows[h.id].reply) for h in hits if h.id in rows]
        neighbour_vectors = embedder.encode([r for _, r in neighbours])
        weights = np.asarray([s for s, _ in neighbours], dtype=np.float32)
        candidates = np.stack([vectors[c] for c in test_case["candidates"]])
        knn = (weights[:, None] * (neighbour_vectors @ candidates.T)).max(axis=0)
        query = context_vector(embedder.encode(test_case["context"]))
        fit = candidates @ query
        knn_ranks.append(rank_of_truth(list(knn)))
        bi_ranks.append(rank_of_truth(list(fit)))
        ours_ranks.append(rank_of_truth(list((1 - REPLY_FIT_WEIGHT) * knn + REPLY_FIT_WEIGHT * fit)))
        lexical_knn = (
            (lexical_weights[:, None] * (lexical_vectors @ candidates.T)).max(axis=0)
            if lexical
            else np.zeros(len(test_case["candidates"]), dtype=np.float32)
        )
        loaded_ranks.append(rank_of_truth(list((1 - REPLY_FIT_WEIGHT) * lexical_knn + REPLY_FIT_WEIGHT * fit)))
    close_all()
    results = {
        "rejoinder (as the bot ranks: kNN + reply fit)": ours_ranks,
        "  ablation: kNN only (hybrid index + MiniLM)": knn_ranks,
        "  ablation: reply fit only (MiniLM bi-encoder)": bi_ranks,
        "rejoinder before embeddings, model loaded (BM25 kNN + reply fit)": loaded_ranks,
        "rejoinder before embeddings and model (BM25 kNN + word overlap)": lexical_ranks,
    }

    # -- ChatterBot ---------------------------------------------------------------------------------
    if not args.skip_chatterbot:
        subprocess.run(["bash", str(BENCH / "chatterbot_env.sh")], check=True)
        cb_db = WORK / "quality_chatterbot.sqlite3"
        cb_db.unlink(missing_ok=True)
        run_side(CHATTERBOT_PY, "chatterbot_side.py", "train", "--db", str(cb_db), "--conversations", str(train_file))
        queries = write_jsonl(WORK / "quality_queries.jsonl", [{"text": t["context"][-1]} for t in tests])
        found = run_side(
            CHATTERBOT_PY,
            "chatterbot_side.py",
            "neighbors",
            "--db",
            str(cb_db),
            "--queries",
            str(queries),
            "--k",
            str(NEIGHBOURS),
        )["neighbors"]
        cb_ranks = []
        for test_case, neighbours in zip(tests, found, strict=True):
            scores = [
                max((n["confidence"] * similarity(n["text"], c) for n in neighbours), default=0.0)
                for c in test_case["candidates"]
            ]
            cb_ranks.append(rank_of_truth(scores))
        results["chatterbot (kNN: BestMatch + Levenshtein)"] = cb_ranks

    rows = [[name, f"{recall(r, 1):.3f}", f"{recall(r, 10):.3f}"] for name, r in results.items()]
    rows.append(["random", "0.010", "0.100"])
    print_table(
        f"Next-utterance retrieval, Self-dialogue held out, {len(tests)} cases, 1 true among {CANDIDATES}",
        ["system", "Recall@1", "Recall@10"],
        rows,
    )
    recalls = {name: {"at1": recall(r, 1), "at10": recall(r, 10)} for name, r in results.items()}
    if args.skip_chatterbot:  # keep ChatterBot's figures from the last run that measured them
        earlier = RESULTS / "retrieval_quality.json"
        if earlier.exists():
            record = json.loads(earlier.read_text())
            for name, value in record.get("recall", {}).items():
                if name.startswith("chatterbot"):
                    recalls[name] = {**value, "measured": value.get("measured", record.get("when"))}
    write_record("retrieval_quality", {"tests": len(tests), "candidates": CANDIDATES, "recall": recalls})


def similarity(a: str, b: str) -> float:
    """ChatterBot's LevenshteinDistance.compare_text: difflib ratio of the lower-cased texts, 2 decimals."""
    return round(SequenceMatcher(None, a.lower(), b.lower()).ratio(), 2)


if __name__ == "__main__":
    main()
