"""What every RL algorithm here shares: token log-probabilities, the KL estimators, masked statistics.

A rollout batch is a ``[B, T]`` grid of prompt + reply tokens, left-padded prompts and right-padded
replies; ``mask`` marks the reply's real tokens (the end-of-sequence token included when the reply
ended; padding never). Every per-token quantity below is ``[B, R]`` over the reply positions only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rejoinder.llm.backends.torch import cache_argument, cache_of


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
    share_prompts: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(y_t | x, y_<t) of each reply token, recomputed by ``model`` at the rollout ``temperature``.

    The sampler drew the reply from softmax(logits / T); the ratio π_new/π_old and the KL to the
    reference are only meaningful if they are computed from that same distribution, so the logits
    are divided by T here too. ``reply_start`` is the column where replies begin (prompts are
    left-padded to it). Returns ``[B, R]`` log-probabilities and, when asked, the entropy of each
    position's distribution.

    Rows that answer the same prompt (the k samples of GRPO and RLOO) share its forward pass: see
    :func:`reply_logits`. ``share_prompts=False`` computes every row in full.
    """
    logits = reply_logits(model, input_ids, attention_mask, reply_start, share_prompts)
    logits = logits.float() / temperature
    targets = input_ids[:, reply_start:]
    logp_all = F.log_softmax(logits, dim=-1)
    logprobs = torch.gather(logp_all, 2, targets.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logprobs, entropy


def reply_logits(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, reply_start: int, share_prompts: bool = True
) -> torch.Tensor:
    """The ``[B, R, V]`` logits that predicted each reply token (of the prompt's last position, then
    of the reply's own positions but the last); only these are computed, not ``[B, T, V]``.

    Prompt sharing: when several rows carry the same prompt, each distinct prompt goes through the
    model once, its key/value cache is copied to the rows that share it, and only the replies are run
    on top. A prompt of P tokens answered k times then costs P, not k·P, token positions, in the
    forward pass and in the backward pass, whose gradients reach the one prompt computation through
    the copies (summed over its rows, exactly as k separate passes would give them). The result is
    the full pass's up to floating-point rounding; it is used where the model keeps a cache in its
    forward pass (not under gradient checkpointing, not past a sliding attention window).
    """
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions start at 0
    groups = _prompt_groups(model, input_ids, attention_mask, reply_start) if share_prompts else None
    if groups is None:
        keep = input_ids.shape[1] - reply_start + 1
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, logits_to_keep=keep
        ).logits
        return logits[:, -keep:-1]
    first, inverse = groups  # a row of each distinct prompt; each row's distinct prompt
    prompt = model(
        input_ids=input_ids[first, :reply_start],
        attention_mask=attention_mask[first, :reply_start],
        position_ids=positions[first, :reply_start],
        use_cache=True,
        logits_to_keep=1,
    )
    predicted_first = prompt.logits[inverse, -1:]  # the prompt's last position predicts each reply's first token
    if input_ids.shape[1] - reply_start == 1:
        return predicted_first
    cache = cache_of(prompt)
    cache.reorder_cache(inverse)  # one copy of the prompt's keys and values per row
    rest = model(
        input_ids=input_ids[:, reply_start:-1],  # the last reply token predicts nothing we need
        attention_mask=attention_mask[:, :-1],
        position_ids=positions[:, reply_start:-1],
        use_cache=True,
        **{cache_argument(model): cache},
    ).logits
    return torch.cat([predicted_first, rest], dim=1)


def _prompt_groups(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, reply_start: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(one row index per distinct prompt, the distinct prompt of each row), or None where sharing
    saves nothing (every prompt distinct) or cannot be used with this model here."""
    if torch.is_grad_enabled() and _checkpointed(model):
        return None  # checkpointed layers keep no cache
    window = getattr(getattr(model, "config", None), "sliding_window", None)
    if isinstance(window, int) and input_ids.shape[1] > window:
        return None  # a sliding-window cache drops the prompt's early positions
    prompts = torch.cat([input_ids[:, :reply_start], attention_mask[:, :reply_start]], dim=1)
    unique, inverse = torch.unique(prompts, dim=0, return_inverse=True)
    if len(unique) == len(prompts):
        return None
    first = torch.full((len(unique),), len(prompts), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(prompts)), reduce="amin"
    )
    return first, inverse


def _checkpointed(model: Any) -> bool:
    """Whether ``model`` recomputes its activations in the backward pass (transformers renamed the flag)."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        for candidate in (model, getattr(model, "get_base_model", lambda: None)()):
            if candidate is not None and name in dir(type(candidate)):
                return bool(getattr(candidate, name))
    return False


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
