"""Better than PPO? RLGF's PPO++ (Chang et al. 2023, "Learning to Generate Better Than Your LLM").

PPO explores only from the states its own policy reaches: a reply that starts badly rarely
recovers, and good continuations of good beginnings are seldom seen. RLGF gives PPO a **guide
policy** - any other model, often a stronger one - and PPO++ changes only where rollouts start:

- **roll-in**: for a fraction ``guide_mix`` of the rollouts, the guide writes the first ``h`` tokens
  of the reply, ``h`` drawn uniformly from 0..``guide_max_prefix``;
- **roll-out**: the policy continues from there to the end, and the whole reply is scored.

The guide's tokens become part of the state (the prompt, for the update): the policy is trained,
and charged the KL penalty, only on the tokens it wrote. The other rollouts are ordinary PPO
rollouts, and the update is PPO's (:func:`~rejoinder.align.rl.ppo.ppo_update`). Mixing the two
restart distributions is the paper's PPO++; the gain comes from the policy learning to continue
well from states the guide reaches, which it would rarely reach by itself.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rejoinder.dialogue import Cancel
from rejoinder.llm.generation import GenerationParams


def prefix_lengths(n: int, mix: float, max_prefix: int, seed: int) -> list[int]:
    """For each of ``n`` rollouts, the guide's roll-in length: 0 (a plain rollout) with probability 1 − mix,
    else uniform in 1..max_prefix."""
    rng = random.Random(seed)
    return [rng.randint(1, max_prefix) if rng.random() < mix and max_prefix > 0 else 0 for _ in range(n)]


def roll_in(
    engine: Any, prompts: Sequence[Sequence[int]], lengths: Sequence[int], temperature: float, seed: int, eos: set[int]
) -> list[list[int]]:
    """The guide's first ``lengths[i]`` reply tokens for each prompt (an ending token is not kept:
    the policy decides where the reply ends)."""

    def one(i: int) -> list[int]:
        if lengths[i] == 0:
            return []
        params = GenerationParams(
            max_new_tokens=lengths[i], temperature=temperature, top_p=1.0, repetition_penalty=1.0, seed=seed + i
        )
        stream = engine.submit(list(prompts[i]), params, Cancel())
        return [token for token, _ in stream if token not in eos]

    with ThreadPoolExecutor(max_workers=max(1, min(len(prompts), engine.max_batch))) as pool:
        return list(pool.map(one, range(len(prompts))))
