"""Step 1 of InstructGPT: supervised fine-tuning on demonstrations (``rejoinder train sft``).

The loss is cross-entropy on the **assistant's** tokens of each demonstration, the conversation
rendered by the model's own chat template (:func:`encode_demonstration` builds the ids and the
labels, -100 everywhere else; the end-of-turn token is learned, so the model learns to stop).
Training runs on TRL's ``SFTTrainer`` (given the tokenised examples with their labels, so the mask
is ours and visible), with full fine-tuning or LoRA through peft - the lecture's cheaper version,
merged into the weights at the end. Each epoch reports the evaluation loss on held-out
demonstrations and the replies to fixed prompts; checkpoints go to ``<run>/checkpoints`` every
``save_steps`` steps, and a run started again on the same folder resumes from the latest one.

The result, ``<run>/sft``, is a plain Hugging Face model folder with its chat template and its
end-of-turn token as end of sequence: ``rejoinder chat --bot assistant --model <run>/sft`` serves
it, and the reward model (step 2) starts from it.

A **base** model (Gemma 3 270M, shipped without a chat template, which the assistant refuses) gets
one here: the Gemma turn format (``<start_of_turn>user ... <end_of_turn>``, tokens its vocabulary
already has), or ChatML where the vocabulary has ``<|im_start|>``; fine-tuning teaches it the format.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rejoinder.align.config import PRECISION_HELP, option, use_bf16
from rejoinder.align.runs import same_config, save_atomically, start_run
from rejoinder.align.training_data import by_user, read_training_data
from rejoinder.datasets.rlhf import Demonstration, PromptCompletion, Record, Turn, sft_examples
from rejoinder.errors import ConfigError

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system = message['content'] ~ '\n\n' %}"
    "{% else %}{{ '<start_of_turn>' ~ ('model' if message['role'] == 'assistant' else 'user') ~ '\n' "
    "~ ns.system ~ (message['content'] | trim) ~ '<end_of_turn>\n' }}{% set ns.system = '' %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
"""The Gemma turn format, for Gemma base models: a system prompt goes into the first user turn."""

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' ~ message['role'] ~ '\n' ~ (message['content'] | trim) "
    "~ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEMPLATES = {"gemma": (GEMMA_TEMPLATE, "<end_of_turn>"), "chatml": (CHATML_TEMPLATE, "<|im_end|>")}
END_OF_TURN_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>")

SAMPLE_PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for a good night's sleep.",
    "Write a two-line poem about the sea.",
]


@dataclass
class SFTConfig:
    """Supervised fine-tuning (step 1). Every field is a key of the YAML file and a flag."""

    model: str = option(
        "gemma3-270m", "Model to fine-tune: a shipped name (gemma3-270m, smollm2), a GGUF file or a model folder."
    )
    data: list[str] = option(
        ["oasst"], "A curated folder (rejoinder data curate) or sources: oasst, store, .jsonl/.csv files."
    )
    output_dir: Path = option(Path("runs/default"), "The run folder: checkpoints/, the model in sft/, logs, samples.")
    chat_template: str = option(
        "auto", "auto (the model's own; a base model gets one), gemma, chatml, or a Jinja file."
    )
    lora: bool = option(True, "Train LoRA adapters (peft) instead of every weight; merged into the model at the end.")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA scaling alpha.")
    lora_dropout: float = option(0.05, "LoRA dropout.")
    lora_targets: str = option("all-linear", "Modules that get adapters: all-linear, or names such as q_proj,v_proj.")
    epochs: float = option(1.0, "Passes over the training demonstrations.")
    max_steps: int = option(-1, "Stop after this many optimiser steps (-1: run the epochs).")
    learning_rate: float = option(2e-4, "Peak learning rate (LoRA; use about 2e-5 for full fine-tuning).")
    lr_scheduler: str = option("cosine", "Learning-rate schedule after warm-up: cosine, linear or constant.")
    warmup_ratio: float = option(0.03, "Fraction of the steps spent warming the learning rate up.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    batch_size: int = option(8, "Demonstrations per optimiser step and process (before accumulation).")
    gradient_accumulation: int = option(1, "Micro-batches accumulated into one optimiser step.")
    max_length: int = option(512, "Tokens per demonstration; longer ones are cut at the end, longer prompts skipped.")
    held_out: float = option(
        0.1, "Fraction of users whose demonstrations evaluate (when data is not a curated folder)."
    )
    max_examples: int = option(0, "Train on at most this many demonstrations (0: all).")
    eval_examples: int = option(64, "Evaluate on at most this many held-out demonstrations (0: all).")
    sample_prompts: list[str] = option(
        SAMPLE_PROMPTS, "Prompts answered after each epoch, to watch the replies change."
    )
    sample_tokens: int = option(64, "Tokens per sample reply.")
    save_steps: int = option(25, "Write a checkpoint every this many steps (a killed run resumes from the last).")
    logging_steps: int = option(5, "Log the training loss every this many steps.")
    seed: int = option(0, "Seed of the split, the shuffling and the adapters' initialisation.")
    threads: int = option(0, "PyTorch CPU threads (0: PyTorch's default).")
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass (less memory, slower).")
    precision: str = option("auto", PRECISION_HELP)

    def check(self) -> None:
        if self.batch_size < 1 or self.gradient_accumulation < 1:
            raise ConfigError("batch_size and gradient_accumulation must be at least 1")
        if self.max_length < 16:
            raise ConfigError(f"max_length {self.max_length} is too short (at least 16 tokens)")
        if not 0 <= self.held_out < 1:
            raise ConfigError(f"held_out {self.held_out} must be in [0, 1)")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("epochs must be positive (or give max_steps)")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision {self.precision!r}: expected auto, bf16 or fp32")
        if self.lr_scheduler not in ("cosine", "linear", "constant"):
            raise ConfigError(f"lr_scheduler {self.lr_scheduler!r}: expected cosine, linear or constant")


# --------------------------------------------------------------------------------------------
# The chat template and the assistant-only labels


def ensure_chat_template(tokenizer: Any, choice: str = "auto") -> str:
    """Gives ``tokenizer`` a chat template when it has none (or ``choice`` names one); returns which."""
    if choice == "auto":
        if getattr(tokenizer, "chat_template", None):
            return "own"
        vocab = tokenizer.get_vocab()
        if "<start_of_turn>" in vocab and "<end_of_turn>" in vocab:
            choice = "gemma"
        elif "<|im_start|>" in vocab and "<|im_end|>" in vocab:
            choice = "chatml"
        else:
            raise ConfigError(
                "the model has no chat template and its vocabulary has no turn tokens (<start_of_turn>, <|im_start|>): "
                "give chat_template as a Jinja file"
            )
    if choice in TEMPLATES:
        template, end = TEMPLATES[choice]
        if end not in tokenizer.get_vocab():
            raise ConfigError(f"chat_template {choice}: the model's vocabulary has no {end} token")
        tokenizer.chat_template = template
        return choice
    path = Path(choice).expanduser()
    if not path.is_file():
        raise ConfigError(f"chat_template {choice!r}: expected auto, gemma, chatml or a Jinja file (no such file)")
    tokenizer.chat_template = path.read_text(encoding="utf-8")
    return str(path)


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Token ids that end an assistant turn: end of sequence and the template's end-of-turn tokens."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids |= {vocab[token] for token in END_OF_TURN_TOKENS if token in vocab}
    return ids


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def as_messages(record: Demonstration | PromptCompletion) -> list[dict[str, str]]:
    """The demonstration as chat messages ending with the assistant turn to learn."""
    if isinstance(record, Demonstration):
        turns = list(record.messages)
        while turns and turns[-1].role != "assistant":
            turns.pop()
    else:
        prompt = [Turn("user", record.prompt)] if isinstance(record.prompt, str) else list(record.prompt)
        completion = (
            [Turn("assistant", record.completion)] if isinstance(record.completion, str) else list(record.completion)
        )
        turns = prompt + completion
    return [t.to_json() for t in turns]


def encode_demonstration(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one demonstration: labels are the ids of the last assistant turn, through its
    end-of-turn token, and -100 on everything else (the prompt, earlier turns, what follows the end of turn).

    The prompt is rendered with the generation prompt (what the model sees when it answers), so the
    labels are exactly what the assistant must produce.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise ConfigError("a demonstration must end with an assistant turn")
    prompt = _chat_ids(tokenizer, messages[:-1], generation_prompt=True)
    full = _chat_ids(tokenizer, messages, generation_prompt=False)
    if full[: len(prompt)] != prompt:
        raise ConfigError(
            "the chat template renders a conversation's beginning differently once a reply follows; "
            "its assistant tokens cannot be told apart (give chat_template)"
        )
    labels = [-100] * len(prompt) + full[len(prompt) :]
    ends = end_of_turn_ids(tokenizer)
    last_end = max((i for i in range(len(prompt), len(full)) if full[i] in ends), default=None)
    if last_end is not None:
        labels[last_end + 1 :] = [-100] * (len(full) - last_end - 1)
    return full, labels


@dataclass
class Encoded:
    examples: list[dict[str, list[int]]]
    truncated: int = 0
    skipped_long_prompt: int = 0
    tokens: int = 0
    target_tokens: int = 0


def encode_all(tokenizer: Any, records: Sequence[Demonstration | PromptCompletion], max_length: int) -> Encoded:
    """Every demonstration encoded; cut at ``max_length`` (counted), skipped when the prompt alone fills it."""
    out = Encoded([])
    for record in records:
        ids, labels = encode_demonstration(tokenizer, as_messages(record))
        if len(ids) > max_length:
            if all(label == -100 for label in labels[:max_length]):
                out.skipped_long_prompt += 1
                continue
            ids, labels = ids[:max_length], labels[:max_length]
            out.truncated += 1
        out.examples.append({"input_ids": ids, "labels": labels})
        out.tokens += len(ids)
        out.target_tokens += sum(label != -100 for label in labels)
    return out


# --------------------------------------------------------------------------------------------
# Loading the model


def load_for_training(spec: str, dtype: str = "float32") -> tuple[Any, Any, str]:
    """(model, tokenizer, name) of a model to train, from a shipped name, a GGUF file or a folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rejoinder.llm.models import dequantised_dir, quiet_transformers, resolve_model

    ref = resolve_model(spec)
    directory = dequantised_dir(ref)
    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model {ref.path}: cannot load it for training: {exc}") from None
    return model, tokenizer, ref.name


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class SFTResult:
    model_dir: Path
    report: dict[str, Any]


def _callbacks(
    config: SFTConfig, tokenizer: Any, run: Path, on_log: Callable[[dict[str, Any]], None] | None
) -> list[Any]:
    from transformers import TrainerCallback

    log_path = run / "sft-log.jsonl"
    samples_path = run / "sft-samples.jsonl"

    class Record(TrainerCallback):
        """Writes every logged metric as a JSON line, and the replies to the sample prompts after each epoch."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            entry = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 3), **logs}
            with log_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
            if on_log is not None:
                on_log(entry)

        def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if not state.is_world_process_zero or model is None or not config.sample_prompts:
                return
            replies = sample_replies(model, tokenizer, config.sample_prompts, config.sample_tokens, config.seed)
            entry = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 3), "samples": replies}
            with samples_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            if on_log is not None:
                on_log(entry)

    return [Record()]


def sample_replies(model: Any, tokenizer: Any, prompts: Sequence[str], tokens: int, seed: int) -> list[dict[str, str]]:
    """The model's replies to ``prompts`` (sampled at temperature 0.7, top-p 0.9, seeded)."""
    import torch

    was_training = model.training
    model.eval()
    ends = sorted(end_of_turn_ids(tokenizer))
    out = []
    try:
        for prompt in prompts:
            ids = _chat_ids(tokenizer, [{"role": "user", "content": prompt}], generation_prompt=True)
            torch.manual_seed(seed)
            with torch.no_grad():
                generated = model.generate(
                    input_ids=torch.tensor([ids], device=model.device),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device),
                    max_new_tokens=tokens,
                    do_sample=True,
                    temperature=0.7,
                    top_p=0.9,
                    repetition_penalty=1.1,
                    eos_token_id=ends or None,
                    pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ends[0],
                )
            reply = tokenizer.decode(generated[0][len(ids) :], skip_special_tokens=True).strip()
            out.append({"prompt": prompt, "reply": reply})
    finally:
        if was_training:
            model.train()
    return out


def train_sft(config: SFTConfig, on_log: Callable[[dict[str, Any]], None] | None = None) -> SFTResult:
    """Fine-tune ``config.model`` on the demonstrations; see the module docstring."""
    import datasets
    import torch
    import trl
    from transformers import PrinterCallback

    config.check()
    datasets.disable_progress_bars()
    # TRL reads a property transformers has renamed; the warning says nothing to our users
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    run = Path(config.output_dir)
    final = run / "sft"
    if (final / ".complete").is_file() and same_config(run, "sft.yaml", config):
        report = json.loads((final / "rejoinder-sft.json").read_text(encoding="utf-8"))
        report["reused"] = True
        return SFTResult(final, report)
    checkpoints = run / "checkpoints" / "sft"
    resume = start_run(run, "sft.yaml", config, checkpoints)
    if config.threads:
        torch.set_num_threads(config.threads)

    train_records, eval_records, data_note = read_training_data(
        config.data, ("messages", "prompt_completion"), held_out=config.held_out, seed=config.seed, key=by_user
    )
    refused: list[Record] = []
    train_demos = list(sft_examples(train_records, refused))
    eval_demos = list(sft_examples(eval_records, refused))
    if config.max_examples:
        train_demos = train_demos[: config.max_examples]
    if config.eval_examples:
        eval_demos = eval_demos[: config.eval_examples]
    if not train_demos:
        raise ConfigError(f"data {data_note}: no demonstrations to learn (red-team records are never SFT targets)")

    model, tokenizer, name = load_for_training(config.model, "float32")
    template = ensure_chat_template(tokenizer, config.chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_set = encode_all(tokenizer, train_demos, config.max_length)
    eval_set = encode_all(tokenizer, eval_demos, config.max_length)
    if not train_set.examples:
        raise ConfigError(f"every demonstration's prompt is longer than max_length={config.max_length}")

    peft_config = None
    if config.lora:
        from peft import LoraConfig

        targets: str | list[str] = (
            "all-linear" if config.lora_targets == "all-linear" else [t.strip() for t in config.lora_targets.split(",")]
        )
        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
    has_eval = bool(eval_set.examples)
    args = trl.SFTConfig(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_length=config.max_length,
        train_sampling_strategy="group_by_length",  # batches of similar lengths: little padding to compute on
        eval_strategy="epoch" if has_eval else "no",
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        activation_checkpointing=config.gradient_checkpointing,
        bf16=use_bf16(config.precision),
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,
        dataset_num_proc=None,
    )
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(train_set.examples),
        eval_dataset=datasets.Dataset.from_list(eval_set.examples) if has_eval else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=_callbacks(config, tokenizer, run, on_log),
    )
    trainer.remove_callback(PrinterCallback)  # our own callback logs; transformers' would print every dict
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    evaluations = [e for e in trainer.state.log_history if "eval_loss" in e]
    if has_eval and (not evaluations or evaluations[-1].get("step") != trainer.state.global_step):
        trainer.evaluate()  # a run cut short by max_steps still ends with an evaluation and samples
        evaluations = [e for e in trainer.state.log_history if "eval_loss" in e]
    metrics = evaluations[-1] if evaluations else {}
    report = {
        "model": name,
        "base": config.model,
        "chat_template": template,
        "method": f"LoRA r={config.lora_r}" if config.lora else "full fine-tuning",
        "data": data_note,
        "train_demonstrations": len(train_set.examples),
        "eval_demonstrations": len(eval_set.examples),
        "red_team_refused": len(refused),
        "truncated": train_set.truncated,
        "skipped_long_prompt": train_set.skipped_long_prompt,
        "train_tokens": train_set.tokens,
        "target_tokens": train_set.target_tokens,
        "steps": trainer.state.global_step,
        "resumed_from": resume.name if resume else None,
        "epochs": round(trainer.state.epoch or 0.0, 3),
        "train_loss": result.training_loss,
        "eval_loss": metrics.get("eval_loss"),
        "eval_history": [{"epoch": e.get("epoch"), "eval_loss": e["eval_loss"]} for e in evaluations],
        "eval_perplexity": math.exp(metrics["eval_loss"]) if "eval_loss" in metrics else None,
        "seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / max(trainer.state.epoch or 1.0, 1e-9), 1),
        "threads": torch.get_num_threads(),
        "precision": "bf16" if use_bf16(config.precision) else "fp32",
    }
    if trainer.accelerator.is_main_process:
        save_model(trainer.model, tokenizer, final, report)
    trainer.accelerator.wait_for_everyone()
    return SFTResult(final, report)


def save_model(model: Any, tokenizer: Any, target: Path, report: dict[str, Any]) -> None:
    """The trained model as a plain model folder (LoRA merged), ending turns with its end-of-turn token."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.generation_config.eos_token_id = sorted(end_of_turn_ids(tokenizer))
    if tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "rejoinder-sft.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    save_atomically(target, write)
