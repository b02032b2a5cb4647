"""``rejoinder eval policy``: a trained policy beside its reference (SFT) model on held-out prompts.

Both models answer the same held-out prompts with the same sampling seeds (decoded by the batched
engine). Reported: the mean reward of each, the KL of the policy to the reference on the policy's
own replies (k1 and k3 per reply, at temperature 1 where k1 is unbiased), the policy's win rate over
the reference by the reward (ties count half), reply length and distinct-n, and the replies side
by side - a table and a JSON record.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rejoinder.align.rl.common import kl_k1, kl_k3
from rejoinder.align.rl.config import EvalConfig
from rejoinder.align.rl.rewards import Reward, parse_rewards
from rejoinder.align.rl.rollout import make_batch, sample_replies
from rejoinder.datasets.rlhf import Turn
from rejoinder.errors import ConfigError


def distinct_n(replies: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the replies' words (1: no n-gram repeats)."""
    grams = [tuple(words[i : i + n]) for r in replies for words in [r.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _resolve(config: EvalConfig) -> tuple[str, str, list[str]]:
    policy = config.policy if config.policy != "auto" else str(config.run / "policy")
    if not (Path(policy) / ".complete").is_file() and config.policy == "auto":
        raise ConfigError(f"{policy}: no trained policy here; run rejoinder train rl first")
    reference = config.reference
    if reference == "auto":
        info_path = Path(policy) / "rejoinder-policy.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        reference = info.get("policy") or str(config.run / "sft")
    from rejoinder.align.rl.trainer import auto_rewards

    return policy, reference, auto_rewards(config.rewards, Path(config.run))


def _load(spec: str) -> tuple[Any, Any, set[int]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rejoinder.llm.models import dequantised_dir, quiet_transformers, resolve_model

    quiet_transformers()
    ref = resolve_model(spec)
    directory = dequantised_dir(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model {ref.path}: cannot load it: {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    from rejoinder.llm.backends.torch import eos_ids

    return model, tokenizer, eos_ids(model, tokenizer)


def evaluate_policy(config: EvalConfig, reward: Reward | None = None) -> dict[str, Any]:
    """The comparison record (see the module docstring)."""
    from rejoinder.align.rl.config import RLConfig
    from rejoinder.align.rl.trainer import chat_ids, logprobs_in_chunks, read_prompts
    from rejoinder.llm.backends.torch import BatchEngine

    config.check()
    if config.threads:
        torch.set_num_threads(config.threads)
    policy_spec, reference_spec, reward_specs = _resolve(config)
    reward = reward if reward is not None else parse_rewards(reward_specs, threads=config.threads)
    policy, tokenizer, eos = _load(policy_spec)
    reference, ref_tokenizer, ref_eos = _load(reference_spec)
    if ref_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(f"{policy_spec} and {reference_spec} have different vocabularies: the KL is undefined")
    split = RLConfig(
        data=config.data, seed=config.seed, eval_prompts=config.prompts, max_prompt_tokens=config.max_prompt_tokens
    )
    _, held = read_prompts(split, tokenizer)
    if not held:
        raise ConfigError(f"data {', '.join(config.data)}: no held-out prompts")
    prompt_ids = [chat_ids(tokenizer, p) for p in held]
    threads = config.threads or torch.get_num_threads()
    sides: dict[str, Any] = {}
    for name, model, stops in (("policy", policy, eos), ("reference", reference, ref_eos)):
        engine = BatchEngine(model, stops, max_batch=16, threads=threads, prefix_cache_bytes=0)
        try:
            rollouts = sample_replies(
                engine,
                tokenizer,
                prompt_ids,
                samples_per_prompt=1,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                seed=config.seed,
            )
        finally:
            engine.close()
        scores, parts = reward(held, rollouts.texts)
        sides[name] = {"rollouts": rollouts, "scores": scores, "parts": parts}
    batch = make_batch(sides["policy"]["rollouts"], tokenizer.pad_token_id)
    logp = logprobs_in_chunks(policy, batch, config.temperature, 8, contextlib.nullcontext)
    ref_logp = logprobs_in_chunks(reference, batch, config.temperature, 8, contextlib.nullcontext)
    k1 = (kl_k1(logp, ref_logp) * batch.mask).sum(1)
    k3 = (kl_k3(logp, ref_logp) * batch.mask).sum(1)
    wins = [
        1.0 if a > b else 0.5 if a == b else 0.0
        for a, b in zip(sides["policy"]["scores"], sides["reference"]["scores"], strict=True)
    ]

    def summary(side: dict[str, Any]) -> dict[str, Any]:
        r = side["rollouts"]
        return {
            "mean_reward": sum(side["scores"]) / len(side["scores"]),
            "reward_terms": {k: sum(v) / len(v) for k, v in side["parts"].items()},
            "reply_tokens": sum(len(x) for x in r.reply_ids) / len(r),
            "reply_words": sum(len(t.split()) for t in r.texts) / len(r),
            "ended": sum(r.ended) / len(r),
            "distinct_1": distinct_n(r.texts, 1),
            "distinct_2": distinct_n(r.texts, 2),
        }

    record = {
        "policy": policy_spec,
        "reference": reference_spec,
        "reward": reward.describe(),
        "prompts": len(held),
        "temperature": config.temperature,
        "max_new_tokens": config.max_new_tokens,
        "policy_side": summary(sides["policy"]),
        "reference_side": summary(sides["reference"]),
        "kl_k1": float(k1.mean()),
        "kl_k3": float(k3.mean()),
        "win_rate": sum(wins) / len(wins),
        "side_by_side": [
            {
                "prompt": _last_user(p),
                "policy": a,
                "reference": b,
                "policy_reward": ra,
                "reference_reward": rb,
            }
            for p, a, b, ra, rb in zip(
                held,
                sides["policy"]["rollouts"].texts,
                sides["reference"]["rollouts"].texts,
                sides["policy"]["scores"],
                sides["reference"]["scores"],
                strict=True,
            )
        ],
    }
    out = config.output or config.run / "eval-policy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    record["written_to"] = str(out)
    return record


def _last_user(turns: Sequence[Turn]) -> str:
    return next((t.content for t in reversed(turns) if t.role == "user"), "")
