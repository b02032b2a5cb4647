"""DPO (Rafailov et al. 2023): learning from preferences without a reward model or RL, on TRL's ``DPOTrainer``.

The KL-regularised RL objective of step 3 has a closed-form optimum, π*(y|x) ∝ π_ref(y|x)·exp(r(x,y)/β).
Solving it for r and putting that into the Bradley-Terry loss of step 2 gives a loss on the policy
itself, with the reference model in place of the reward model:

    −log σ(β · [log π(y_w|x)/π_ref(y_w|x) − log π(y_l|x)/π_ref(y_l|x)])

over preference pairs - OpenAssistant's rankings as their pairs, HH-RLHF's pairs. TRL's trainer is
used as it is (``algo: dpo``); Rejoinder gives it the pairs, its log, checkpoints and the policy
folder, so that ``rejoinder eval policy`` compares it with the other algorithms on the same
prompts and reward. ``kl_coef`` is DPO's β here (typically 0.1).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rejoinder.align.rl.config import RLConfig
from rejoinder.align.runs import latest_checkpoint, start_run
from rejoinder.datasets.rlhf import Ranking, prompt_key
from rejoinder.errors import ConfigError


def preference_rows(config: RLConfig) -> list[dict[str, Any]]:
    """TRL's conversational preference rows from the configured data (rankings split into their pairs)."""
    from rejoinder.align.training_data import read_training_data

    train, _held, _ = read_training_data(
        config.data, ("preference", "ranking"), held_out=0.1, seed=config.seed, key=prompt_key
    )
    rows = []
    for record in train:
        for pref in record.preferences() if isinstance(record, Ranking) else [record]:
            rows.append(
                {
                    "prompt": [t.to_json() for t in pref.prompt_turns()],
                    "chosen": [{"role": "assistant", "content": _text(pref.chosen)}],
                    "rejected": [{"role": "assistant", "content": _text(pref.rejected)}],
                }
            )
    if not rows:
        raise ConfigError(f"data {', '.join(config.data)}: no preference pairs for DPO")
    if config.max_prompts:
        rows = rows[: config.max_prompts]
    return rows


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "\n".join(t.content for t in value)


def train_dpo(config: RLConfig, on_log: Any = None) -> tuple[Path, dict[str, Any]]:
    """Train the policy with DPO; returns (policy folder, report)."""
    import datasets
    import torch
    import trl
    from transformers import PrinterCallback, TrainerCallback

    from rejoinder.align.config import use_bf16
    from rejoinder.align.rl.trainer import Models, save_policy

    run = Path(config.output_dir)
    checkpoints = run / "checkpoints" / "rl"
    resume = start_run(run, "rl.yaml", config, checkpoints)
    datasets.disable_progress_bars()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    models = Models(config, reward=None)
    rows = preference_rows(config)
    log_path = run / "rl-log.jsonl"
    if resume is None and log_path.exists():
        log_path.unlink()

    class Log(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            row = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, int | float)}}
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if on_log:
                on_log(row)

    args = trl.DPOConfig(
        output_dir=str(checkpoints),
        beta=config.kl_coef,
        max_length=config.max_prompt_tokens + config.max_new_tokens,
        max_steps=config.steps,
        per_device_train_batch_size=config.prompts_per_step,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        gradient_checkpointing=False,  # it only costs time on a CPU with memory to spare
        bf16=use_bf16(config.precision),
        use_cpu=not torch.cuda.is_available(),
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=1,
        report_to=[],
        seed=config.seed,
        dataloader_pin_memory=False,
        disable_tqdm=True,
    )
    trainer = trl.DPOTrainer(
        model=models.policy,
        ref_model=models.reference,  # None with LoRA: TRL switches the adapter off for the reference
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=models.tokenizer,
        callbacks=[Log()],
    )
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    latest = latest_checkpoint(checkpoints)
    trainer.train(resume_from_checkpoint=str(latest) if latest else None)
    seconds = time.perf_counter() - started
    history = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    report = {
        "algo": "dpo",
        "policy": models.spec,
        "reward": "preferences (DPO, no reward model)",
        "steps": trainer.state.global_step,
        "resumed_from": latest.name if latest else None,
        "stopped": None,
        "seconds": round(seconds, 1),
        "pairs": len(rows),
        "first": history[0] if history else None,
        "last": history[-1] if history else None,
    }
    models.policy = trainer.model
    if trainer.accelerator.is_main_process:
        save_policy(models, run / "policy", report)
    return run / "policy", report
