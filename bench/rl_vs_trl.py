"""RL steps against TRL's ``GRPOTrainer`` and ``RLOOTrainer``, in one run on this CPU.

Both sides start from the same model (SmolLM2-135M-Instruct, the shipped GGUF dequantised to
fp32), take the same training prompts (OpenAssistant's, chat template applied), the same reward
(a programmatic one, ``length:<words>``: no reward-model time on either side), the same batch
(``--prompts`` prompts x ``--samples`` replies per step), reply length, sampling temperature (1.0,
no top-p/top-k), learning rate, KL coefficient, one optimiser step per batch, and the same
threads. TRL runs at its best settings here: gradient checkpointing off (it only costs time on a
CPU with memory to spare), bf16 autocast on (its default; this CPU has AVX512-BF16). Ours runs
``precision: auto`` (bf16 training; rollouts decoded by the batched engine from a bf16 copy of the
policy, with the samples of a prompt sharing one prefill).

Measured: seconds per step (the mean over the steps after the first, and the first) and the mean
reward over the last two steps, beside the first step's.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/rl_vs_trl.py [--algo grpo rloo] [--steps 6]`` on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import SHARED, WORK, print_table, write_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

os.environ.setdefault("REJOINDER_SHARED_DATA", str(SHARED / "data"))


def our_config(algo: str, args: argparse.Namespace) -> Any:
    from rejoinder.align.rl.config import RLConfig

    return RLConfig(
        algo=algo,
        model="smollm2",
        rewards=[f"length:{args.words}"],
        data=["oasst"],
        output_dir=WORK / f"rl-ours-{algo}",
        steps=args.steps,
        prompts_per_step=args.prompts,
        samples_per_prompt=args.samples,
        max_new_tokens=args.max_new_tokens,
        temperature=1.0,
        unfinished_penalty=0.0,  # TRL has none
        kl_coef=args.beta,
        learning_rate=args.lr,
        ppo_epochs=1,
        minibatches=1,
        whiten_advantages=False,
        max_prompt_tokens=args.max_prompt_tokens,
        save_steps=10_000,
        seed=args.seed,
        threads=args.threads,
    )


def run_ours(algo: str, args: argparse.Namespace) -> dict[str, Any]:
    from rejoinder.align.rl.trainer import read_log, train_rl

    config = our_config(algo, args)
    if config.output_dir.exists():
        shutil.rmtree(config.output_dir)
    started = time.perf_counter()
    train_rl(config)
    total = time.perf_counter() - started
    log = read_log(config.output_dir / "rl-log.csv")
    return summary(
        [r["step_s"] for r in log],
        [r["reward"] for r in log],
        total,
        {
            "algo": algo,
            "engine": "Rejoinder's batched engine (bf16 decoding copy, shared prompt prefill, in-place cache)",
            "precision": "bf16 autocast (training)",
            "generation_share": round(sum(r["rollout_s"] for r in log) / sum(r["step_s"] for r in log), 3),
        },
    )


def run_trl(algo: str, args: argparse.Namespace) -> dict[str, Any]:
    import datasets
    import torch
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from rejoinder.align.rl.rewards import length_reward
    from rejoinder.align.rl.trainer import read_prompts
    from rejoinder.llm.models import dequantised_dir, quiet_transformers, resolve_model

    torch.set_num_threads(args.threads)
    quiet_transformers()
    datasets.disable_progress_bars()
    directory = dequantised_dir(resolve_model("smollm2"))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    prompts, _ = read_prompts(our_config(algo, args), tokenizer)  # the same training prompts as ours
    rows = [{"prompt": [t.to_json() for t in p]} for p in prompts]

    def length(completions: list[Any], **kwargs: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [length_reward(t.strip(), args.words) for t in texts]

    common = dict(
        output_dir=str(WORK / f"rl-trl-{algo}"),
        per_device_train_batch_size=args.prompts * args.samples,
        num_generations=args.samples,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        beta=args.beta,
        num_iterations=1,
        max_steps=args.steps,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=args.seed,
        use_cpu=True,
        bf16=True,
        dataloader_pin_memory=False,
        disable_tqdm=True,
    )
    steps: list[float] = []
    rewards: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            steps.append(time.perf_counter() - self.started)

        def on_log(self, args_: Any, state: Any, control: Any, logs: Any = None, **k: Any) -> None:
            if logs and "reward" in logs:
                rewards.append(float(logs["reward"]))

    if algo == "grpo":
        config = trl.GRPOConfig(**common, scale_rewards="group", loss_type="grpo")
        trainer_cls = trl.GRPOTrainer
    else:
        config = trl.RLOOConfig(**common)
        trainer_cls = trl.RLOOTrainer
    trainer = trainer_cls(
        model=model,
        reward_funcs=length,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[Timer()],
    )
    started = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - started
    return summary(
        steps,
        rewards,
        total,
        {
            "algo": algo,
            "engine": "transformers generate (TRL without vLLM)",
            "precision": "bf16 autocast",
            "gradient_checkpointing": False,
        },
    )


def summary(step_s: list[float], rewards: list[float], total: float, settings: dict[str, Any]) -> dict[str, Any]:
    later = step_s[1:] or step_s
    return {
        "first_step_s": round(step_s[0], 2) if step_s else None,
        "step_s": round(sum(later) / len(later), 2),
        "total_s": round(total, 1),
        "reward_first": rewards[0] if rewards else None,
        "reward_last2": sum(rewards[-2:]) / len(rewards[-2:]) if rewards else None,
        "rewards": rewards,
        "settings": settings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", nargs="+", default=["grpo", "rloo"], choices=["grpo", "rloo"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=4, help="Prompts per step.")
    parser.add_argument("--samples", type=int, default=4, help="Replies per prompt.")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-prompt-tokens", type=int, default=128)
    parser.add_argument("--words", type=int, default=8, help="The length reward's target, in words.")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient on both sides.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["ours", "trl"], default=None)
    args = parser.parse_args()

    results: dict[str, dict[str, Any]] = {}
    for algo in args.algo:
        for side in ("ours", "trl"):
            if args.only and side != args.only:
                continue
            result = run_ours(algo, args) if side == "ours" else run_trl(algo, args)
            results[f"{side}-{algo}"] = result
            print(json.dumps({f"{side}-{algo}": {k: result[k] for k in ("step_s", "reward_last2")}}), flush=True)

    rows = []
    ratios = {}
    for algo in args.algo:
        ours, theirs = results.get(f"ours-{algo}"), results.get(f"trl-{algo}")
        for name, r in (("Rejoinder", ours), ("TRL", theirs)):
            if r:
                rows.append(
                    [
                        f"{name} {algo.upper()}",
                        f"{r['first_step_s']:.1f}",
                        f"{r['step_s']:.1f}",
                        f"{r['reward_first']:+.3f}",
                        f"{r['reward_last2']:+.3f}",
                    ]
                )
        if ours and theirs:
            ratios[algo] = round(theirs["step_s"] / ours["step_s"], 2)
    print_table(
        f"RL steps, SmolLM2-135M-Instruct, {args.prompts} prompts x {args.samples} replies of <= {args.max_new_tokens} "
        f"tokens, {args.steps} steps, {args.threads} threads",
        ["trainer", "first step s", "s/step (later)", "reward step 1", "reward last 2"],
        rows,
    )
    for algo, ratio in ratios.items():
        print(f"{algo}: TRL seconds per step / ours = {ratio:.2f}x")
    print(f"settings: {json.dumps({k: v for k, v in vars(args).items()})}")
    write_record("rl_vs_trl", {"args": vars(args), "results": results, "speedup": ratios})


if __name__ == "__main__":
    main()
