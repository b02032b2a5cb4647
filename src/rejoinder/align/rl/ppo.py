"""PPO with a KL penalty to the SFT model, as InstructGPT trains its policy (step 3).

REINFORCE (:mod:`.reinforce`) pushes up log π(y|x) in proportion to the reward, using each sample
once. PPO (Schulman et al. 2017) adds, in the order they appear below:

1. **The KL penalty in the reward** (InstructGPT, Ziegler et al. 2019): every reply token earns
   ``-β · (log π(y_t) − log π_ref(y_t))``, and the last token also earns the reward model's score,
   so the policy is paid for reward and charged for drifting from the SFT model - the reward
   model is only trustworthy near the replies it was trained on. β is fixed, or adapted so that
   the measured KL follows a target (:class:`AdaptiveKL`).
2. **A value model and GAE** (a baseline per token): V(s_t) predicts the return from token t; the
   advantage is the λ-weighted sum of TD errors ``δ_t = r_t + γV(s_{t+1}) − V(s_t)``
   (:func:`gae`). The value model starts from the reward model (it already reads replies).
3. **Advantage whitening** over the batch, and **reward normalisation** (scores divided by a
   running standard deviation), so one learning rate fits any reward's scale.
4. **Sample reuse with the clipped objective**: each rollout batch is used for ``ppo_epochs``
   passes of minibatches; the ratio ρ = π_new/π_old is clipped to [1−ε, 1+ε] so that no update
   moves the policy far from the one that sampled (:func:`policy_loss`); **value clipping** does
   the same for the value model (:func:`value_loss`).
5. **Adam** with gradient-norm clipping.
6. **Guards**: a minibatch whose loss is NaN/inf, or whose mean ratio passes ``max_ratio``, is
   skipped (counted, never applied); a step's epochs stop early when the approximate KL between
   the old and new policy passes ``target_approx_kl``; the run stops when the KL to the reference
   passes ``kl_stop``.

The loop that samples, scores and checkpoints is :mod:`.trainer`; this file is the update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rejoinder.align.rl.common import explained_variance, finite, masked_mean, reply_logprobs, whiten
from rejoinder.align.rl.rollout import Batch


# -- 1. the KL-penalised per-token reward ---------------------------------------------------------
def token_rewards(
    scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """r_t = −β·(log π − log π_ref) at every reply token, plus the score at each reply's last token."""
    rewards = -kl_coef * (logprobs - ref_logprobs) * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


class AdaptiveKL:
    """Ziegler et al.'s proportional controller: β grows when the KL per reply is above the target."""

    def __init__(self, beta: float, target: float, horizon: int) -> None:
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl: float, replies: int) -> None:
        if self.target <= 0:
            return  # fixed β
        error = max(-0.2, min(0.2, kl / self.target - 1))
        self.beta *= 1 + error * replies / self.horizon


# -- 2. GAE -----------------------------------------------------------------------------------------
def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalised advantage estimation over each reply's tokens.

    ``A_t = Σ_k (γλ)^k δ_{t+k}`` with ``δ_t = r_t + γ·V_{t+1} − V_t``; the value after a reply's
    last token is 0 (the episode ends there); returns are ``A_t + V_t``, the value model's target.
    """
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


# -- 4. the clipped objectives ---------------------------------------------------------------------
def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate ``−E[min(ρA, clip(ρ, 1−ε, 1+ε)A)]`` with its diagnostics."""
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clip_frac": float(masked_mean((clipped > unclipped).float(), mask)),
            "approx_kl": float(masked_mean((ratio - 1) - log_ratio, mask)),  # k3 of π_old ‖ π_new
            "ratio": float(masked_mean(ratio, mask)),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """½·E[max((V − R)², (clip(V, V_old ± ε) − R)²)]: the value model cannot jump either."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    loss = 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)
    with torch.no_grad():
        frac = float(masked_mean(((clipped - returns) ** 2 > (values - returns) ** 2).float(), mask))
    return loss, {"value_clip_frac": frac}


def token_values(value_model: Any, batch: Batch) -> torch.Tensor:
    """V(s_t) for each reply token: the value head on the hidden state that predicts token t."""
    backbone = getattr(value_model, value_model.base_model_prefix)
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    hidden = backbone(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=positions
    ).last_hidden_state
    head = value_model.score if hasattr(value_model, "score") else value_model.classifier
    values = head(hidden[:, batch.reply_start - 1 : -1]).squeeze(-1).float()
    return values


@dataclass
class RolloutData:
    """A scored rollout batch, as every algorithm's update receives it."""

    batch: Batch
    scores: torch.Tensor  # [B] the reward of each reply (normalised where configured)
    old_logprobs: torch.Tensor | None  # [B, R] log π_old(y_t), recomputed by the policy that sampled
    ref_logprobs: torch.Tensor  # [B, R] log π_ref(y_t)
    prompt_index: torch.Tensor  # [B] which prompt each reply answers (group baselines)
    values: torch.Tensor | None = None  # [B, R] V_old(s_t) (ppo)


@dataclass
class Learner:
    """What an update changes: the policy (and value model) with their optimiser, and the settings.

    With several processes (``accelerate launch``), each process rolls out and scores its own
    prompts; the gradients are averaged across processes before every Adam step, and every
    decision that skips or stops an update is taken together, so the weights stay identical.
    """

    policy: Any
    optimizer: torch.optim.Optimizer
    config: Any
    autocast: Any
    value_model: Any = None
    generator: torch.Generator | None = None
    world: int = 1

    def all_mean(self, value: float) -> float:
        """The mean of ``value`` over the processes."""
        if self.world <= 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return float(tensor[0]) / self.world

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set in any process (a skipped update is skipped everywhere)."""
        return self.all_mean(1.0 if flag else 0.0) > 0.0

    def apply_gradients(self) -> float | None:
        """Average the gradients over the processes, clip their norm, take the Adam step; returns the
        norm, or None (and nothing applied) when it is NaN or infinite."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.world > 1:
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
            torch.distributed.all_reduce(flat)
            flat /= self.world
            offset = 0
            for p in params:
                size = p.numel()
                p.grad = flat[offset : offset + size].view_as(p).clone()
                offset += size
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if not finite(grad_norm):  # the same norm in every process: the averaged gradients are the same
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        return float(grad_norm)


def clipped_update(
    learner: Learner,
    data: RolloutData,
    advantages: torch.Tensor,
    returns: torch.Tensor | None = None,
    kl_in_loss: float = 0.0,
) -> dict[str, float]:
    """``ppo_epochs`` passes over the batch in ``minibatches``, each an Adam step on the clipped
    objective (+ the clipped value loss when ``returns`` is given, + β·k3 KL to the reference when
    ``kl_in_loss`` is set, as GRPO does). Shared by PPO, RLOO and GRPO; returns mean diagnostics."""
    cfg = learner.config
    n = len(data.scores)
    totals: dict[str, float] = {}
    counted = skipped = 0
    stopped_early = False
    for _epoch in range(cfg.ppo_epochs):
        order = torch.randperm(n, generator=learner.generator)
        for rows in order.chunk(cfg.minibatches):
            sub = data.batch.select(rows)
            width = sub.mask.shape[1]
            adv = advantages[rows, :width]
            with learner.autocast():
                logprobs, entropy = reply_logprobs(
                    learner.policy, sub.input_ids, sub.attention_mask, sub.reply_start, cfg.temperature, True
                )
                if data.old_logprobs is None:
                    # one update per batch (grpo, 1 epoch, 1 minibatch): π_old is π_θ itself, so its
                    # log-probabilities are this forward's, detached - the ratio is 1, its gradient ∇log π
                    data.old_logprobs = torch.zeros(data.batch.mask.shape)
                    data.old_logprobs[rows, :width] = logprobs.detach().float() * sub.mask
                old = data.old_logprobs[rows, :width]
                loss, stats = policy_loss(logprobs, old, adv, sub.mask, cfg.clip_range)
                if kl_in_loss:
                    ref = data.ref_logprobs[rows, :width]
                    log_ratio = ref - logprobs
                    kl = masked_mean(log_ratio.exp() - 1 - log_ratio, sub.mask)
                    loss = loss + kl_in_loss * kl
                if returns is not None and learner.value_model is not None:
                    new_values = token_values(learner.value_model, sub)
                    v_loss, v_stats = value_loss(
                        new_values, data.values[rows, :width], returns[rows, :width], sub.mask, cfg.cliprange_value
                    )
                    loss = loss + cfg.vf_coef * v_loss
                    stats |= v_stats | {"value_loss": float(v_loss.detach())}
            # guard: a NaN/inf loss or a ratio that blew up is never applied
            learner.optimizer.zero_grad(set_to_none=True)
            if learner.any(not finite(loss) or bool(cfg.max_ratio and stats["ratio"] > cfg.max_ratio)):
                skipped += 1
                continue
            loss.backward()
            grad_norm = learner.apply_gradients()  # averaged over processes, clipped, Adam
            if grad_norm is None:
                skipped += 1
                continue
            stats |= {
                "loss": float(loss.detach()),
                "entropy": float(masked_mean(entropy.detach(), sub.mask)),
                "grad_norm": grad_norm,
            }
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            counted += 1
        # guard: approximate-KL early stop - the policy has moved far enough from the one that sampled
        if cfg.target_approx_kl and counted and learner.all_mean(totals["approx_kl"] / counted) > cfg.target_approx_kl:
            stopped_early = True
            break
    out = {key: value / max(counted, 1) for key, value in totals.items()}
    out |= {"updates": float(counted), "skipped_updates": float(skipped), "early_stop": float(stopped_early)}
    return out


def ppo_update(learner: Learner, data: RolloutData, kl_coef: float) -> dict[str, float]:
    """One PPO step on a scored rollout batch (see the module docstring for each numbered detail)."""
    cfg = learner.config
    mask = data.batch.mask
    # 1. the per-token reward: −β·KL at every token, the score at the last
    rewards = token_rewards(data.scores, data.old_logprobs, data.ref_logprobs, mask, kl_coef)
    # 2. GAE over the rollout's values
    advantages, returns = gae(rewards, data.values, mask, cfg.gamma, cfg.lam)
    # 3. advantage whitening
    if cfg.whiten_advantages:
        advantages = whiten(advantages, mask)
    # 4-6. epochs of minibatches on the clipped objectives, Adam, the guards
    stats = clipped_update(learner, data, advantages, returns)
    stats["explained_variance"] = explained_variance(data.values, returns, mask)
    stats["mean_return"] = float(masked_mean(returns, mask))
    return stats
