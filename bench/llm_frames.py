"""Classic NLU vs a prompted LLM as the frame bot's NLU, with simulated users.

    python bench/llm_frames.py [-n 50] [--bots bank_en,travel] [--model smollm2] [--backend torch]
                               [--base-url URL] [--shots 2] [--embedder minilm] [--seed 0]

For each example bot, the same ``n`` simulated dialogues (agenda-based users with typos, seeded:
``rejoinder eval dialogues``) are played twice: with the classic pipeline (trained intent
classifier + CRF slot tagger + NER) and with :class:`~rejoinder.bots.frames.nlu.llm.LLMNLU`
(the LLM is asked for one JSON object ``{"intent", "slots"}`` under constrained decoding). The
tracker, the dialogue policy and the typed value parsers are the same on both sides, so the
difference is the NLU. Reports task success, mean turns, wrong and incomplete submissions, the
commonest failure reasons and the time per user turn. Writes bench/results/llm_frames.json.

The default model (SmolLM2-135M-Instruct) is small and, on a CPU, slow: keep ``n`` small.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from common import print_table, write_record

from rejoinder.bots.frames.bot import EXAMPLES, FrameBot, _start_demo_backend, build_nlu
from rejoinder.bots.frames.demo_backend import free_port
from rejoinder.bots.frames.domain import load_domain
from rejoinder.bots.frames.nlu.llm import LLMNLU
from rejoinder.bots.frames.simulate import Report, SimConfig, simulate
from rejoinder.llm.backends import load_backend

NAMES = {"bank_en": "bank", "bank_ru": "bank", "travel": "travel"}


def run(bot: FrameBot, label: str, n: int, seed: int, typos: float) -> tuple[Report, float]:
    started = time.perf_counter()

    def progress(index: int, result: Any) -> None:
        mark = "ok" if result.success else result.reason
        sys.stderr.write(f"\r{label}: dialogue {index + 1}/{n} ({mark})".ljust(78))
        sys.stderr.flush()

    report = simulate(bot, n=n, seed=seed, config=SimConfig(typos=typos), progress=progress)
    sys.stderr.write("\n")
    return report, time.perf_counter() - started


def summary(report: Report, seconds: float) -> dict[str, Any]:
    turns = sum(r.turns for r in report.results)
    return {
        "dialogues": report.dialogues,
        "success_rate": round(report.success_rate, 4),
        "mean_turns": round(report.mean_turns, 2),
        "wrong_submissions": report.wrong_submissions,
        "incomplete_submissions": report.incomplete_submissions,
        "failure_reasons": report.failure_reasons,
        "per_frame": report.per_frame,
        "seconds": round(seconds, 1),
        "seconds_per_turn": round(seconds / turns, 3) if turns else None,
        "failed_examples": [r.format() for r in report.failed[:3]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--dialogues", type=int, default=50)
    parser.add_argument("--bots", default="bank_en,travel", help="comma-separated: bank_en, bank_ru, travel")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--backend", default="torch", help="auto, torch, llama.cpp or openai")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--shots", type=int, default=2, help="training examples per intent shown to the LLM")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared 2-core machine, 2 threads run ~50x slower)",
    )
    parser.add_argument("--embedder", default="minilm", help="the classic side's embedder: minilm or hashing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--typos", type=float, default=0.03)
    parser.add_argument("--skip-classic", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    threads = args.threads if args.backend in ("torch", "llama.cpp", "auto") else None
    backend = load_backend(args.backend, model=args.model, base_url=args.base_url, threads=threads)
    load_s = time.perf_counter() - started
    print(f"LLM: {backend.describe()} (loaded in {load_s:.1f} s)")
    port = free_port()
    results: dict[str, dict[str, Any]] = {}
    rows = []
    for name in [b.strip() for b in args.bots.split(",") if b.strip()]:
        domain = _start_demo_backend(load_domain(EXAMPLES / name / "domain.yaml"), port)
        sides: list[tuple[str, Any]] = []
        if not args.skip_classic:
            sides.append(("classic", build_nlu(domain, embedder=args.embedder)))
        sides.append(("llm", LLMNLU(domain, backend, shots=args.shots)))
        for side, nlu in sides:
            bot = FrameBot(domain, nlu, name=NAMES.get(name, name))
            report, seconds = run(bot, f"{name} {side}", args.dialogues, args.seed, args.typos)
            row = summary(report, seconds)
            results.setdefault(name, {})[side] = row
            reasons = ", ".join(f"{k} {v}" for k, v in list(row["failure_reasons"].items())[:3])
            rows.append([
                name, side, row["dialogues"], f"{row['success_rate']:.0%}", f"{row['mean_turns']:.2f}",
                row["wrong_submissions"], row["incomplete_submissions"], f"{row['seconds_per_turn']:.2f}", reasons,
            ])  # fmt: skip
    print_table(
        f"Frame bots with simulated users: classic NLU vs {backend.model_name} on {backend.name}"
        f" (seed {args.seed}, typo rate {args.typos})",
        ["bot", "nlu", "dialogues", "success", "turns", "wrong", "incomplete", "s/turn", "top failures"],
        rows,
    )
    write_record(
        "llm_frames",
        {
            "settings": {**vars(args), "llm": backend.describe(), "llm_load_s": round(load_s, 1)},
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
