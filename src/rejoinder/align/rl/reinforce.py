"""REINFORCE, as the lecture derives it.

We want ∇_θ E_{y~π_θ(·|x)}[R(x, y)]. The log-derivative trick, ∇π = π·∇log π, turns the gradient of
an expectation into an expectation we can sample:

    ∇_θ E[R] = Σ_y R(x, y) ∇π_θ(y|x) = E_{y~π}[R(x, y) ∇ log π_θ(y|x)] ≈ 1/N Σ_i R(x_i, y_i) ∇ log π_θ(y_i|x_i)

and log π(y|x) = Σ_t log π(y_t | x, y_<t), one term per sampled token. Subtracting a baseline b
that does not depend on y leaves the expectation unchanged (E[∇ log π] = 0) and lowers the
variance: the loss minimised is ``−1/N Σ_i (R_i − b) · Σ_t log π(y_i,t)``. The KL term enters the
reward, as in InstructGPT: ``R_i = score_i − β · Σ_t (log π − log π_ref)``. One gradient step per
batch: each sample is used once (PPO's clipping is what makes reuse safe).
"""

from __future__ import annotations

import torch

from rejoinder.align.rl.common import finite, masked_mean, reply_logprobs
from rejoinder.align.rl.ppo import Learner, RolloutData


class Baseline:
    """b in the estimator: the batch's mean reward, an exponential moving average, or none."""

    def __init__(self, kind: str, decay: float = 0.9) -> None:
        self.kind, self.decay, self.value = kind, decay, 0.0
        self.seen = False

    def __call__(self, mean: float) -> float:
        """b for a batch whose mean return is ``mean`` (over every process)."""
        if self.kind == "none":
            return 0.0
        if self.kind == "mean":
            return mean
        value = self.value if self.seen else mean  # moving: the average of past batches
        self.value = self.decay * value + (1 - self.decay) * mean
        self.seen = True
        return value


def sequence_returns(data: RolloutData, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(R_i = score_i − β·KL_i, KL_i = Σ_t log π − log π_ref) of each reply."""
    kl = ((data.old_logprobs - data.ref_logprobs) * data.batch.mask).sum(1)
    return data.scores - kl_coef * kl, kl


def reinforce_loss(logprobs: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """−1/N Σ_i A_i · Σ_t log π(y_i,t): its gradient is the REINFORCE estimate (A_i = R_i − b)."""
    return -(advantages * (logprobs * mask).sum(1)).mean()


def reinforce_update(learner: Learner, data: RolloutData, kl_coef: float, baseline: Baseline) -> dict[str, float]:
    """One REINFORCE step: the whole batch's gradient (accumulated over minibatches), one Adam step."""
    cfg = learner.config
    returns, _kl = sequence_returns(data, kl_coef)
    b = baseline(learner.all_mean(float(returns.mean())))
    advantages = returns - b
    n = len(returns)
    learner.optimizer.zero_grad(set_to_none=True)
    total, entropy_sum = 0.0, 0.0
    for rows in torch.arange(n).chunk(cfg.minibatches):
        sub = data.batch.select(rows)
        with learner.autocast():
            logprobs, entropy = reply_logprobs(
                learner.policy, sub.input_ids, sub.attention_mask, sub.reply_start, cfg.temperature, True
            )
            # each minibatch's share of the batch mean, so the accumulated gradient is the estimator's
            loss = reinforce_loss(logprobs, sub.mask, advantages[rows]) * len(rows) / n
        if learner.any(not finite(loss)):
            learner.optimizer.zero_grad(set_to_none=True)
            return {"skipped_updates": 1.0, "updates": 0.0, "baseline": b}
        loss.backward()
        total += float(loss.detach())
        entropy_sum += float(masked_mean(entropy.detach(), sub.mask)) * len(rows) / n
    grad_norm = learner.apply_gradients()  # averaged over processes, clipped, Adam
    if grad_norm is None:
        return {"skipped_updates": 1.0, "updates": 0.0, "baseline": b}
    return {
        "loss": total,
        "entropy": entropy_sum,
        "grad_norm": grad_norm,
        "baseline": b,
        "updates": 1.0,
        "skipped_updates": 0.0,
    }
