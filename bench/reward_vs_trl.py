"""The reward model (step 2) against TRL's ``RewardTrainer``, in one run on this CPU.

Both sides start from the same model (SmolLM2-135M-Instruct, the shipped GGUF dequantised to fp32),
train one epoch with the same learning rate and schedule, the same maximum length (longer replies
left out on both sides, as TRL does) and the same threads, on the same training rankings:
OpenAssistant's K-way rankings (K = 2..9), and optionally HH-RLHF harmless pairs. TRL cannot take a K-way
ranking, so it gets each ranking as its C(K,2) preference pairs (ties skipped) - the only way to
give it the same comparisons. Both are scored by the same code on the same held-out pairs (split
by prompt) beside "the longer reply wins" and random.

Measured: seconds of training per epoch (ratio TRL / ours) and held-out pairwise accuracy, on
OpenAssistant and on HH. Settings of each side are printed. TRL runs at its best settings here:
gradient checkpointing off (its default, on, only costs time on a CPU with memory to spare),
dropout off and ``bf16`` autocast (its defaults; bf16 is 2.8x faster than fp32 on this CPU, which
has AVX512-BF16). Ours runs bf16 too (``precision: auto``).

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/reward_vs_trl.py [--max-length 384]`` on an otherwise
idle machine: OpenAssistant's rankings alone, where the K-way loss saves forward passes. With
``--hh-pairs 400 --only ours`` the HH-RLHF pairs join the training data (pairs cost the same on both
sides) and the record ``reward_vs_trl_hh`` holds the accuracy on HH's held-out pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from common import SHARED, WORK, print_table, write_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

os.environ.setdefault("REJOINDER_SHARED_DATA", str(SHARED / "data"))


def prepare(folder: Path, hh_pairs: int, held_out: float, seed: int) -> dict[str, Any]:
    """Curated-style splits written once: train/validation rankings and preferences, split by prompt."""
    from rejoinder.align.training_data import split_held_out
    from rejoinder.datasets.rlhf import prompt_key, write_jsonl
    from rejoinder.datasets.rlhf_sources import read_source

    rankings = [r for r in read_source("oasst") if r.format == "ranking"]
    pairs = [r for r in read_source("hh") if r.format == "preference"]
    random.Random(seed).shuffle(pairs)
    pairs = pairs[:hh_pairs]
    counts = {}
    for name, records in (("ranking", rankings), ("preference", pairs)):
        train, held = split_held_out(records, held_out, seed, prompt_key)
        write_jsonl(train, folder / f"train.{name}.jsonl")
        write_jsonl(held, folder / f"validation.{name}.jsonl")
        counts[name] = {"train": len(train), "held_out": len(held)}
    return counts


def run_ours(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from rejoinder.align.reward import RewardConfig, train_reward

    out = WORK / "reward-ours"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    config = RewardConfig(
        model="smollm2",
        data=[str(folder)],
        output_dir=out,
        epochs=1,
        learning_rate=args.lr,
        groups_per_batch=args.groups_per_batch,
        weighting=args.weighting,
        max_length=args.max_length,
        normalise_prompts=0,
        save_steps=100000,
        logging_steps=10,
        seed=args.seed,
        threads=args.threads,
    )
    result = train_reward(config)
    report = result.report
    return {
        "seconds": report["seconds"],
        "steps": report["steps"],
        "sequences": report["train_sequences"],
        "pairs": report["train_pairs"],
        "held_out": report["held_out"],
        "settings": {
            "groups_per_batch": args.groups_per_batch,
            "weighting": args.weighting,
            "learning_rate": args.lr,
            "scheduler": "linear, 5% warm-up",
            "max_length": args.max_length,
            "threads": args.threads,
            "loss": "K-way, one forward per reply",
            "padding": "groups of similar length batched together",
            "precision": report["precision"],
        },
        "model_dir": str(result.model_dir),
    }


def run_trl(folder: Path, args: argparse.Namespace, lr: float) -> dict[str, Any]:
    import datasets
    import torch
    import trl
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rejoinder.align.reward import as_group, encode_groups, evaluate_groups
    from rejoinder.datasets.rlhf import Ranking, read_records
    from rejoinder.llm.models import dequantised_dir, quiet_transformers, resolve_model

    torch.set_num_threads(args.threads)
    quiet_transformers()
    datasets.disable_progress_bars()
    directory = dequantised_dir(resolve_model("smollm2"))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id

    rows = []
    for kind in ("ranking", "preference"):
        for record in read_records(folder / f"train.{kind}.jsonl", format=kind):
            prefs = record.preferences() if isinstance(record, Ranking) else [record]
            for pref in prefs:
                prompt = [t.to_json() for t in pref.prompt_turns()]
                rows.append(
                    {
                        "prompt": prompt,
                        "chosen": [{"role": "assistant", "content": _text(pref.chosen)}],
                        "rejected": [{"role": "assistant", "content": _text(pref.rejected)}],
                    }
                )
    out = WORK / "reward-trl"
    config = trl.RewardConfig(
        output_dir=str(out),
        num_train_epochs=1,
        per_device_train_batch_size=args.trl_batch,
        learning_rate=lr,
        lr_scheduler_type="linear",
        warmup_steps=0.05,
        max_length=args.max_length,
        gradient_checkpointing=False,
        disable_dropout=True,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=10,
        report_to=[],
        seed=args.seed,
        dataloader_pin_memory=False,
        disable_tqdm=True,
        use_cpu=True,  # TRL's bf16 default needs it on a machine without a GPU
    )
    trainer = trl.RewardTrainer(
        model=model, args=config, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer
    )
    kept = len(trainer.train_dataset)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    held_groups = [
        as_group(r)
        for kind in ("ranking", "preference")
        for r in read_records(folder / f"validation.{kind}.jsonl", format=kind)
    ]
    encoded, _ = encode_groups(tokenizer, held_groups, args.max_length)
    held = evaluate_groups(trainer.model, encoded, tokenizer.pad_token_id)
    return {
        "seconds": round(seconds, 1),
        "steps": trainer.state.global_step,
        "sequences": 2 * kept,
        "pairs": kept,
        "held_out": held,
        "settings": {
            "per_device_train_batch_size": args.trl_batch,
            "learning_rate": lr,
            "scheduler": "linear, 5% warm-up",
            "max_length": args.max_length,
            "threads": args.threads,
            "gradient_checkpointing": False,
            "disable_dropout": True,
            "bf16": bool(trainer.args.bf16),
        },
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "\n".join(t.content for t in value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hh-pairs", type=int, default=0, help="HH-RLHF pairs added to the training data (seeded sample; 0: none)."
    )
    parser.add_argument("--held-out", type=float, default=0.2, help="Fraction of prompts held out.")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--lr", type=float, default=3e-5, help="Ours (and TRL unless --trl-lr).")
    parser.add_argument("--groups-per-batch", type=int, default=4, help="Ours: prompts (with all replies) per step.")
    parser.add_argument("--weighting", choices=["prompt", "pair"], default="prompt", help="Ours: how pairs weigh.")
    parser.add_argument("--trl-batch", type=int, default=4, help="TRL: pairs per step.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["ours", "trl"], default=None)
    parser.add_argument(
        "--trl-lr", type=float, nargs="+", default=None, help="TRL's learning rates, each a run (default: --lr)."
    )
    args = parser.parse_args()

    folder = WORK / "reward-data"
    counts = prepare(folder, args.hh_pairs, args.held_out, args.seed)
    print(json.dumps({"data": counts}))
    sides = {}
    if args.only in (None, "ours"):
        sides["ours"] = run_ours(folder, args)
        print(json.dumps({"ours": sides["ours"]["seconds"]}), flush=True)
    if args.only in (None, "trl"):
        for i, lr in enumerate(args.trl_lr or [args.lr]):
            name = "trl" if i == 0 else f"trl-lr{lr:g}"
            sides[name] = run_trl(folder, args, lr)
            print(json.dumps({name: sides[name]["seconds"]}), flush=True)

    def pct(value: float | None) -> str:
        return f"{value:.1%}" if value is not None else "-"

    rows = []
    for name, side in sides.items():
        held = side["held_out"]
        by = held["by_source"]
        rows.append(
            [
                "Rejoinder (K-way)"
                if name == "ours"
                else f"TRL RewardTrainer (pairs, lr {side['settings']['learning_rate']:g})",
                side["sequences"],
                side["steps"],
                f"{side['seconds']:.0f}",
                pct(held["accuracy"]),
                pct(by.get("oasst", {}).get("accuracy")),
                pct(by.get("hh-rlhf", {}).get("accuracy")),
            ]
        )
    if "ours" in sides:
        held = sides["ours"]["held_out"]
        by = held["by_source"]
        rows.append(
            [
                "longer reply wins",
                "",
                "",
                "",
                pct(held["longer_wins"]),
                pct(by.get("oasst", {}).get("longer_wins")),
                pct(by.get("hh-rlhf", {}).get("longer_wins")),
            ]
        )
        rows.append(["random", "", "", "", "50.0%", "50.0%", "50.0%"])
    print_table(
        "Reward model, one epoch, SmolLM2-135M-Instruct on 2 CPU threads",
        ["trainer", "forward sequences", "steps", "seconds/epoch", "held-out acc.", "OASST", "HH"],
        rows,
    )
    record: dict[str, Any] = {"data": counts, "sides": sides, "args": vars(args)}
    if "ours" in sides:
        speedups = {
            name: round(side["seconds"] / sides["ours"]["seconds"], 2) for name, side in sides.items() if name != "ours"
        }
        if speedups:
            record["speedup"] = speedups
            for name, value in speedups.items():
                print(f"\nspeed-up ({name} seconds / ours): {value:.2f}x")
    for name, side in sides.items():
        print(f"{name} settings: {json.dumps(side['settings'])}")
    write_record("reward_vs_trl" if not args.hh_pairs else "reward_vs_trl_hh", record)


if __name__ == "__main__":
    main()
