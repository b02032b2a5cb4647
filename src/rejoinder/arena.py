"""The arena's leaderboard: Bradley–Terry ratings with bootstrap intervals, as Chatbot Arena computes them.

Each voted battle is one comparison between the contestant shown on the left (``a``) and the one on
the right (``b``). The votes counted are the first :data:`DAILY_CAP` of each user per UTC day;
the rest are left out and reported. The ratings are the maximum-likelihood Bradley–Terry strengths
of the counted votes,

    P(a beats b) = 1 / (1 + 10 ** ((rating_b - rating_a) / 400)),

where a tie, and a "both are bad" vote, is half a win each way (Chatbot Arena calls the latter
"tie (bothbad)" and counts it as a tie too). The fit is Newton's method on the natural
log-strengths of all contestants at once, with backtracking, under a very weak Gaussian prior
(:data:`PRIOR`) that keeps an unbeaten contestant finite; the prior centres the log-strengths, so the
ratings average :data:`INIT_RATING` (1000), as FastChat's ``compute_bt`` ratings do when no baseline
model is anchored (its L-BFGS starts from zero and its gradients sum to zero, so it keeps the mean).

The 95% interval of each rating is the 2.5th to 97.5th percentile of the ratings refitted on
``rounds`` bootstrap resamples of the counted votes. A resample draws the counts of the distinct
(a, b, outcome) cells from a multinomial, which has the same distribution as resampling the votes
themselves with replacement (FastChat's ``compute_bootstrap_bt`` does the same), and all rounds are
fitted together as one batch. A contestant's rank is 1 plus the number of contestants whose lower
bound is above its upper bound, Chatbot Arena's rule: contestants the data cannot tell apart share
a rank.

:func:`pick_pair` draws the next battle's two contestants for the server, balancing how often each
is shown on the left.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    import numpy as np

    from rejoinder.store import BattleInfo

DAILY_CAP = 100
"""Votes counted per user per UTC day (Chatbot Arena's ``daily_vote_per_user``); the rest are left out.

Votes without a user id count as one anonymous user's."""

BOOTSTRAP_ROUNDS = 200
"""Bootstrap resamples behind each 95% interval."""

SCALE = 400.0
"""Rating points per factor of ``BASE`` in the odds of winning (the Elo scale)."""

BASE = 10.0
"""Base of the Elo scale: ``SCALE`` points more means ``BASE`` times the odds of winning."""

INIT_RATING = 1000.0
"""The mean rating of the contestants on the leaderboard."""

PRIOR = 1e-3
"""Precision of the Gaussian prior on natural log-strengths: a standard deviation of about 5,500 rating
points, negligible once a contestant has both wins and losses, but finite for one that never lost."""

TOLERANCE = 1e-9
"""The fit stops when no Newton step moves a log-strength by more than this."""

MAX_ITERATIONS = 100
"""Newton iterations at most (a few dozen at the very most are needed: it converges quadratically)."""

PRELIMINARY_VOTES = 50
"""A contestant with fewer counted votes than this is marked preliminary: an interval from resamples of
so few votes says little (with one vote every resample is that vote, and the interval has no width)."""

VOTE_SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5, "bad": 0.5}
"""What each vote is worth to the left contestant ``a`` (the right one gets the rest)."""


@dataclass(frozen=True)
class LeaderboardRow:
    """One contestant on the leaderboard: its rating, the 95% interval, its rank and its record."""

    contestant: str
    rating: float
    lower: float
    upper: float
    rank: int
    votes: int
    """Battles counted, ties and "both bad" included."""
    wins: int
    losses: int
    ties: int
    """Ties and "both are bad" votes."""
    preliminary: bool = False
    """Fewer than :data:`PRELIMINARY_VOTES` votes: the rating and its interval may move a lot."""


@dataclass(frozen=True)
class Leaderboard:
    """The ratings of all contestants, best first, with the votes counted and the settings used."""

    rows: list[LeaderboardRow]
    counted: int
    """Votes that count (within the daily cap)."""
    capped: int
    """Votes left out by the daily cap."""
    rounds: int
    daily_cap: int
    seed: int

    def settings(self) -> dict[str, Any]:
        """Everything that determines the ratings besides the votes."""
        return {
            "rounds": self.rounds,
            "daily_cap": self.daily_cap,
            "seed": self.seed,
            "scale": SCALE,
            "base": BASE,
            "init_rating": INIT_RATING,
            "prior": PRIOR,
            "interval": [2.5, 97.5],
            "preliminary_votes": PRELIMINARY_VOTES,
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the rows, the counts and the settings."""
        return {
            "rows": [asdict(row) for row in self.rows],
            "counted": self.counted,
            "capped": self.capped,
            "settings": self.settings(),
        }

    def table(self) -> Table:
        """The leaderboard as a rich table (rank, contestant, rating, interval, record); a preliminary
        contestant's name ends with an asterisk."""
        note = f"; * preliminary: fewer than {PRELIMINARY_VOTES} votes" if any(r.preliminary for r in self.rows) else ""
        table = Table(
            "rank", "contestant", "rating", "95% CI", "votes", "wins", "losses", "ties",
            box=None, header_style="bold",
            caption=f"{self.counted} votes counted, {self.rounds} bootstrap rounds (seed {self.seed})" + note,
        )  # fmt: skip
        for column in table.columns[2:]:
            column.justify = "right"
        for row in self.rows:
            interval = f"+{row.upper - row.rating:.0f}/-{row.rating - row.lower:.0f}"
            name = f"{row.contestant} *" if row.preliminary else row.contestant
            table.add_row(str(row.rank), name, f"{row.rating:.0f}", interval,
                          str(row.votes), str(row.wins), str(row.losses), str(row.ties))  # fmt: skip
        return table


def counted_votes(battles: Iterable[BattleInfo], daily_cap: int = DAILY_CAP) -> tuple[list[BattleInfo], int]:
    """The voted battles that count, in the order they were voted, and how many the daily cap left out.

    Only the first ``daily_cap`` votes of each user (``None`` is one anonymous user) in each UTC day
    of ``voted_at`` count. Battles without a vote are skipped and not counted as left out.
    """
    if daily_cap < 1:
        raise ValueError(f"daily_cap {daily_cap}: expected at least 1")
    voted = sorted(((b.voted_at or b.created_at, b.id, b) for b in battles if b.vote is not None), key=itemgetter(0, 1))
    seen: Counter[tuple[str | None, date]] = Counter()
    counted: list[BattleInfo] = []
    for when, _id, battle in voted:
        key = (battle.user_id, when.astimezone(UTC).date())
        seen[key] += 1
        if seen[key] <= daily_cap:
            counted.append(battle)
    return counted, len(voted) - len(counted)


def leaderboard(
    battles: Iterable[BattleInfo], *, rounds: int = BOOTSTRAP_ROUNDS, daily_cap: int = DAILY_CAP, seed: int = 0
) -> Leaderboard:
    """The leaderboard of the voted ``battles`` (``store.battles(voted=True)``).

    ``rounds`` bootstrap resamples give the 95% intervals (0: no bootstrap, each interval is its
    point); ``seed`` makes them reproducible; ``daily_cap`` is the votes counted per user per UTC day.
    """
    import numpy as np

    if rounds < 0:
        raise ValueError(f"rounds {rounds}: expected 0 or more")
    counted, capped = counted_votes(battles, daily_cap)
    names = sorted({b.contestant_a for b in counted} | {b.contestant_b for b in counted})
    if not counted:
        return Leaderboard([], 0, capped, rounds, daily_cap, seed)
    bad = next((b for b in counted if b.vote not in VOTE_SCORES), None)
    if bad is not None:
        raise ValueError(f"battle {bad.id}: vote {bad.vote!r}, expected one of {', '.join(VOTE_SCORES)}")
    # Each vote as a cell (a, b, outcome), coded as one integer: outcome 2 = a won, 1 = tie or both bad, 0 = b won.
    n = len(names)
    index = {name: i for i, name in enumerate(names)}
    outcome = {vote: round(2 * score) for vote, score in VOTE_SCORES.items()}
    code = np.fromiter(
        ((index[b.contestant_a] * n + index[b.contestant_b]) * 3 + outcome[str(b.vote)] for b in counted),
        dtype=np.int64,
        count=len(counted),
    )
    codes, counts = np.unique(code, return_counts=True)
    cells = np.stack([codes // 3 // n, codes // 3 % n, codes % 3], axis=1)
    ratings = _to_rating(_fit_log_strengths(_wins(cells, counts[None, :], n)))[0]
    if rounds:
        resampled = np.random.default_rng(seed).multinomial(len(counted), counts / counts.sum(), size=rounds)
        boot = _to_rating(_fit_log_strengths(_wins(cells, resampled, n)))
        lower, upper = np.percentile(boot, [2.5, 97.5], axis=0)
    else:
        lower, upper = ratings, ratings
    ranks = rank_by_intervals(lower.tolist(), upper.tolist())
    records = _records(cells, counts, n)
    rows = []
    for i, name in enumerate(names):
        votes, wins, losses, ties = records[i]
        rows.append(LeaderboardRow(name, float(ratings[i]), float(lower[i]), float(upper[i]), ranks[i],
                                   votes, wins, losses, ties, preliminary=votes < PRELIMINARY_VOTES))  # fmt: skip
    rows.sort(key=lambda row: (-row.rating, row.contestant))
    return Leaderboard(rows, len(counted), capped, rounds, daily_cap, seed)


def rank_by_intervals(lower: Sequence[float], upper: Sequence[float]) -> list[int]:
    """Chatbot Arena's rank: 1 + the number of contestants whose lower bound is above this one's upper bound."""
    return [1 + sum(other > top for other in lower) for top in upper]


def pick_pair(
    contestants: Sequence[str], left_counts: dict[str, tuple[int, int]], rng: random.Random
) -> tuple[str, str]:
    """The next battle's (left, right): two distinct contestants drawn uniformly at random.

    ``left_counts`` maps a contestant to how often it was shown on the left and on the right
    (``store.left_counts()``; missing: never shown). Of the two drawn, the one shown on the left less
    often, counted as left minus right, goes left; when they are even, a coin decides.
    """
    unique = list(dict.fromkeys(contestants))
    if len(unique) < 2:
        raise ValueError(f"an arena battle needs at least 2 distinct contestants, got {len(unique)}: {unique}")
    first, second = rng.sample(unique, 2)

    def balance(name: str) -> int:
        left, right = left_counts.get(name, (0, 0))
        return left - right

    if balance(first) > balance(second) or (balance(first) == balance(second) and rng.random() < 0.5):
        first, second = second, first
    return first, second


def simulate_votes(
    strengths: dict[str, float],
    count: int,
    *,
    seed: int = 0,
    tie_rate: float = 0.1,
    users: int | None = None,
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    days: float = 0.0,
) -> list[BattleInfo]:
    """``count`` voted battles among contestants of known ratings, as the Bradley–Terry model draws them.

    Each battle pairs two distinct contestants at random; its vote is a tie with probability
    ``tie_rate``, else won by ``a`` with the model's probability. Voters are ``users`` ids drawn at
    random (``None``: each battle its own voter, so the daily cap leaves none out); the votes are
    spread at random over ``days`` from ``start`` (0: one second apart). For studying the leaderboard
    (how many votes a gap needs, what ties do to it) and for testing it against a known truth.
    """
    from datetime import timedelta

    from rejoinder.store import BattleInfo

    if len(strengths) < 2:
        raise ValueError(f"simulated battles need at least 2 contestants, got {len(strengths)}")
    if not 0.0 <= tie_rate <= 1.0:
        raise ValueError(f"tie_rate must be between 0 and 1, got {tie_rate}")
    rng = random.Random(seed)
    names = list(strengths)
    battles = []
    for n in range(count):
        a, b = rng.sample(names, 2)
        p_a = 1.0 / (1.0 + BASE ** ((strengths[b] - strengths[a]) / SCALE))
        u = rng.random()
        vote = "tie" if u < tie_rate else ("a" if u < tie_rate + (1.0 - tie_rate) * p_a else "b")
        at = start + timedelta(seconds=rng.uniform(0, days * 86400) if days else n)
        user = f"user-{n}" if users is None else f"user-{rng.randrange(users)}"
        battles.append(BattleInfo(f"battle-{n}", user, at, a, b, f"conv-a-{n}", f"conv-b-{n}", vote, at))
    return battles


def _records(cells: np.ndarray, counts: np.ndarray, n: int) -> list[tuple[int, int, int, int]]:
    """Each contestant's (votes, wins, losses, ties), from the counts of the (a, b, outcome) cells."""
    import numpy as np

    a, b, outcome = cells[:, 0], cells[:, 1], cells[:, 2]

    def total(who: np.ndarray, where: np.ndarray) -> np.ndarray:
        return np.bincount(who[where], weights=counts[where], minlength=n).astype(int)

    everywhere = np.ones(len(cells), dtype=bool)
    votes = total(a, everywhere) + total(b, everywhere)
    wins = total(a, outcome == 2) + total(b, outcome == 0)
    losses = total(a, outcome == 0) + total(b, outcome == 2)
    ties = total(a, outcome == 1) + total(b, outcome == 1)
    return [(int(v), int(w), int(lo), int(t)) for v, w, lo, t in zip(votes, wins, losses, ties, strict=True)]


def _wins(cells: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    """Wins matrices, one per row of ``counts``: ``[r, i, j]`` is how often i beat j, ties counting half."""
    import numpy as np

    a, b, outcome = cells[:, 0], cells[:, 1], cells[:, 2] / 2.0
    wins = np.zeros((n * n, counts.shape[0]))
    np.add.at(wins, a * n + b, (counts * outcome).T)
    np.add.at(wins, b * n + a, (counts * (1.0 - outcome)).T)
    return wins.T.reshape(-1, n, n)


def _fit_log_strengths(wins: np.ndarray) -> np.ndarray:
    """Maximum a-posteriori natural log-strengths, ``[r, i]``, of each wins matrix ``wins[r]`` (all at once).

    Minimises ``-sum_ij W_ij log sigmoid(t_i - t_j) + PRIOR / 2 * sum_i t_i**2`` by Newton's method with
    a backtracking (Armijo) line search; each round stops moving once its step is below ``TOLERANCE``.
    """
    import numpy as np

    rounds, n, _ = wins.shape
    theta = np.zeros((rounds, n))
    current = _loss(wins, theta)
    active = np.arange(rounds)
    diagonal = np.arange(n)
    for _ in range(MAX_ITERATIONS):
        w, t = wins[active], theta[active]
        games = w + w.transpose(0, 2, 1)
        p = 1.0 / (1.0 + np.exp(t[:, None, :] - t[:, :, None]))  # p[r, i, j] = P(i beats j)
        gradient = w.sum(axis=2) - np.sum(games * p, axis=2) - PRIOR * t  # of the log-posterior
        curvature = games * p * (1.0 - p)
        hessian = -curvature  # of the negative log-posterior
        hessian[:, diagonal, diagonal] = curvature.sum(axis=2) + PRIOR
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        decrease = np.sum(gradient * step, axis=1)
        length = np.ones(len(active))
        trial_loss = _loss(w, t + step)
        for _halving in range(40):
            short = trial_loss > current[active] - 1e-4 * length * decrease
            if not short.any():
                break
            length[short] /= 2
            trial_loss[short] = _loss(w[short], t[short] + length[short, None] * step[short])
        moved = length[:, None] * step
        theta[active] = t + moved
        current[active] = trial_loss
        active = active[np.abs(moved).max(axis=1) >= TOLERANCE]
        if not len(active):
            break
    return theta


def _loss(wins: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The negative log-posterior of each round's log-strengths."""
    import numpy as np

    diff = theta[:, :, None] - theta[:, None, :]
    return np.sum(wins * np.logaddexp(0.0, -diff), axis=(1, 2)) + 0.5 * PRIOR * np.sum(theta * theta, axis=1)


def _to_rating(theta: np.ndarray) -> np.ndarray:
    """Natural log-strengths to the Elo scale."""
    return INIT_RATING + SCALE * theta / math.log(BASE)
