"""The RL loop shared by every algorithm: sample, score, update, log, checkpoint.

Each step:

1. takes the next ``prompts_per_step`` training prompts (a seeded order, cycled);
2. **rolls out** ``samples_per_prompt`` replies to each through the batched engine
   (:mod:`.rollout`), with the policy's current weights;
3. **scores** them (:mod:`.rewards`); a reply that hit ``max_new_tokens`` without ending gets
   ``unfinished_penalty``; for ppo and reinforce the scores are divided by a running standard
   deviation (``normalise_rewards``);
4. recomputes log π_old (the policy that sampled) and log π_ref (the frozen SFT model, or the same
   weights with the LoRA adapter off), and the values V_old (ppo);
5. hands the batch to the algorithm's update (:mod:`.reinforce`, :mod:`.ppo`, :mod:`.rloo`,
   :mod:`.grpo`);
6. logs reward, KL (k1 and k3 per reply), entropy, clip fraction, approximate KL, value loss,
   explained variance, reply length and tokens/s to ``rl-log.csv``, TensorBoard (``tb/``), a
   progress line, and on ``kl_stop`` ends the run;
7. every ``save_steps`` writes a checkpoint (weights, optimiser, β, the running statistics): the
   same command resumes a killed run at the step after the last checkpoint, with the same prompts
   and the same sampling seeds, so it continues as if never stopped.

The final policy is saved as a model folder (``<run>/policy``) the assistant serves.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rejoinder.align.config import use_bf16
from rejoinder.align.rl.common import kl_k1, kl_k3, reply_logprobs
from rejoinder.align.rl.config import RLConfig
from rejoinder.align.rl.grpo import grpo_update
from rejoinder.align.rl.ppo import AdaptiveKL, Learner, RolloutData, ppo_update, token_values
from rejoinder.align.rl.reinforce import Baseline, reinforce_update
from rejoinder.align.rl.rewards import Reward, parse_rewards
from rejoinder.align.rl.rloo import rloo_update
from rejoinder.align.rl.rollout import Batch, make_batch, sample_replies
from rejoinder.align.runs import latest_checkpoint, same_config, save_atomically, start_run
from rejoinder.datasets.rlhf import Turn, prompt_key
from rejoinder.errors import ConfigError

LOG_FIELDS = (
    "step",
    "reward",
    "score",
    "kl",
    "kl_k3",
    "beta",
    "entropy",
    "clip_frac",
    "approx_kl",
    "value_loss",
    "explained_variance",
    "reply_tokens",
    "ended",
    "tokens_per_s",
    "rollout_s",
    "step_s",
    "updates",
    "skipped_updates",
    "rolled_in",
    "loss",
)


class RunningMoments:
    """Welford's running mean and variance of the scores seen so far (for reward normalisation)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: Sequence[float]) -> None:
        for v in values:
            self.count += 1
            delta = v - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (v - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 1.0


@dataclass
class RLResult:
    policy_dir: Path
    report: dict[str, Any]


def resolve_policy(config: RLConfig) -> str:
    """``auto``: this run's SFT model when it is trained, else SmolLM2."""
    if config.model != "auto":
        return config.model
    sft = Path(config.output_dir) / "sft"
    return str(sft) if (sft / ".complete").is_file() else "smollm2"


def resolve_rewards(config: RLConfig) -> list[str]:
    """The reward terms with ``model:auto`` replaced by this run's reward model."""
    return auto_rewards(config.rewards, Path(config.output_dir))


def auto_rewards(specs: Sequence[str], run: Path) -> list[str]:
    """``specs`` with ``model:auto`` replaced by ``run``'s reward model (refused when it is not trained)."""
    out = []
    for spec in specs:
        if spec.strip().endswith("model:auto"):
            folder = run / "reward"
            if not (folder / ".complete").is_file():
                raise ConfigError(
                    f"rewards {spec!r}: {folder} holds no trained reward model; run rejoinder train reward "
                    "first, or name another reward (e.g. length:40 or model:<folder>)"
                )
            spec = spec.strip()[: -len("auto")] + str(folder)
        out.append(spec)
    return out


def read_prompts(config: RLConfig, tokenizer: Any) -> tuple[list[tuple[Turn, ...]], list[tuple[Turn, ...]]]:
    """(training prompts, held-out prompts): each record's prompt turns, distinct, split by prompt."""
    from rejoinder.align.training_data import read_training_data

    formats = ("messages", "prompt_completion", "preference", "ranking")
    train, held, _ = read_training_data(config.data, formats, held_out=0.1, seed=config.seed, key=prompt_key)

    def distinct(records: Sequence[Any]) -> list[tuple[Turn, ...]]:
        seen: dict[str, tuple[Turn, ...]] = {}
        for r in records:
            turns = tuple(r.prompt_turns())
            if not turns or turns[-1].role != "user":
                continue
            if len(chat_ids(tokenizer, turns)) > config.max_prompt_tokens:
                continue
            seen.setdefault(prompt_key(r), turns)
        return list(seen.values())

    train_prompts, held_prompts = distinct(train), distinct(held)
    if config.max_prompts:
        train_prompts = train_prompts[: config.max_prompts]
    if not train_prompts:
        raise ConfigError(
            f"data {', '.join(config.data)}: no prompts of at most {config.max_prompt_tokens} tokens "
            "that end with a user turn"
        )
    return train_prompts, held_prompts[: config.eval_prompts]


def chat_ids(tokenizer: Any, turns: Sequence[Turn]) -> list[int]:
    ids = tokenizer.apply_chat_template([t.to_json() for t in turns], add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


class Models:
    """The policy, its frozen reference, the value model (ppo) and the tokenizer."""

    def __init__(self, config: RLConfig, reward: Reward | None) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        from rejoinder.llm.models import dequantised_dir, quiet_transformers, resolve_model

        quiet_transformers()
        self.spec = resolve_policy(config)
        ref = resolve_model(self.spec)
        self.name = ref.name
        directory = dequantised_dir(ref)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(directory)
            policy = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model {ref.path}: cannot load it for RL: {exc}") from None
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"model {ref.name} has no chat template: start RL from an SFT model (rejoinder train sft)"
            )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        _no_dropout(policy)
        from rejoinder.llm.backends.torch import eos_ids

        self.eos_ids = eos_ids(policy, self.tokenizer)
        self.lora = config.lora
        if config.lora:
            from peft import LoraConfig, get_peft_model

            policy = get_peft_model(
                policy, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear")
            )
            self.reference = None  # the same weights with the adapter off
        else:
            self.reference = copy.deepcopy(policy).eval().requires_grad_(False)
        self.policy = policy
        self.value_model = None
        if config.algo in ("ppo", "ppo++"):
            source = config.value_model
            if source == "auto":
                source = (reward.reward_model if reward else None) or str(
                    directory
                )  # the reward model reads replies already
            try:
                value = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"value_model {source}: cannot load it: {exc}") from None
            value.config.pad_token_id = self.tokenizer.pad_token_id
            _no_dropout(value)
            self.value_model = value
            self.value_source = source

    def load_guide(self, spec: str) -> Any:
        """PPO++'s guide: ``auto`` is the frozen reference (the SFT model), else a model of the same vocabulary."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rejoinder.llm.models import dequantised_dir, resolve_model

        if spec == "auto" and self.reference is not None:
            return self.reference
        ref = resolve_model(self.spec if spec == "auto" else spec)
        directory = dequantised_dir(ref)
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory)
            guide = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"guide_model {ref.path}: cannot load it: {exc}") from None
        if tokenizer.get_vocab() != self.tokenizer.get_vocab():
            raise ConfigError(f"guide_model {ref.name}: its vocabulary differs from the policy's; it cannot roll in")
        return guide.requires_grad_(False)

    @contextlib.contextmanager
    def reference_mode(self) -> Any:
        """The reference model: a frozen copy, or the policy with its LoRA adapter switched off."""
        if self.reference is not None:
            yield self.reference
        else:
            with self.policy.disable_adapter():
                yield self.policy

    def decoder(self, config: RLConfig) -> Any:
        """The model rollouts are decoded with: the policy itself in fp32, or a frozen bf16 copy of it
        (half the memory traffic per decoded token; the training forward runs in bf16 as well)."""
        wanted = config.rollout_precision
        if wanted == "fp32" or (wanted == "auto" and not use_bf16(config.precision)):
            return self.policy
        return copy.deepcopy(self.policy).to(torch.bfloat16).eval().requires_grad_(False)

    @torch.no_grad()
    def refresh_decoder(self, decoder: Any) -> None:
        """Copy the policy's trained weights into its bf16 decoding copy (nothing to do for the policy itself)."""
        if decoder is self.policy:
            return
        copies = dict(decoder.named_parameters())
        for name, param in self.policy.named_parameters():
            if param.requires_grad:  # frozen weights (LoRA's base) never change
                copies[name].copy_(param)

    def trainable(self) -> list[dict[str, Any]]:
        groups = [{"params": [p for p in self.policy.parameters() if p.requires_grad]}]
        if self.value_model is not None:
            groups.append({"params": list(self.value_model.parameters())})
        return groups


def _no_dropout(model: Any) -> None:
    """RL recomputes log-probabilities and compares them across passes: dropout would make them differ."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _autocast(precision: str) -> Callable[[], Any]:
    if use_bf16(precision):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return lambda: torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext


@torch.no_grad()
def logprobs_in_chunks(model: Any, batch: Batch, temperature: float, chunk: int, autocast: Any) -> torch.Tensor:
    out = []
    for rows in torch.arange(len(batch.input_ids)).split(chunk):
        sub = Batch(batch.input_ids[rows], batch.attention_mask[rows], batch.mask[rows], batch.reply_start)
        with autocast():
            lp, _ = reply_logprobs(model, sub.input_ids, sub.attention_mask, sub.reply_start, temperature)
        out.append(lp.float())
    return torch.cat(out) * batch.mask


@torch.no_grad()
def _values_in_chunks(model: Any, batch: Batch, chunk: int, autocast: Any) -> torch.Tensor:
    out = []
    for rows in torch.arange(len(batch.input_ids)).split(chunk):
        sub = Batch(batch.input_ids[rows], batch.attention_mask[rows], batch.mask[rows], batch.reply_start)
        with autocast():
            out.append(token_values(model, sub).float())
    return torch.cat(out) * batch.mask


class RLRun:
    """One ``rejoinder train rl`` run: models, prompts, reward, optimiser and the step loop."""

    def __init__(self, config: RLConfig, reward: Reward | None = None, accelerator: Any = None) -> None:
        config.check()
        self.config = config
        self.accelerator = accelerator if accelerator is not None else make_accelerator()
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.run_dir = Path(config.output_dir)
        self.checkpoints = self.run_dir / "checkpoints" / "rl"
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)  # a new value head and LoRA weights start the same in every run
        self.reward = reward if reward is not None else parse_rewards(resolve_rewards(config), threads=config.threads)
        self.models = Models(config, self.reward)
        self.train_prompts, self.eval_prompts = read_prompts(config, self.models.tokenizer)
        self.autocast = _autocast(config.precision)
        self.optimizer = torch.optim.Adam(self.models.trainable(), lr=config.learning_rate, eps=1e-5)
        self.learner = Learner(
            self.models.policy,
            self.optimizer,
            config,
            self.autocast,
            self.models.value_model,
            torch.Generator().manual_seed(config.seed),
            world=self.world,
        )
        self.kl = AdaptiveKL(config.kl_coef, config.kl_target, config.kl_horizon)
        self.moments = RunningMoments()
        self.baseline = Baseline(config.baseline)
        self.step = 0
        self._previous: Path | None = None
        self.order = list(range(len(self.train_prompts)))
        random.Random(config.seed).shuffle(self.order)
        from rejoinder.llm.backends.torch import PREFIX_CACHE_BYTES, BatchEngine

        threads = config.threads or torch.get_num_threads()
        self.decoder = self.models.decoder(config)
        # The prefix cache lets the samples of one prompt share its prefill; it is emptied after every
        # update (engine.weights_changed), since the keys and values belong to the weights that made them.
        self.engine = BatchEngine(
            self.decoder, self.models.eos_ids, max_batch=16, threads=threads, prefix_cache_bytes=PREFIX_CACHE_BYTES
        )
        self.guide_engine = None
        if config.algo == "ppo++":
            guide = self.models.load_guide(config.guide_model)
            if self.decoder is not self.models.policy:
                guide = guide.to(torch.bfloat16)
            self.guide_engine = BatchEngine(
                guide, self.models.eos_ids, max_batch=16, threads=threads, prefix_cache_bytes=PREFIX_CACHE_BYTES
            )

    # -- one step ----------------------------------------------------------------------------------
    def prompts_of(self, step: int) -> list[tuple[Turn, ...]]:
        """This process's prompts for ``step``: the next ``prompts_per_step`` of the seeded order (each
        process takes its own slice)."""
        n = self.config.prompts_per_step
        start = (step * self.world + self.rank) * n
        return [self.train_prompts[self.order[(start + i) % len(self.order)]] for i in range(n)]

    def rollout(self, prompts: Sequence[tuple[Turn, ...]], seed: int) -> tuple[Any, RolloutData, dict[str, Any]]:
        cfg = self.config
        tok = self.models.tokenizer
        started = time.perf_counter()
        self.models.policy.eval()
        prompt_ids = [chat_ids(tok, p) for p in prompts]
        if self.guide_engine is None:
            rollouts = sample_replies(
                self.engine,
                tok,
                prompt_ids,
                samples_per_prompt=cfg.samples_per_prompt,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                seed=seed,
            )
        else:
            rollouts = self._guided_rollouts(prompt_ids, seed)
        rollout_s = time.perf_counter() - started
        turns = [prompts[i] for i in rollouts.prompt_index]
        raw, parts = self.reward(turns, rollouts.texts)
        scores = torch.tensor(raw, dtype=torch.float32)
        ended = torch.tensor(rollouts.ended)
        scores = scores + (~ended).float() * cfg.unfinished_penalty  # replies cut at max_new_tokens
        batch = make_batch(rollouts, tok.pad_token_id)
        chunk = max(1, len(rollouts) // cfg.minibatches)
        old = None  # GRPO with one update per batch takes π_old from the update's own forward pass
        if not (cfg.algo == "grpo" and cfg.ppo_epochs == 1 and cfg.minibatches == 1):
            old = logprobs_in_chunks(self.models.policy, batch, cfg.temperature, chunk, self.autocast)
        with self.models.reference_mode() as reference:
            ref = logprobs_in_chunks(reference, batch, cfg.temperature, chunk, self.autocast)
        values = None
        if self.models.value_model is not None:
            values = _values_in_chunks(self.models.value_model, batch, chunk, self.autocast)
        normalised = scores
        if cfg.normalise_rewards and cfg.algo in ("ppo", "ppo++", "reinforce"):
            self.moments.update(self._gathered(scores))  # every process keeps the same statistics
            normalised = scores / max(self.moments.std, 1e-6)
        data = RolloutData(batch, normalised, old, ref, torch.tensor(rollouts.prompt_index), values)
        tokens = int(batch.mask.sum())
        info = {
            "rollouts": rollouts,
            "scores": scores,
            "parts": parts,
            "rollout_s": rollout_s,
            "tokens": tokens,
        }
        return rollouts, data, info

    def _guided_rollouts(self, prompt_ids: list[list[int]], seed: int) -> Any:
        """PPO++: the guide rolls in a random prefix for a share of the rollouts, the policy rolls out."""
        from rejoinder.align.rl.rlgf import prefix_lengths, roll_in

        cfg, tok, k = self.config, self.models.tokenizer, self.config.samples_per_prompt
        each = [ids for ids in prompt_ids for _ in range(k)]
        lengths = prefix_lengths(len(each), cfg.guide_mix, cfg.guide_max_prefix, seed)
        prefixes = roll_in(self.guide_engine, each, lengths, cfg.temperature, seed, self.models.eos_ids)
        rollouts = sample_replies(
            self.engine,
            tok,
            [ids + prefix for ids, prefix in zip(each, prefixes, strict=True)],
            samples_per_prompt=1,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            seed=seed,
        )
        rollouts.prompt_index = [i // k for i in range(len(each))]
        for i, prefix in enumerate(prefixes):  # the reward reads the whole reply: the guide's part and the policy's
            if prefix:
                own = rollouts.reply_ids[i][:-1] if rollouts.ended[i] else rollouts.reply_ids[i]
                rollouts.texts[i] = tok.decode(prefix + own, skip_special_tokens=True).strip()
        self.rolled_in = sum(1 for n in lengths if n)
        return rollouts

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        started = time.perf_counter()
        prompts = self.prompts_of(self.step)
        replies = cfg.prompts_per_step * cfg.samples_per_prompt
        seed = cfg.seed * 1_000_003 + (self.step * self.world + self.rank) * replies
        rollouts, data, info = self.rollout(prompts, seed)
        self.models.policy.train()
        beta = self.kl.beta
        if cfg.algo in ("ppo", "ppo++"):
            stats = ppo_update(self.learner, data, beta)
        elif cfg.algo == "reinforce":
            stats = reinforce_update(self.learner, data, beta, self.baseline)
        elif cfg.algo == "rloo":
            stats = rloo_update(self.learner, data, beta)
        else:
            stats = grpo_update(self.learner, data, beta)
        self.weights_changed()
        mask = data.batch.mask
        kl_per_reply = (kl_k1(data.old_logprobs, data.ref_logprobs) * mask).sum(1)
        k3_per_reply = (kl_k3(data.old_logprobs, data.ref_logprobs) * mask).sum(1)
        mean = self.learner.all_mean
        self.kl.update(mean(float(kl_per_reply.mean())), len(rollouts) * self.world)
        step_s = time.perf_counter() - started
        row = {  # means over every process's replies
            "step": self.step + 1,
            "reward": mean(float(info["scores"].mean())),
            "score": mean(float(data.scores.mean())),
            "kl": mean(float(kl_per_reply.mean())),
            "kl_k3": mean(float(k3_per_reply.mean())),
            "beta": beta,
            "reply_tokens": mean(float(mask.sum(1).mean())),
            "ended": mean(float(sum(rollouts.ended) / len(rollouts))),
            "tokens_per_s": mean(info["tokens"] / max(info["rollout_s"], 1e-9)) * self.world,
            "rollout_s": info["rollout_s"],
            "step_s": step_s,
            **{k: mean(v) for k, v in stats.items() if k in LOG_FIELDS},
        }
        if self.guide_engine is not None:
            row["rolled_in"] = float(self.rolled_in)
        for label, values in info["parts"].items():
            row[f"reward/{label}"] = mean(sum(values) / len(values))
        self.step += 1
        return row

    def weights_changed(self) -> None:
        """After an update (or a checkpoint load): the decoding copy takes the new weights, and the
        engine forgets prompts cached under the old ones."""
        self.models.refresh_decoder(self.decoder)
        self.engine.weights_changed()

    def _gathered(self, values: torch.Tensor) -> list[float]:
        if self.world <= 1:
            return values.tolist()
        return self.accelerator.gather(values.contiguous()).tolist()

    # -- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        target = self.checkpoints / f"checkpoint-{self.step}"

        def write(folder: Path) -> None:
            trainable = {n: p for n, p in self.models.policy.named_parameters() if p.requires_grad}
            torch.save({n: p.detach().clone() for n, p in trainable.items()}, folder / "policy.pt")
            if self.models.value_model is not None:
                torch.save(self.models.value_model.state_dict(), folder / "value.pt")
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(self.learner.generator.get_state(), folder / "generator.pt")
            state = {
                "step": self.step,
                "beta": self.kl.beta,
                "moments": [self.moments.count, self.moments.mean, self.moments.m2],
                "baseline": [self.baseline.value, self.baseline.seen],
            }
            (folder / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

        save_atomically(target, write)
        for older in self.checkpoints.glob("checkpoint-*"):  # the newest two are kept
            number = older.name.split("-")[-1]
            if number.isdigit() and int(number) < self.step and older != self._previous:
                shutil.rmtree(older, ignore_errors=True)
        self._previous = target
        return target

    def load_checkpoint(self, folder: Path) -> None:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        weights = torch.load(folder / "policy.pt", weights_only=True)
        params = dict(self.models.policy.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        if self.models.value_model is not None:
            self.models.value_model.load_state_dict(torch.load(folder / "value.pt", weights_only=True))
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.learner.generator.set_state(torch.load(folder / "generator.pt", weights_only=True))
        self.step = int(state["step"])
        self.kl.beta = float(state["beta"])
        self.moments.count, self.moments.mean, self.moments.m2 = state["moments"]
        self.baseline.value, self.baseline.seen = state["baseline"]
        self.weights_changed()

    def close(self) -> None:
        self.engine.close()
        if self.guide_engine is not None:
            self.guide_engine.close()


def _write_log_row(path: Path, row: dict[str, Any], fields: list[str]) -> None:
    new = not path.is_file()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in fields})


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows after ``step`` (a killed run resumed from an earlier checkpoint redoes them)."""
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0].keys()) if rows else []
    kept = [r for r in rows if int(r["step"]) <= step]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)


def read_log(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def train_rl(
    config: RLConfig, on_log: Callable[[dict[str, Any]], None] | None = None, reward: Reward | None = None
) -> RLResult:
    """Run RL; see the module docstring. ``reward`` overrides ``config.rewards`` (tests, benchmarks)."""
    run_dir = Path(config.output_dir)
    final = run_dir / "policy"
    if (final / ".complete").is_file() and same_config(run_dir, "rl.yaml", config):
        report = json.loads((final / "rejoinder-policy.json").read_text(encoding="utf-8"))
        return RLResult(final, {**report, "reused": True})
    if config.algo == "dpo":
        from rejoinder.align.rl.dpo import train_dpo

        config.check()
        policy_dir, report = train_dpo(config, on_log)
        return RLResult(policy_dir, report)
    checkpoints = run_dir / "checkpoints" / "rl"
    accelerator = make_accelerator()
    main = accelerator.is_main_process
    if main:
        start_run(run_dir, "rl.yaml", config, checkpoints)
    accelerator.wait_for_everyone()
    resume = latest_checkpoint(checkpoints)
    rl = RLRun(config, reward, accelerator)
    log_path = run_dir / "rl-log.csv"
    try:
        if resume is not None:
            rl.load_checkpoint(resume)
            if main:
                _truncate_log(log_path, rl.step)
        elif main and log_path.exists():
            log_path.unlink()
        writer = _tensorboard(run_dir / "tb") if main else None
        stopped = None
        started = time.perf_counter()
        fields = list(LOG_FIELDS) + [f"reward/{t.label}" for t in rl.reward.terms]
        while rl.step < config.steps:
            row = rl.train_step()
            if main:
                _write_log_row(log_path, row, fields)
            if writer is not None:
                for key, value in row.items():
                    if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                        writer.add_scalar(key, value, row["step"])
            if on_log and main:
                on_log(row)
            if config.kl_stop and row["kl"] > config.kl_stop:
                stopped = f"KL per reply {row['kl']:.3g} passed kl_stop {config.kl_stop:g} at step {row['step']}"
            if stopped or rl.step % config.save_steps == 0 or rl.step == config.steps:
                if main:
                    rl.save_checkpoint()
                accelerator.wait_for_everyone()
            if stopped:
                break
        if writer is not None:
            writer.close()
        seconds = time.perf_counter() - started
        log = read_log(log_path)
        report = {
            "algo": config.algo,
            "policy": rl.models.spec,
            "reward": rl.reward.describe(),
            "steps": rl.step,
            "resumed_from": resume.name if resume else None,
            "stopped": stopped,
            "seconds": round(seconds, 1),
            "first": log[0] if log else None,
            "last": log[-1] if log else None,
            "train_prompts": len(rl.train_prompts),
        }
        report["processes"] = rl.world
        if main:
            save_policy(rl.models, final, report)
            plot_log(log, run_dir / "rl-curves.png", f"{config.algo} on {rl.models.name}")
        accelerator.wait_for_everyone()
    finally:
        rl.close()
    return RLResult(final, report)


def make_accelerator() -> Any:
    """The process group of ``accelerate launch`` (gloo on CPUs), or a single process."""
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def save_policy(models: Models, target: Path, report: dict[str, Any]) -> None:
    """The policy as a plain model folder (LoRA merged) that ``rejoinder chat --model`` serves."""
    policy = models.policy
    if models.lora:
        policy = copy.deepcopy(policy).merge_and_unload()
    eos = sorted(models.eos_ids)
    policy.generation_config.eos_token_id = eos if len(eos) > 1 else eos[0]
    policy.generation_config.pad_token_id = models.tokenizer.pad_token_id

    def write(folder: Path) -> None:
        policy.save_pretrained(folder)
        models.tokenizer.save_pretrained(folder)
        (folder / "rejoinder-policy.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    save_atomically(target, write)


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is in the align extra; the CSV log is always written
        return None
    return SummaryWriter(str(folder))


def plot_log(log: Sequence[dict[str, float]], path: Path, title: str) -> Path | None:
    """PNG of the run's curves: reward, KL, entropy, reply length, clip fraction, value loss."""
    if not log:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("reward", "reward"),
        ("kl", "KL to reference (k1, per reply)"),
        ("entropy", "entropy per token"),
        ("reply_tokens", "reply tokens"),
        ("clip_frac", "clip fraction"),
        ("value_loss", "value loss"),
    ]
    panels = [(k, t) for k, t in panels if any(k in r for r in log)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8))
    for ax, (key, label) in zip(axes if len(panels) > 1 else [axes], panels, strict=True):
        points = [(r["step"], r[key]) for r in log if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
