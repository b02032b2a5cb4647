"""The RL algorithms side by side on one budget: REINFORCE, PPO, RLOO, GRPO, PPO++ and DPO.

Every algorithm starts from the same SFT model and optimises against the same reward model (the
outputs of a pipeline run, ``--run``, default ``runs/pipeline``: its ``sft/`` and ``reward/``),
on OpenAssistant's prompts, for the same number of steps with the same number of replies per step
(8: one reply to each of 8 prompts for REINFORCE, PPO and PPO++; 4 replies to each of 2 prompts for
RLOO and GRPO; DPO takes 8 preference pairs per step), replies of up to 48 tokens, the same
learning rate and KL coefficient (DPO's beta). Each policy is then evaluated against the SFT model
on the same held-out prompts (``rejoinder eval policy``): mean reward, KL, win rate.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/rl_algorithms.py [--run runs/pipeline] [--steps 10]``
on an otherwise idle machine, after ``rejoinder train pipeline --config examples/align/pipeline-smollm2.yaml``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, WORK, print_table, write_record

sys.path.insert(0, str(ROOT / "src"))

ALGOS = ["reinforce", "ppo", "rloo", "grpo", "ppo++", "dpo"]


def run(algo: str, args: argparse.Namespace) -> dict[str, Any]:
    from rejoinder.align.rl.config import EvalConfig, RLConfig
    from rejoinder.align.rl.evaluate import evaluate_policy
    from rejoinder.align.rl.trainer import read_log, train_rl

    out = WORK / f"rl-algo-{algo.replace('+', 'p')}"
    if out.exists():
        shutil.rmtree(out)
    groups = algo in ("rloo", "grpo")
    rewards = [f"model:{args.run / 'reward'}"]
    config = RLConfig(
        algo=algo, model=str(args.run / "sft"), rewards=rewards, data=["oasst"], output_dir=out, steps=args.steps,
        prompts_per_step=2 if groups else 8, samples_per_prompt=4 if groups else 1, max_new_tokens=48,
        learning_rate=args.lr, kl_coef=args.beta, save_steps=10_000, seed=args.seed, threads=args.threads,
        eval_prompts=4,
    )  # fmt: skip
    started = time.perf_counter()
    train_rl(config)
    seconds = time.perf_counter() - started
    log = read_log(out / "rl-log.csv") if (out / "rl-log.csv").is_file() else []
    evaluation = evaluate_policy(EvalConfig(run=out, policy=str(out / "policy"), reference=str(args.run / "sft"),
                                            rewards=rewards, data=["oasst"], prompts=args.eval_prompts,
                                            max_new_tokens=48, seed=args.seed, threads=args.threads))  # fmt: skip
    return {
        "train_s": round(seconds, 1),
        "reward_first": log[0]["reward"] if log and "reward" in log[0] else None,
        "reward_last": log[-1]["reward"] if log and "reward" in log[-1] else None,
        "eval_reward_policy": round(evaluation["policy_side"]["mean_reward"], 3),
        "eval_reward_sft": round(evaluation["reference_side"]["mean_reward"], 3),
        "kl": round(evaluation["kl_k1"], 3),
        "win_rate": round(evaluation["win_rate"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "pipeline")
    parser.add_argument("--algos", nargs="+", default=ALGOS)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--beta", type=float, default=0.05)
    parser.add_argument("--eval-prompts", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for needed in ("sft", "reward"):
        if not (args.run / needed / ".complete").is_file():
            raise SystemExit(f"{args.run / needed}: not trained; run the pipeline first (see the docstring)")
    results = {}
    for algo in args.algos:
        results[algo] = run(algo, args)
        print(algo, results[algo], flush=True)
    keys = ("train_s", "reward_first", "reward_last", "eval_reward_sft", "eval_reward_policy", "kl")
    rows = [[a, *(r[k] for k in keys), f"{r['win_rate']:.1%}"] for a, r in results.items()]
    print_table(f"{args.steps} steps x 8 replies each, from {args.run / 'sft'} against {args.run / 'reward'}",
                ["algorithm", "train s", "reward step 1", "reward last step", "held-out SFT", "held-out policy",
                 "KL", "win rate"], rows)  # fmt: skip
    write_record("rl_algorithms", {"args": {k: str(v) for k, v in vars(args).items()}, "results": results})


if __name__ == "__main__":
    main()
