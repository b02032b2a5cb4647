"""Rejoinder's retrieval bot against ChatterBot on the same corpus: import time, reply latency, memory.

    python bench/retrieval_vs_chatterbot.py [--sizes 10000 100000] [--queries 200] [--chatterbot-queries 20 5]

Both bots learn the same human-human conversations of the chitchat corpus (the first N
exchanges), each in its own process: ChatterBot 1.2 (its defaults: SQLite storage, BestMatch,
Levenshtein distance, spaCy lemmas; in bench/.venv-chatterbot, made by chatterbot_env.sh) and
Rejoinder (SQLite store, MiniLM embeddings, BM25 + HNSW index, the moderation screen on every
message and reply). Queries are opening lines of the Self-dialogue corpus, which neither has
seen. Prints a table with the ratios ChatterBot / Rejoinder and writes bench/results/retrieval_vs_chatterbot.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys

from common import BENCH, CHATTERBOT_PY, SHARED, WORK, percentile, print_table, run_side, write_jsonl, write_record


def chitchat_conversations() -> list[dict]:
    import chitchat_dataset

    with open(chitchat_dataset._PATH, encoding="utf-8") as handle:
        data = json.load(handle)
    out = []
    for conversation in data.values():
        turns = [" ".join(" ".join(m["text"].split()) for m in turn).strip() for turn in conversation["messages"]]
        turns = [t for t in turns if t]
        if len(turns) >= 2:
            out.append({"turns": turns})
    return out


def held_out_queries(n: int, seed: int = 7) -> list[dict]:
    root = SHARED / "data" / "dialogues" / "self_dialogue_corpus"
    blocked = set((root / "blocked_workers.txt").read_text().split())
    lines = []
    for path in sorted((root / "corpus").glob("*/*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("WorkerId") in blocked:
                    continue
                first = (row.get("Answer.sentence1") or "").strip()
                if first:
                    lines.append(first)
    random.Random(seed).shuffle(lines)
    return [{"text": t} for t in lines[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="queries for Rejoinder at each size")
    parser.add_argument(
        "--chatterbot-queries", type=int, nargs="+", default=[50, 10], help="queries for ChatterBot, per size"
    )
    parser.add_argument("--skip-chatterbot", action="store_true")
    args = parser.parse_args()

    if not args.skip_chatterbot:
        subprocess.run(["bash", str(BENCH / "chatterbot_env.sh")], check=True)
    conversations = write_jsonl(WORK / "chitchat_conversations.jsonl", chitchat_conversations())
    queries = write_jsonl(WORK / "selfdialogue_queries.jsonl", held_out_queries(max(args.queries, 200)))

    results = []
    for i, size in enumerate(args.sizes):
        ours_db = WORK / f"rejoinder_{size}.db"
        for stale in WORK.glob(f"rejoinder_{size}*"):
            subprocess.run(["rm", "-rf", str(stale)], check=True)
        print(f"Rejoinder: importing {size} exchanges ...", file=sys.stderr)
        ours_train = run_side(
            sys.executable,
            "retrieval_side.py",
            "train",
            "--db",
            str(ours_db),
            "--conversations",
            str(conversations),
            "--limit",
            str(size),
        )
        ours = run_side(
            sys.executable,
            "retrieval_side.py",
            "answer",
            "--db",
            str(ours_db),
            "--queries",
            str(queries),
            "--limit",
            str(args.queries),
        )
        row = {
            "size": size,
            "rejoinder": {
                "exchanges": ours_train["exchanges"],
                "import_s": ours_train["import_s"],
                "p50_ms": percentile(ours["latencies_ms"], 50),
                "p99_ms": percentile(ours["latencies_ms"], 99),
                "peak_rss_mb": max(ours_train["peak_rss_mb"], ours["peak_rss_mb"]),
                "queries": len(ours["latencies_ms"]),
                "sample": list(zip([q["text"] for q in _read(queries)][:5], ours["replies"][:5], strict=False)),
            },
        }
        if not args.skip_chatterbot:
            cb_db = WORK / f"chatterbot_{size}.sqlite3"
            cb_db.unlink(missing_ok=True)
            print(f"ChatterBot: training on {size} statements ...", file=sys.stderr)
            cb_train = run_side(
                CHATTERBOT_PY,
                "chatterbot_side.py",
                "train",
                "--db",
                str(cb_db),
                "--conversations",
                str(conversations),
                "--limit-statements",
                str(size),
            )
            n = args.chatterbot_queries[min(i, len(args.chatterbot_queries) - 1)]
            cb = run_side(
                CHATTERBOT_PY,
                "chatterbot_side.py",
                "answer",
                "--db",
                str(cb_db),
                "--queries",
                str(queries),
                "--limit",
                str(n),
            )
            row["chatterbot"] = {
                "statements": cb_train["statements"],
                "import_s": cb_train["import_s"],
                "p50_ms": percentile(cb["latencies_ms"], 50),
                "p99_ms": percentile(cb["latencies_ms"], 99),
                "peak_rss_mb": max(cb_train["peak_rss_mb"], cb["peak_rss_mb"]),
                "queries": len(cb["latencies_ms"]),
            }
            row["ratio_chatterbot_over_rejoinder"] = {
                key: round(row["chatterbot"][key] / row["rejoinder"][key], 1)
                for key in ("import_s", "p50_ms", "p99_ms", "peak_rss_mb")
            }
        results.append(row)

    table = []
    for row in results:
        for system in ("rejoinder", "chatterbot"):
            if system in row:
                r = row[system]
                table.append(
                    [
                        row["size"],
                        system,
                        f"{r['import_s']:.1f}",
                        f"{r['p50_ms']:.1f}",
                        f"{r['p99_ms']:.1f}",
                        f"{r['peak_rss_mb']:.0f}",
                        r["queries"],
                    ]
                )
        if "ratio_chatterbot_over_rejoinder" in row:
            ratio = row["ratio_chatterbot_over_rejoinder"]
            table.append(
                [
                    row["size"],
                    "ratio CB/ours",
                    f"{ratio['import_s']}x",
                    f"{ratio['p50_ms']}x",
                    f"{ratio['p99_ms']}x",
                    f"{ratio['peak_rss_mb']}x",
                    "",
                ]
            )
    print_table(
        "Retrieval bot vs ChatterBot (same chitchat exchanges; held-out Self-dialogue queries)",
        ["exchanges", "system", "import s", "p50 ms", "p99 ms", "peak RSS MB", "queries"],
        table,
    )
    write_record("retrieval_vs_chatterbot", {"results": results})


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


if __name__ == "__main__":
    main()
