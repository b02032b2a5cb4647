"""Rollouts: the policy answers a batch of prompts through Rejoinder's batched decoding engine.

The same :class:`~rejoinder.llm.backends.torch.BatchEngine` that serves the assistant decodes the
policy's replies - every reply of the batch in one forward pass per token, with an in-place
key/value cache - so an RL step spends its generation time in the engine that is measured and
tuned for serving, not in a second generation loop. Two details matter for RL:

- sampling is plain ``softmax(logits / T)``: no top-p, top-k or repetition penalty, so the
  distribution the tokens were drawn from is exactly the one the policy's log-probabilities are
  recomputed from (:func:`~rejoinder.align.rl.common.reply_logprobs`);
- the end-of-sequence token that ended a reply is part of the reply (the policy must learn to
  stop), and is kept apart from padding by the reply mask; a reply that reached
  ``max_new_tokens`` without ending is marked ``ended=False`` (it can be penalised).

The engine's prefix cache is on, so the samples of one prompt share one prefill, and it is
emptied after every update (``BatchEngine.weights_changed``): a cached prompt's keys and values
belong to the weights that computed them. Where training runs in bf16, the engine decodes from a
bf16 copy of the policy refreshed after every update (``rollout_precision``), which halves the
memory read per decoded token; the log-probabilities that enter the loss are always recomputed by
the policy being trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from rejoinder.dialogue import Cancel
from rejoinder.llm.generation import GenerationParams


@dataclass
class Rollouts:
    """One batch of sampled replies: sample ``i`` answers prompt ``prompt_index[i]``."""

    prompt_ids: list[list[int]]
    reply_ids: list[list[int]]
    ended: list[bool]
    prompt_index: list[int]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.reply_ids)


@dataclass
class Batch:
    """Rollouts as tensors: ``input_ids``/``attention_mask`` ``[B, P+R]`` (prompts left-padded to
    ``P``, replies right-padded to ``R``) and ``mask`` ``[B, R]``, 1 on each reply's real tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask: torch.Tensor
    reply_start: int

    def select(self, rows: torch.Tensor | list[int]) -> Batch:
        """The rows ``rows``, trimmed to the longest reply among them (less padding to compute)."""
        mask = self.mask[rows]
        longest = int(mask.sum(1).max()) if len(mask) else 0
        end = self.reply_start + max(longest, 1)
        return Batch(
            self.input_ids[rows, :end], self.attention_mask[rows, :end], mask[:, : max(longest, 1)], self.reply_start
        )


def make_batch(rollouts: Rollouts, pad_id: int) -> Batch:
    """Pad the rollouts into one :class:`Batch`."""
    width_p = max(len(p) for p in rollouts.prompt_ids)
    width_r = max(max((len(r) for r in rollouts.reply_ids), default=1), 1)
    rows, attention, masks = [], [], []
    for prompt, reply in zip(rollouts.prompt_ids, rollouts.reply_ids, strict=True):
        left = width_p - len(prompt)
        right = width_r - len(reply)
        rows.append([pad_id] * left + prompt + reply + [pad_id] * right)
        attention.append([0] * left + [1] * (len(prompt) + len(reply)) + [0] * right)
        masks.append([1] * len(reply) + [0] * right)
    return Batch(torch.tensor(rows), torch.tensor(attention), torch.tensor(masks, dtype=torch.float32), width_p)


def sample_replies(
    engine: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    samples_per_prompt: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> Rollouts:
    """``samples_per_prompt`` replies to each prompt (token ids), decoded together by ``engine``.

    Sample ``j`` of prompt ``i`` draws with seed ``seed + i * samples_per_prompt + j``, so a step
    repeated from a checkpoint samples the same replies.
    """
    jobs = [(i, j) for i in range(len(prompts)) for j in range(samples_per_prompt)]

    def one(job: tuple[int, int]) -> tuple[list[int], bool]:
        i, j = job
        params = GenerationParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=1.0,
            top_k=0,
            repetition_penalty=1.0,
            seed=seed + i * samples_per_prompt + j,
        )
        stream = engine.submit(list(prompts[i]), params, Cancel(), keep_eos=True)
        tokens: list[int] = []
        while True:
            try:
                token, _ = next(stream)
            except StopIteration as end:
                return tokens, end.value == "stop"
            tokens.append(token)

    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), engine.max_batch))) as pool:
        results = list(pool.map(one, jobs))
    replies = [r for r, _ in results]
    ended = [e for _, e in results]
    texts = [
        tokenizer.decode(r[:-1] if e and r else r, skip_special_tokens=True).strip()
        for r, e in zip(replies, ended, strict=True)
    ]
    return Rollouts(
        prompt_ids=[list(prompts[i]) for i, _ in jobs],
        reply_ids=replies,
        ended=ended,
        prompt_index=[i for i, _ in jobs],
        texts=texts,
    )
