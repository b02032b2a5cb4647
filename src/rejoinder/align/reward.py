"""Step 2 of InstructGPT: a reward model trained on K-way rankings (``rejoinder train reward``).

The model is the SFT model with a scalar head (a sequence-classification model with one output,
read at the last token of prompt + reply rendered by the chat template). Labelers rank K replies
to a prompt; the loss of that prompt is the lecture's

    loss(θ) = -1/C(K,2) · Σ_{(y_w, y_l)} log σ(r_θ(x, y_w) − r_θ(x, y_l))

over every pair in which y_w is ranked above y_l (:func:`kway_loss`; tied replies make no pair,
so the sum is over the untied pairs and divided by their number). All K replies of a prompt go
through the model in one batch: K forward passes per prompt, where splitting the ranking into
C(K,2) preference pairs - all that TRL's ``RewardTrainer`` takes - costs 2·C(K,2) (12 instead of 4
for K = 4, 72 instead of 9 for K = 9), and weights a prompt by its number of pairs instead of once.
A pairwise preference is the K = 2 case.

Held-out comparisons are split by prompt (no prompt's replies on both sides, so accuracy is not
memory); each epoch reports the held-out pairwise accuracy beside two baselines: "the longer reply
wins" and random (50%). At the end the rewards are centred: the SFT model answers
``normalise_prompts`` training prompts, and the mean score of its replies becomes the offset
subtracted from every score, so that the policy starts RL at reward 0 (InstructGPT, section C.3).

``<run>/reward`` is a model folder with ``rejoinder-reward.json`` (offset, accuracy, baselines);
:class:`RewardModel` loads it for ``rejoinder score`` and the RL step.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rejoinder.align.config import PRECISION_HELP, option, use_bf16
from rejoinder.align.runs import same_config, save_atomically, start_run
from rejoinder.align.training_data import read_training_data
from rejoinder.datasets.rlhf import Preference, Ranking, Record, Turn, prompt_key
from rejoinder.errors import ConfigError


@dataclass
class RewardConfig:
    """Reward model (step 2). Every field is a key of the YAML file and a flag."""

    model: str = option(
        "auto",
        "The SFT model to put the scalar head on: auto (<output_dir>/sft when trained, else smollm2), a shipped name "
        "or a folder.",
    )
    data: list[str] = option(
        ["oasst"], "A curated folder or sources with rankings/preferences: oasst, hh, .jsonl/.csv files."
    )
    output_dir: Path = option(Path("runs/default"), "The run folder: checkpoints/, the model in reward/, the log.")
    epochs: float = option(1.0, "Passes over the training rankings.")
    max_steps: int = option(-1, "Stop after this many optimiser steps (-1: run the epochs).")
    learning_rate: float = option(
        3e-5,
        "Peak learning rate (full fine-tuning; about 1e-4 with LoRA). A step holds whole rankings, so there are "
        "fewer steps than a trainer on pairs takes: 3e-5 measured best on OpenAssistant (1e-5, 2e-5 below).",
    )
    lr_scheduler: str = option("linear", "Learning-rate schedule after warm-up: cosine, linear or constant.")
    warmup_ratio: float = option(0.05, "Fraction of the steps spent warming the learning rate up.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    groups_per_batch: int = option(4, "Prompts per optimiser step and process, each with all of its ranked replies.")
    weighting: str = option(
        "prompt", "How comparisons weigh in the loss: prompt (each prompt the same, InstructGPT) or pair (each pair)."
    )
    gradient_accumulation: int = option(1, "Micro-batches accumulated into one optimiser step.")
    max_length: int = option(
        512, "Tokens of prompt + reply; longer replies are left out of their ranking (as TRL does)."
    )
    held_out: float = option(0.1, "Fraction of prompts held out for accuracy (when data is not a curated folder).")
    max_groups: int = option(0, "Train on at most this many rankings (0: all).")
    lora: bool = option(False, "Train LoRA adapters and the head instead of every weight.")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA scaling alpha.")
    normalise_prompts: int = option(
        32, "Training prompts the SFT model answers to centre the rewards (0: no centring)."
    )
    normalise_tokens: int = option(96, "Tokens per reply when centring.")
    eval_batch: int = option(16, "Sequences per forward pass when scoring.")
    save_steps: int = option(50, "Write a checkpoint every this many steps (a killed run resumes from the last).")
    logging_steps: int = option(5, "Log the loss and batch accuracy every this many steps.")
    seed: int = option(0, "Seed of the split and the shuffling.")
    threads: int = option(0, "PyTorch CPU threads (0: PyTorch's default).")
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass (less memory, slower).")
    precision: str = option("auto", PRECISION_HELP)

    def check(self) -> None:
        if self.groups_per_batch < 1 or self.gradient_accumulation < 1:
            raise ConfigError("groups_per_batch and gradient_accumulation must be at least 1")
        if not 0 <= self.held_out < 1:
            raise ConfigError(f"held_out {self.held_out} must be in [0, 1)")
        if self.max_length < 16:
            raise ConfigError(f"max_length {self.max_length} is too short (at least 16 tokens)")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision {self.precision!r}: expected auto, bf16 or fp32")
        if self.lr_scheduler not in ("cosine", "linear", "constant"):
            raise ConfigError(f"lr_scheduler {self.lr_scheduler!r}: expected cosine, linear or constant")
        if self.weighting not in ("prompt", "pair"):
            raise ConfigError(f"weighting {self.weighting!r}: expected prompt or pair")


# --------------------------------------------------------------------------------------------
# The K-way loss


def kway_loss(
    rewards: Any, groups: Sequence[Sequence[int]], ranks: Sequence[Sequence[int]], weighting: str = "prompt"
) -> tuple[Any, dict[str, float]]:
    """The mean over groups of ``-1/|P| Σ_{(w,l) ∈ P} log σ(r_w − r_l)``, P the group's untied ordered pairs.

    ``weighting="prompt"`` is that, InstructGPT's: each prompt weighs the same, whatever its K.
    ``weighting="pair"`` is the mean over every pair of the batch instead (a K = 9 prompt's 36
    comparisons weigh 36 times a preference's one, as when the ranking is split into pairs) - still
    one forward pass per reply.

    ``rewards`` is a 1-D tensor of every sequence's score; ``groups[g]`` the indices into it of
    group g's replies and ``ranks[g]`` their ranks (0 = best, equal = tied). Returns the loss and
    its pair statistics (pairs, how many the rewards already order correctly). Groups whose
    replies are all tied add nothing.
    """
    import torch
    import torch.nn.functional as F

    winners, losers, weights = [], [], []
    live = sum(1 for g, r in zip(groups, ranks, strict=True) if _pairs(r) and len(g) == len(r))
    if live == 0:
        return rewards.sum() * 0.0, {"pairs": 0.0, "correct": 0.0}
    if weighting not in ("prompt", "pair"):
        raise ConfigError(f"weighting {weighting!r}: expected prompt or pair")
    total = sum(len(_pairs(order)) for order in ranks)
    for members, order in zip(groups, ranks, strict=True):
        pairs = _pairs(order)
        for i, j in pairs:
            winners.append(members[i])
            losers.append(members[j])
            if weighting == "prompt":
                weights.append(1.0 / (len(pairs) * live))  # 1/C(K,2) within the group, then the mean over groups
            else:
                weights.append(1.0 / total)
    w = torch.tensor(winners, device=rewards.device)
    lo = torch.tensor(losers, device=rewards.device)
    margin = rewards[w] - rewards[lo]
    loss = -(F.logsigmoid(margin) * torch.tensor(weights, device=rewards.device, dtype=rewards.dtype)).sum()
    return loss, {"pairs": float(len(winners)), "correct": float((margin > 0).sum().item())}


def _pairs(ranks: Sequence[int]) -> list[tuple[int, int]]:
    """(better, worse) index pairs of a ranking; ties make none."""
    return [(i, j) for i in range(len(ranks)) for j in range(len(ranks)) if ranks[i] < ranks[j]]


# --------------------------------------------------------------------------------------------
# Comparison groups


@dataclass
class Group:
    """One prompt's ranked replies: ``replies[i]`` has rank ``ranks[i]`` (0 = best)."""

    prompt: tuple[Turn, ...]
    replies: list[str]
    ranks: list[int]
    source: str

    def pairs(self) -> list[tuple[int, int]]:
        return _pairs(self.ranks)


def _reply_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "\n".join(t.content for t in value if t.role == "assistant") or "\n".join(t.content for t in value)


def as_group(record: Record) -> Group:
    """A ranking or a preference as a comparison group."""
    prompt = record.prompt_turns()
    if isinstance(record, Ranking):
        ranks = [record.rank_of(i) for i in range(record.k)]
        return Group(prompt, [_reply_text(c) for c in record.completions], ranks, record.source or "data")
    if isinstance(record, Preference):
        return Group(
            prompt, [_reply_text(record.chosen), _reply_text(record.rejected)], [0, 1], record.source or "data"
        )
    raise ConfigError(f"a {record.format} record is not a comparison (rankings and preferences train reward models)")


def with_pairs(groups: Sequence[Group]) -> list[Group]:
    """The groups that hold at least one untied pair (preferences about one prompt stay separate groups)."""
    return [g for g in groups if g.pairs()]


def encode_reply(tokenizer: Any, prompt: Sequence[Turn], reply: str) -> list[int]:
    """The ids the reward model reads: prompt and reply rendered by the chat template (as TRL does)."""
    messages = [t.to_json() for t in prompt] + [{"role": "assistant", "content": reply}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


@dataclass
class EncodedGroup:
    ids: list[list[int]]
    ranks: list[int]
    source: str
    replies: list[str]


def encode_groups(tokenizer: Any, groups: Sequence[Group], max_length: int) -> tuple[list[EncodedGroup], int]:
    """Encoded groups; replies longer than ``max_length`` are left out (counted), and groups left with no pair."""
    out, dropped = [], 0
    for group in groups:
        ids, ranks, replies = [], [], []
        for reply, rank in zip(group.replies, group.ranks, strict=True):
            encoded = encode_reply(tokenizer, group.prompt, reply)
            if len(encoded) > max_length:
                dropped += 1
                continue
            ids.append(encoded)
            ranks.append(rank)
            replies.append(reply)
        if _pairs(ranks):
            out.append(EncodedGroup(ids, ranks, group.source, replies))
    return out, dropped


def collate(batch: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Every reply of the batch's groups in one right-padded tensor, with each group's indices and ranks."""
    import torch

    sequences, groups, ranks = [], [], []
    for item in batch:
        start = len(sequences)
        sequences.extend(item["input_ids"])
        groups.append(list(range(start, len(sequences))))
        ranks.append(list(item["ranks"]))
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "groups": groups, "ranks": ranks}


# --------------------------------------------------------------------------------------------
# Scoring and accuracy


def score_ids(model: Any, sequences: Sequence[Sequence[int]], pad_id: int, batch: int = 16) -> list[float]:
    """The reward model's raw score of each token sequence (batched by similar length, no gradients)."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = [0.0] * len(sequences)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch):
                chunk = order[start : start + batch]
                inputs = collate([{"input_ids": [sequences[i] for i in chunk], "ranks": [0] * len(chunk)}], pad_id)
                device = next(model.parameters()).device
                logits = model(
                    input_ids=inputs["input_ids"].to(device),
                    attention_mask=inputs["attention_mask"].to(device),
                    use_cache=False,
                ).logits
                for i, value in zip(chunk, logits[:, 0].float().tolist(), strict=True):
                    scores[i] = value
    finally:
        if was_training:
            model.train()
    return scores


def _accuracy(correct: float, pairs: int) -> float | None:
    return correct / pairs if pairs else None


def evaluate_groups(model: Any, groups: Sequence[EncodedGroup], pad_id: int, batch: int = 16) -> dict[str, Any]:
    """Held-out pairwise accuracy overall and per source, beside "the longer reply wins" and random."""
    flat = [ids for g in groups for ids in g.ids]
    scores = score_ids(model, flat, pad_id, batch) if flat else []
    by_source: dict[str, dict[str, float]] = defaultdict(lambda: {"pairs": 0, "model": 0.0, "longer": 0.0})
    at = 0
    for group in groups:
        rewards = scores[at : at + len(group.ids)]
        at += len(group.ids)
        for i, j in _pairs(group.ranks):
            row = by_source[group.source]
            row["pairs"] += 1
            row["model"] += 1.0 if rewards[i] > rewards[j] else 0.5 if rewards[i] == rewards[j] else 0.0
            a, b = len(group.replies[i]), len(group.replies[j])
            row["longer"] += 1.0 if a > b else 0.5 if a == b else 0.0
    total = {"pairs": 0, "model": 0.0, "longer": 0.0}
    for row in by_source.values():
        for key in total:
            total[key] += row[key]

    def summary(row: dict[str, float]) -> dict[str, Any]:
        pairs = int(row["pairs"])
        return {
            "pairs": pairs,
            "accuracy": _accuracy(row["model"], pairs),
            "longer_wins": _accuracy(row["longer"], pairs),
            "random": 0.5 if pairs else None,
        }

    return {**summary(total), "by_source": {s: summary(r) for s, r in sorted(by_source.items())}}


# --------------------------------------------------------------------------------------------
# Loading and saving


def load_reward_base(spec: str, lora: bool = False) -> tuple[Any, Any, str]:
    """(sequence-classification model with one output, tokenizer, name) on top of the model ``spec``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rejoinder.llm.models import dequantised_dir, quiet_transformers, resolve_model

    ref = resolve_model(spec)
    directory = dequantised_dir(ref)
    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model {ref.path}: cannot put a reward head on it: {exc}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"model {ref.name} has no chat template: train the reward model on an SFT model (rejoinder train sft)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, ref.name


class RewardModel:
    """A trained reward model: :meth:`score` gives the centred reward of replies to prompts."""

    def __init__(self, path: str | Path, *, threads: int = 0) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from rejoinder.llm.models import quiet_transformers

        self.path = Path(path)
        info_path = self.path / "rejoinder-reward.json"
        if not info_path.is_file():
            raise ConfigError(
                f"{self.path}: not a reward model folder (no rejoinder-reward.json); see rejoinder train reward"
            )
        try:
            self.info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{info_path}: broken JSON at line {exc.lineno}: {exc.msg}") from None
        if threads:
            torch.set_num_threads(threads)
        quiet_transformers()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot load the reward model: {exc}") from None
        self.offset = float(self.info.get("offset", 0.0))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def score(self, prompts: Sequence[str | Sequence[Turn]], replies: Sequence[str], batch: int = 16) -> list[float]:
        """The centred reward of each reply to its prompt (a string is one user turn)."""
        if len(prompts) != len(replies):
            raise ConfigError(f"{len(prompts)} prompts and {len(replies)} replies: give one reply per prompt")
        ids = []
        for prompt, reply in zip(prompts, replies, strict=True):
            turns = (Turn("user", prompt),) if isinstance(prompt, str) else tuple(prompt)
            ids.append(encode_reply(self.tokenizer, turns, reply))
        return [s - self.offset for s in score_ids(self.model, ids, self.pad_id, batch)]


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class RewardResult:
    model_dir: Path
    report: dict[str, Any]


def _kway_trainer_class() -> Any:
    from transformers import Trainer

    class KWayRewardTrainer(Trainer):
        """transformers' Trainer with the K-way ranking loss; batches are whole groups."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # the loss is a mean: let the Trainer divide for accumulation
            self._pair_stats = [0.0, 0.0]
            self.weighting = "prompt"

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            rewards = (
                model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
                .logits[:, 0]
                .float()
            )
            loss, stats = kway_loss(rewards, inputs["groups"], inputs["ranks"], self.weighting)
            self._pair_stats[0] += stats["correct"]
            self._pair_stats[1] += stats["pairs"]
            return (loss, rewards) if return_outputs else loss

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if "loss" in logs and self._pair_stats[1]:
                logs["accuracy"] = self._pair_stats[0] / self._pair_stats[1]  # training pairs since the last log
                self._pair_stats = [0.0, 0.0]
            super().log(logs, *args, **kwargs)

    return KWayRewardTrainer


def _sft_replies(spec: str, prompts: Sequence[tuple[Turn, ...]], tokens: int, seed: int) -> list[str]:
    """The SFT model's replies to ``prompts``, decoded together by Rejoinder's batched engine."""
    from concurrent.futures import ThreadPoolExecutor

    from rejoinder.llm.backends.torch import TorchBackend
    from rejoinder.llm.generation import GenerationParams
    from rejoinder.llm.models import resolve_model

    backend = TorchBackend(resolve_model(spec))
    try:

        def reply(item: tuple[int, tuple[Turn, ...]]) -> str:
            index, prompt = item
            params = GenerationParams(max_new_tokens=tokens, temperature=0.7, top_p=0.9, seed=seed + index)
            return "".join(backend.stream_chat([t.to_json() for t in prompt], params))

        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(reply, enumerate(prompts)))
    finally:
        backend.close()


def train_reward(config: RewardConfig, on_log: Callable[[dict[str, Any]], None] | None = None) -> RewardResult:
    """Train the reward model; see the module docstring."""
    import datasets
    import torch
    from transformers import PrinterCallback, TrainerCallback, TrainingArguments

    config.check()
    datasets.disable_progress_bars()
    run = Path(config.output_dir)
    final = run / "reward"
    if (final / ".complete").is_file() and same_config(run, "reward.yaml", config):
        report = json.loads((final / "rejoinder-reward.json").read_text(encoding="utf-8"))
        return RewardResult(final, {**report, "reused": True})
    checkpoints = run / "checkpoints" / "reward"
    resume = start_run(run, "reward.yaml", config, checkpoints)
    if config.threads:
        torch.set_num_threads(config.threads)

    base = sft_model_of(config)
    train_records, eval_records, data_note = read_training_data(
        config.data, ("ranking", "preference"), held_out=config.held_out, seed=config.seed, key=prompt_key
    )
    train_groups = with_pairs([as_group(r) for r in train_records])
    eval_groups = with_pairs([as_group(r) for r in eval_records])
    if config.max_groups:
        random.Random(config.seed).shuffle(train_groups)
        train_groups = train_groups[: config.max_groups]
    model, tokenizer, name = load_reward_base(base)
    pad_id = tokenizer.pad_token_id
    train_set, dropped_train = encode_groups(tokenizer, train_groups, config.max_length)
    eval_set, dropped_eval = encode_groups(tokenizer, eval_groups, config.max_length)
    if not train_set:
        raise ConfigError(f"data {data_note}: no ranking with a pair of replies within max_length={config.max_length}")
    if config.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear", task_type="SEQ_CLS"),
        )

    rows = [{"input_ids": g.ids, "ranks": g.ranks, "length": sum(len(s) for s in g.ids)} for g in train_set]
    log_path = run / "reward-log.jsonl"
    history: list[dict[str, Any]] = []

    class Report(TrainerCallback):
        """Logs each step's metrics, and the held-out accuracy at the end of every epoch."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if state.is_world_process_zero and logs:
                _append(log_path, {"step": state.global_step, "epoch": round(state.epoch or 0.0, 3), **logs}, on_log)

        def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if state.is_world_process_zero and eval_set and model is not None:
                result = evaluate_groups(model, eval_set, pad_id, config.eval_batch)
                entry = {
                    "step": state.global_step,
                    "epoch": round(state.epoch or 0.0, 3),
                    "eval_accuracy": result["accuracy"],
                }
                history.append({**entry, "by_source": {s: r["accuracy"] for s, r in result["by_source"].items()}})
                _append(log_path, entry, on_log)

    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.groups_per_batch,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        train_sampling_strategy="group_by_length",  # groups of similar lengths together: little padding
        length_column_name="length",
        remove_unused_columns=False,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        eval_strategy="no",
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        activation_checkpointing=config.gradient_checkpointing,
        bf16=use_bf16(config.precision),
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,
    )
    _disable_dropout(model)
    trainer = _kway_trainer_class()(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        data_collator=lambda batch: collate(batch, pad_id),
        callbacks=[Report()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.weighting = config.weighting
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    trained = trainer.model.merge_and_unload() if hasattr(trainer.model, "merge_and_unload") else trainer.model
    held = evaluate_groups(trained, eval_set, pad_id, config.eval_batch) if eval_set else None

    offset, centring = 0.0, None
    if config.normalise_prompts and trainer.accelerator.is_main_process:
        prompts = list({prompt_key_of(g.prompt): g.prompt for g in train_groups}.values())
        random.Random(config.seed).shuffle(prompts)
        prompts = prompts[: config.normalise_prompts]
        replies = _sft_replies(base, prompts, config.normalise_tokens, config.seed)
        raw = score_ids(trained, [encode_reply(tokenizer, p, r) for p, r in zip(prompts, replies, strict=True)], pad_id)
        offset = sum(raw) / len(raw)
        centring = {"prompts": len(raw), "mean_before": offset, "std": _std(raw)}
    groups_k: dict[int, int] = defaultdict(int)
    for g in train_set:
        groups_k[len(g.ids)] += 1
    report = {
        "model": name,
        "base": base,
        "method": f"LoRA r={config.lora_r}" if config.lora else "full fine-tuning",
        "data": data_note,
        "train_groups": len(train_set),
        "train_groups_by_k": dict(sorted(groups_k.items())),
        "train_sequences": sum(len(g.ids) for g in train_set),
        "train_pairs": sum(len(_pairs(g.ranks)) for g in train_set),
        "eval_groups": len(eval_set),
        "replies_too_long": dropped_train + dropped_eval,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 3),
        "resumed_from": resume.name if resume else None,
        "train_loss": result.training_loss,
        "held_out": held,
        "eval_history": history,
        "offset": offset,
        "centring": centring,
        "seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / max(trainer.state.epoch or 1.0, 1e-9), 1),
        "threads": torch.get_num_threads(),
        "precision": "bf16" if use_bf16(config.precision) else "fp32",
    }
    if trainer.accelerator.is_main_process:

        def write(folder: Path) -> None:
            trained.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            (folder / "rejoinder-reward.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

        save_atomically(final, write)
    trainer.accelerator.wait_for_everyone()
    return RewardResult(final, report)


def sft_model_of(config: RewardConfig) -> str:
    """The model the reward head goes on: ``auto`` is this run's SFT model when it is trained, else SmolLM2."""
    if config.model != "auto":
        return config.model
    sft = Path(config.output_dir) / "sft"
    return str(sft) if (sft / ".complete").is_file() else "smollm2"


def prompt_key_of(turns: Sequence[Turn]) -> str:
    return "\n".join(f"{t.role}: {t.content}" for t in turns)


def _std(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _disable_dropout(model: Any) -> None:
    """Dropout off everywhere, as TRL's RewardTrainer does by default: rewards of one reply must not jitter."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _append(path: Path, entry: dict[str, Any], on_log: Callable[[dict[str, Any]], None] | None) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
    if on_log is not None:
        on_log(entry)


def read_scoring_input(path: Path) -> tuple[list[dict[str, Any]], list[str | tuple[Turn, ...]], list[str]]:
    """The lines of a scoring file: ``{"prompt": text or messages, "reply" or "completion": text}``.

    A bad line stops with the file, the line and the field.
    """
    from rejoinder.datasets.rlhf import _Bad, _turns
    from rejoinder.errors import SourceError

    if not path.is_file():
        raise SourceError("no such file", path=path)
    rows, prompts, replies = [], [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=path, line=number) from None
            if not isinstance(row, dict):
                raise SourceError("expected a JSON object per line", path=path, line=number)
            prompt = row.get("prompt")
            reply = row.get("reply", row.get("completion"))
            if isinstance(prompt, list):
                try:
                    prompt = _turns(prompt, "prompt")
                except _Bad as exc:
                    raise SourceError(f"field {exc.field!r}: expected {exc.expected}", path=path, line=number) from None
            elif not isinstance(prompt, str) or not prompt.strip():
                raise SourceError(
                    'field "prompt": expected non-empty text or a list of messages', path=path, line=number
                )
            if not isinstance(reply, str):
                raise SourceError('field "reply" (or "completion"): expected text', path=path, line=number)
            rows.append(row)
            prompts.append(prompt)
            replies.append(reply)
    return rows, prompts, replies
