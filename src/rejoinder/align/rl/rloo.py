"""RLOO: REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024), PPO without a value model.

Sample k replies to each prompt. Each reply's baseline is the mean return of its k−1 siblings -
an unbiased baseline (it does not depend on the reply it is used for) that costs no value model:

    A_i = R_i − 1/(k−1) Σ_{j≠i} R_j,   R_i = score_i − β · Σ_t (log π − log π_ref)

The sequence-level advantage is given to every token of the reply and optimised with PPO's
clipped objective over epochs of minibatches (:func:`~rejoinder.align.rl.ppo.clipped_update`).
"""

from __future__ import annotations

import torch

from rejoinder.align.rl.common import whiten
from rejoinder.align.rl.ppo import Learner, RolloutData, clipped_update
from rejoinder.align.rl.reinforce import sequence_returns


def leave_one_out(returns: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """R_i minus the mean of the other returns of its group (the replies to the same prompt)."""
    advantages = torch.empty_like(returns)
    for g in groups.unique():
        rows = groups == g
        k = int(rows.sum())
        total = returns[rows].sum()
        advantages[rows] = returns[rows] - (total - returns[rows]) / max(k - 1, 1)
    return advantages


def rloo_update(learner: Learner, data: RolloutData, kl_coef: float) -> dict[str, float]:
    cfg = learner.config
    mask = data.batch.mask
    returns, _kl = sequence_returns(data, kl_coef)  # the KL penalty inside the sequence's return
    advantages = leave_one_out(returns, data.prompt_index)
    per_token = advantages[:, None] * mask  # one advantage for every token of the reply
    if cfg.whiten_advantages:
        per_token = whiten(per_token, mask)
    return clipped_update(learner, data, per_token)
