"""Rewards for RL: the reward model of step 2, programmatic rewards, and weighted sums of them.

A reward is written as a term, optionally weighted, and terms are listed (summed):

    model:runs/default/reward     the trained reward model (centred: the SFT model's replies average 0)
    sentiment                     VADER's compound sentiment of the reply, -1..1
    length:40                     -|words - 40| / 40: the reply's length in words near a target
    toxicity                      -1 when the moderation screen blocks the reply, else -(its score)
    json                          1 when the reply is valid JSON, else 0
    0.5*length:40                 any term times a weight

so ``rewards: ["model:runs/x/reward", "0.2*toxicity"]`` in a config is the reward model's score
with a toxicity penalty. Each term maps (prompt turns, reply texts) to one number per reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rejoinder.datasets.rlhf import Turn
from rejoinder.errors import ConfigError

Prompts = Sequence[Sequence[Turn]]
Scorer = Callable[[Prompts, Sequence[str]], list[float]]

TERMS = ("model", "sentiment", "length", "toxicity", "json")


@dataclass
class Term:
    name: str
    weight: float
    argument: str
    scorer: Scorer

    @property
    def label(self) -> str:
        arg = f":{self.argument}" if self.argument else ""
        weight = "" if self.weight == 1.0 else f"{self.weight:g}*"
        return f"{weight}{self.name}{arg}"


class Reward:
    """A weighted sum of reward terms; :meth:`__call__` gives the total and each term's values."""

    def __init__(self, terms: Sequence[Term]) -> None:
        if not terms:
            raise ConfigError("rewards: give at least one term, e.g. model:runs/default/reward or length:40")
        self.terms = list(terms)

    def __call__(self, prompts: Prompts, replies: Sequence[str]) -> tuple[list[float], dict[str, list[float]]]:
        parts = {t.label: t.scorer(prompts, replies) for t in self.terms}
        total = [sum(t.weight * parts[t.label][i] for t in self.terms) for i in range(len(replies))]
        return total, parts

    @property
    def reward_model(self) -> str | None:
        """The reward model folder among the terms (the value model starts from it), if any."""
        return next((t.argument for t in self.terms if t.name == "model"), None)

    def describe(self) -> str:
        return " + ".join(t.label for t in self.terms)


_TERM = re.compile(
    r"^\s*(?:(?P<weight>[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)\s*\*\s*)?(?P<name>[a-z_]+)(?::(?P<arg>.+))?\s*$"
)


def parse_rewards(specs: Sequence[str], *, threads: int = 0) -> Reward:
    """The :class:`Reward` for ``specs`` (see the module docstring); errors name the bad term."""
    terms = []
    for i, spec in enumerate(specs):
        match = _TERM.match(spec)
        if not match or match["name"] not in TERMS:
            raise ConfigError(
                f"rewards[{i}] {spec!r}: expected [weight*]term[:argument] with term one of {', '.join(TERMS)}"
            )
        name, arg = match["name"], (match["arg"] or "").strip()
        weight = float(match["weight"]) if match["weight"] else 1.0
        terms.append(Term(name, weight, arg, _scorer(name, arg, f"rewards[{i}] {spec!r}", threads)))
    return Reward(terms)


def _scorer(name: str, arg: str, where: str, threads: int) -> Scorer:
    if name == "model":
        if not arg:
            raise ConfigError(f"{where}: name the reward model folder, e.g. model:runs/default/reward")
        from rejoinder.align.reward import RewardModel

        model = RewardModel(arg, threads=threads)
        return lambda prompts, replies: model.score(list(prompts), list(replies))
    if name == "length":
        try:
            target = int(arg or "40")
        except ValueError:
            raise ConfigError(f"{where}: the length target is a number of words, e.g. length:40") from None
        if target < 1:
            raise ConfigError(f"{where}: the length target must be at least 1 word")
        return lambda prompts, replies: [length_reward(r, target) for r in replies]
    if name == "sentiment":
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError:
            raise ConfigError(f"{where}: needs vaderSentiment (pip install 'rejoinder[align]')") from None
        analyzer = SentimentIntensityAnalyzer()
        return lambda prompts, replies: [float(analyzer.polarity_scores(r)["compound"]) for r in replies]
    if name == "toxicity":
        from rejoinder.moderation import Moderator

        moderator = Moderator()

        def toxicity(prompts: Prompts, replies: Sequence[str]) -> list[float]:
            return [-1.0 if not v.allowed else -v.score for v in moderator.check_many(list(replies))]

        return toxicity
    if name == "json":
        return lambda prompts, replies: [1.0 if is_json(r) else 0.0 for r in replies]
    raise ConfigError(f"{where}: unknown term")  # pragma: no cover - parse_rewards checks the name


def length_reward(reply: str, target: int) -> float:
    """−|words − target| / target: 0 at the target, −1 for an empty reply."""
    return -abs(len(reply.split()) - target) / target


def is_json(reply: str) -> bool:
    """Whether ``reply`` (or the inside of one ```json fence around it) parses as a JSON value."""
    text = reply.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)
    if fenced:
        text = fenced.group(1)
    if not text:
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
