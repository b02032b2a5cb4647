"""GRPO: Group Relative Policy Optimisation (Shao et al. 2024, DeepSeekMath), PPO without a value model.

Sample k replies to each prompt and normalise each reply's score within its group:

    A_i = (score_i − mean_group(score)) / (std_group(score) + ε)

The advantage goes to every token of the reply. Unlike PPO and RLOO, the KL to the reference is not
in the reward: it is a term of the loss, ``β · k3(π, π_ref)`` per token (the estimator that is never
negative), added to the clipped objective (:func:`~rejoinder.align.rl.ppo.clipped_update`). A group
whose replies all score the same teaches nothing (all advantages 0).
"""

from __future__ import annotations

import torch

from rejoinder.align.rl.ppo import Learner, RolloutData, clipped_update


def group_normalised(scores: torch.Tensor, groups: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(score − group mean) / (group std + eps) for each reply."""
    advantages = torch.zeros_like(scores)
    for g in groups.unique():
        rows = groups == g
        group = scores[rows]
        std = group.std() if len(group) > 1 else torch.tensor(0.0)
        advantages[rows] = (group - group.mean()) / (std + eps)
    return advantages


def grpo_update(learner: Learner, data: RolloutData, kl_coef: float) -> dict[str, float]:
    mask = data.batch.mask
    advantages = group_normalised(data.scores, data.prompt_index)
    per_token = advantages[:, None] * mask
    return clipped_update(learner, data, per_token, kl_in_loss=kl_coef)
