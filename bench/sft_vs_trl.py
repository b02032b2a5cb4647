"""Supervised fine-tuning (step 1): ``rejoinder train sft`` against TRL's plain ``SFTTrainer``, in one run.

Rejoinder's SFT runs on TRL's ``SFTTrainer``; what it changes is shown by running both on the
same model (SmolLM2-135M-Instruct, the shipped GGUF dequantised to fp32), the same OpenAssistant
demonstrations (split by user, the same held-out users), the same LoRA adapters, learning rate,
batch, maximum length, epochs and threads:

- TRL plain: ``SFTTrainer`` given the ``messages`` records with its defaults - the loss on every
  token of the conversation, random batches, ``bf16`` autocast (its default wherever fp16 is not
  set; 2.8x faster than fp32 on this CPU, which has AVX512-BF16) - except gradient checkpointing,
  turned off because it only costs time on a CPU with memory to spare.
- Rejoinder: the labels on the assistant's last reply and its end-of-turn token only, batches of
  similar lengths (``group_by_length``), bf16 autocast (``precision: auto`` picks it on such a CPU).

Both models are then scored the same way: the cross-entropy per token of the held-out
demonstrations' assistant replies (what an assistant is asked to produce), and seconds of training
per epoch.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/sft_vs_trl.py [--examples 240] [--max-length 256]`` on an
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


def prepare(folder: Path, held_out: float, seed: int) -> dict[str, int]:
    from rejoinder.align.training_data import by_user, split_held_out
    from rejoinder.datasets.rlhf import write_jsonl
    from rejoinder.datasets.rlhf_sources import read_source

    demos = [r for r in read_source("oasst") if r.format == "messages"]
    train, held = split_held_out(demos, held_out, seed, by_user)
    write_jsonl(train, folder / "train.messages.jsonl")
    write_jsonl(held, folder / "validation.messages.jsonl")
    return {"train": len(train), "held_out": len(held)}


def assistant_loss(model: Any, tokenizer: Any, folder: Path, max_length: int, limit: int) -> float:
    """Mean cross-entropy per assistant token of the held-out demonstrations (the same labels for both)."""
    import torch

    from rejoinder.align.sft import encode_all
    from rejoinder.datasets.rlhf import read_records

    records = list(read_records(folder / "validation.messages.jsonl", format="messages"))[:limit]
    encoded = encode_all(tokenizer, records, max_length)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for example in encoded.examples:
            ids = torch.tensor([example["input_ids"]])
            labels = torch.tensor([example["labels"]])
            logits = model(input_ids=ids).logits[:, :-1].float()
            target = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += loss.item()
            count += int((target != -100).sum())
    return total / max(count, 1)


def run_ours(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from rejoinder.align.sft import SFTConfig, load_for_training, train_sft

    out = WORK / "sft-ours"
    shutil.rmtree(out, ignore_errors=True)
    config = SFTConfig(
        model="smollm2",
        data=[str(folder)],
        output_dir=out,
        lora=True,
        epochs=1,
        learning_rate=args.lr,
        batch_size=args.batch,
        max_length=args.max_length,
        max_examples=args.examples,
        eval_examples=0,
        sample_prompts=[],
        save_steps=100000,
        seed=args.seed,
        threads=args.threads,
    )
    result = train_sft(config)
    model, tokenizer, _ = load_for_training(str(result.model_dir))
    loss = assistant_loss(model, tokenizer, folder, args.max_length, args.eval_limit)
    return {
        "seconds": result.report["seconds"],
        "steps": result.report["steps"],
        "assistant_loss": loss,
        "settings": {
            "labels": "assistant's last reply + end of turn",
            "batches": "group_by_length",
            "precision": result.report["precision"],
            "lora_r": 16,
            "learning_rate": args.lr,
            "batch_size": args.batch,
            "max_length": args.max_length,
            "threads": args.threads,
        },
    }


def run_trl(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    import datasets
    import torch
    import trl
    from peft import LoraConfig

    from rejoinder.align.sft import load_for_training
    from rejoinder.datasets.rlhf import read_records

    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    model, tokenizer, _ = load_for_training("smollm2")
    records = list(read_records(folder / "train.messages.jsonl", format="messages"))[: args.examples]
    rows = [{"messages": [t.to_json() for t in r.messages]} for r in records]
    # a conversation ending with the prompter's turn has nothing to learn at its end: cut it as ours does
    for row in rows:
        while row["messages"] and row["messages"][-1]["role"] != "assistant":
            row["messages"].pop()
    out = WORK / "sft-trl"
    shutil.rmtree(out, ignore_errors=True)
    config = trl.SFTConfig(
        output_dir=str(out),
        num_train_epochs=1,
        per_device_train_batch_size=args.batch,
        learning_rate=args.lr,
        max_length=args.max_length,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to=[],
        seed=args.seed,
        dataloader_pin_memory=False,
        disable_tqdm=True,
        use_cpu=True,  # TRL's bf16 default needs it on a machine without a GPU
    )
    trainer = trl.SFTTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    merged = trainer.model.merge_and_unload()
    loss = assistant_loss(merged, tokenizer, folder, args.max_length, args.eval_limit)
    return {
        "seconds": round(seconds, 1),
        "steps": trainer.state.global_step,
        "assistant_loss": loss,
        "settings": {
            "labels": "every token (TRL's default for messages)",
            "batches": "random",
            "precision": f"bf16={trainer.args.bf16}",
            "lora_r": 16,
            "learning_rate": args.lr,
            "batch_size": args.batch,
            "max_length": args.max_length,
            "threads": args.threads,
            "gradient_checkpointing": False,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=240, help="Training demonstrations (the first N of the split).")
    parser.add_argument("--eval-limit", type=int, default=64, help="Held-out demonstrations scored.")
    parser.add_argument("--held-out", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    folder = WORK / "sft-data"
    counts = prepare(folder, args.held_out, args.seed)
    from rejoinder.align.sft import load_for_training

    base, tokenizer, _ = load_for_training("smollm2")
    before = assistant_loss(base, tokenizer, folder, args.max_length, args.eval_limit)
    del base
    sides = {"ours": run_ours(folder, args)}
    print(json.dumps({"ours": sides["ours"]["seconds"]}), flush=True)
    sides["trl"] = run_trl(folder, args)
    rows = [["before training", "", "", f"{before:.3f}"]]
    for name, side in sides.items():
        label = "rejoinder train sft" if name == "ours" else "TRL SFTTrainer, defaults"
        rows.append([label, side["steps"], f"{side['seconds']:.0f}", f"{side['assistant_loss']:.3f}"])
    print_table(
        f"SFT, one epoch of {args.examples} OpenAssistant demonstrations, SmolLM2-135M-Instruct + LoRA r=16",
        ["trainer", "steps", "seconds/epoch", "held-out loss per assistant token"],
        rows,
    )
    speedup = sides["trl"]["seconds"] / sides["ours"]["seconds"]
    print(f"\nspeed-up (TRL seconds / ours): {speedup:.2f}x")
    for name, side in sides.items():
        print(f"{name} settings: {json.dumps(side['settings'])}")
    write_record(
        "sft_vs_trl",
        {"data": counts, "before_loss": before, "sides": sides, "speedup": round(speedup, 2), "args": vars(args)},
    )


if __name__ == "__main__":
    main()
