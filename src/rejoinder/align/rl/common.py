"""What every RL algorithm here shares: token log-probabilities, the KL estimators, masked statistics.

A rollout batch is a ``[B, T]`` grid of prompt + reply tokens, left-padded prompts and right-padded
replies; ``mask`` marks the reply's real tokens (the end-of-sequence token included when the reply
ended; padding never). Every per-token quantity below is ``[B, R]`` over the reply positions only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (over everything, or along ``dim``)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of ``values`` where ``mask`` is 1."""
    mean = masked_mean(values, mask)
    count = mask.sum().clamp(min=2.0)
    return ((values - mean) ** 2 * mask).sum() / (count - 1)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise to unit variance (and zero mean unless ``shift_mean`` is False) over the masked entries."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def reply_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    reply_start: int,
    temperature: float,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(y_t | x, y_<t) of each reply token, recomputed by ``model`` at the rollout ``temperature``.

    The sampler drew the reply from softmax(logits / T); the ratio π_new/π_old and the KL to the
    reference are only meaningful if they are computed from that same distribution, so the logits
    are divided by T here too. ``reply_start`` is the column where replies begin (prompts are
    left-padded to it). Returns ``[B, R]`` log-probabilities and, when asked, the entropy of each
    position's distribution.
    """
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions start at 0
    keep = input_ids.shape[1] - reply_start + 1  # only the reply's logits: [B, R+1, V], not [B, T, V]
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, logits_to_keep=keep
    ).logits
    logits = logits[:, -keep:-1].float() / temperature  # the logits that predicted each reply token
    targets = input_ids[:, reply_start:]
    logp_all = F.log_softmax(logits, dim=-1)
    logprobs = torch.gather(logp_all, 2, targets.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logprobs, entropy


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The k1 estimator of KL(π || π_ref) per token: log π(y) − log π_ref(y) (unbiased, can be negative)."""
    return logprobs - ref_logprobs


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The k3 estimator (Schulman 2020): (r − 1) − log r with r = π_ref/π; unbiased, never negative, lower variance."""
    log_ratio = ref_logprobs - logprobs
    return log_ratio.exp() - 1 - log_ratio


def explained_variance(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """1 − Var(target − predicted) / Var(target): 1 is a perfect value model, 0 no better than a constant."""
    var = masked_var(target, mask)
    if float(var) == 0.0:
        return float("nan")
    return float(1 - masked_var(target - predicted, mask) / var)


def finite(*values: torch.Tensor) -> bool:
    """Whether every value is free of NaN and infinity (a step with either is skipped, never applied)."""
    return all(bool(torch.isfinite(v).all()) for v in values)
