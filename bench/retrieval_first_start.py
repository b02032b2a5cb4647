"""The retrieval bot's first start on the default corpus, beside ChatterBot's import time.

    python bench/retrieval_first_start.py [--corpus chitchat] [--embedder minilm] [--chatterbot-statements N]
                                          [--anchor-from-record]

A fresh process builds the retrieval bot on an empty store with its defaults (the chitchat corpus,
about 131k exchanges; MiniLM; the moderation screen with its model) and calls ``prepare()``, as
``rejoinder chat --bot retrieval`` does the first time (``first_start_side.py``). Reported, in
seconds from the start of that process: the first reply, the whole corpus served by the lexical
index (the import pass over), and the embeddings complete (the first hybrid reply). The anchor is
ChatterBot 1.2's import of 100,000 exchanges of the same corpus with its defaults (its own process,
bench/.venv-chatterbot, made by chatterbot_env.sh), timed in the same run before Rejoinder's
first start, so both see the same machine; ``--anchor-from-record`` reads it from
bench/results/retrieval_vs_chatterbot.json instead. Writes bench/results/retrieval_first_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from common import BENCH, CHATTERBOT_PY, RESULTS, WORK, percentile, print_table, run_side, write_jsonl, write_record
from retrieval_vs_chatterbot import chitchat_conversations, held_out_queries


def recorded_chatterbot_import() -> tuple[float, int]:
    """ChatterBot's largest import in the record of retrieval_vs_chatterbot.py."""
    record = json.loads((RESULTS / "retrieval_vs_chatterbot.json").read_text())
    row = max(record["results"], key=lambda r: r["size"])
    return float(row["chatterbot"]["import_s"]), int(row["chatterbot"]["statements"])


def chatterbot_import(statements: int) -> tuple[float, int]:
    """Time ChatterBot's import of the first ``statements`` exchanges of the chitchat corpus, now."""
    subprocess.run(["bash", str(BENCH / "chatterbot_env.sh")], check=True)
    conversations = write_jsonl(WORK / "chitchat_conversations.jsonl", chitchat_conversations())
    db = WORK / "first_start_chatterbot.sqlite3"
    db.unlink(missing_ok=True)
    print(f"ChatterBot: training on {statements:,} statements ...", file=sys.stderr)
    side = run_side(CHATTERBOT_PY, "chatterbot_side.py", "train", "--db", str(db), "--conversations",
                    str(conversations), "--limit-statements", str(statements))  # fmt: skip
    db.unlink(missing_ok=True)
    return float(side["import_s"]), int(side["statements"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="chitchat")
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--chatterbot-statements", type=int, default=100_000, help="exchanges ChatterBot imports")
    parser.add_argument(
        "--anchor-from-record", action="store_true", help="ChatterBot's time from retrieval_vs_chatterbot.json"
    )
    args = parser.parse_args()

    if args.anchor_from_record:
        anchor_s, anchor_n = recorded_chatterbot_import()
    else:
        anchor_s, anchor_n = chatterbot_import(args.chatterbot_statements)
    queries = write_jsonl(WORK / "selfdialogue_queries.jsonl", held_out_queries(200))
    db = WORK / "first_start.db"
    for stale in WORK.glob("first_start.*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    env_home = WORK / "first_start_home"
    shutil.rmtree(env_home, ignore_errors=True)
    os.environ["REJOINDER_HOME"] = str(env_home)
    side = run_side(
        sys.executable,
        "first_start_side.py",
        "--db",
        str(db),
        "--queries",
        str(queries),
        "--corpus",
        args.corpus,
        "--embedder",
        args.embedder,
    )
    marks = side["marks"]
    during = [q["ms"] for q in side["during"]]
    after = [q["ms"] for q in side["after"]]
    rows = [
        ["first reply (lexical index)", f"{marks['first_answer_s']:.1f}", f"{anchor_s / marks['first_answer_s']:.1f}x"],
        [
            f"whole corpus served by words ({side['progress']['import']['total']:,} exchanges read)",
            f"{marks['lexical_whole_s']:.1f}",
            f"{anchor_s / marks['lexical_whole_s']:.2f}x",
        ],
        [
            f"embeddings complete ({side['served']:,} served; first hybrid reply)",
            f"{marks['first_hybrid_answer_s']:.1f}",
            f"{anchor_s / marks['first_hybrid_answer_s']:.2f}x",
        ],
        [f"ChatterBot: import of {anchor_n:,} exchanges", f"{anchor_s:.1f}", "1.00x"],
    ]
    print_table(
        f"Retrieval bot's first start ({args.corpus}, {args.embedder}) against ChatterBot's import",
        ["moment", "seconds from process start", "ChatterBot import / this"],
        rows,
    )
    print(
        f"\nreplies while preparing: p50 {percentile(during, 50):.0f} ms, p99 {percentile(during, 99):.0f} ms "
        f"({len(during)} queries); after: p50 {percentile(after, 50):.1f} ms; peak RSS {side['peak_rss_mb']:.0f} MB"
    )
    write_record(
        "retrieval_first_start",
        {
            "corpus": args.corpus,
            "embedder": args.embedder,
            "chatterbot_import_s": anchor_s,
            "chatterbot_statements": anchor_n,
            "chatterbot_timed": "from the record" if args.anchor_from_record else "in this run",
            "marks_s": marks,
            "ratios_chatterbot_import_over": {
                "first_answer": round(anchor_s / marks["first_answer_s"], 2),
                "lexical_whole": round(anchor_s / marks["lexical_whole_s"], 2),
                "embeddings_complete": round(anchor_s / marks["first_hybrid_answer_s"], 2),
            },
            "served": side["served"],
            "progress": side["progress"],
            "reply_ms_while_preparing": {
                "p50": percentile(during, 50),
                "p99": percentile(during, 99),
                "n": len(during),
            },
            "reply_ms_after": {"p50": percentile(after, 50), "p99": percentile(after, 99), "n": len(after)},
            "first_answer": side["first_answer"],
            "samples_while_preparing": side["during"][:: max(1, len(side["during"]) // 10)],
            "samples_after": side["after"][:5],
            "peak_rss_mb": side["peak_rss_mb"],
            "load_average_while_preparing": {
                "mean": round(sum(q["load"] for q in side["during"]) / max(1, len(side["during"])), 2),
                "max": max((q["load"] for q in side["during"]), default=None),
            },
        },
    )


if __name__ == "__main__":
    main()
