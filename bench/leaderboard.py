"""The arena leaderboard's cost: a Bradley–Terry fit plus 200 bootstrap rounds, beside FastChat's figure.

    python bench/leaderboard.py [--votes 10000] [--contestants 10] [--rounds 200] [--tie-rate 0.1]
                                [--naive-rounds 200] [--repeats 3] [--seed 0] [--arena-scale]

Simulated votes among contestants of known strengths (evenly spaced Elo ratings, 50 apart) — each
vote a tie with probability ``--tie-rate``, else won by either side with the Bradley–Terry
probability (ties that ignore strength pull the fitted gaps in by about the tie rate) — by 1,000
users over 30 days (so the daily cap leaves none out) are given to ``rejoinder.arena.leaderboard``
as ``BattleInfo`` records (no database: this times the statistics). Timed: the whole call (cap,
point fit, ``--rounds`` bootstrap refits, percentiles, ranks) and the call without bootstrap (the
point fit), best of ``--repeats``, the anchors too (the machine may be busy). ``--arena-scale``
also times it on 1.6M votes among 130 contestants, about the size of FastChat's data.

Anchors. (1) FastChat's published figure: its pull request #3523 (Sep 2024), which brought in the
deduplicated, multinomial bootstrap that ``rejoinder.arena`` also uses, says "the bootstrap Bradley
Terry model takes upwards of 15 minutes to run for 100 samples ... With these changes the BT MLE
bootstrap takes around 10 seconds", on Chatbot Arena's data (about 1.6M battles, 22k distinct
outcomes, per cthorrez/faster-arena-elo's README), fitted with L-BFGS in a process pool over all
cores. It is not the same data as ours, so the ratio says how far from its cost we are, not who is
faster. (2) Measured here, in the same run: the naive bootstrap FastChat had before (the LMSYS
notebook's ``compute_mle_elo``): per round, resample the votes, then one scikit-learn
``LogisticRegression`` without penalty (``C=inf``) or intercept, both on the resampled rows
themselves (a tie as two rows of weight 1/2) and, as ``compute_mle_elo`` did, on the rows of the
pair table (built with numpy here instead of its pandas pivot tables, so a lower bound on its cost).
Writes bench/results/leaderboard.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from common import ROOT, print_table, write_record
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(ROOT / "src"))

from rejoinder.arena import leaderboard, simulate_votes
from rejoinder.store import BattleInfo

FASTCHAT_SECONDS_PER_100 = 10.0
FASTCHAT_SOURCE = (
    "lm-sys/FastChat pull request #3523 'Accelerate Bradley Terry MLE model fitting' (2024-09-13): "
    "'The bootstrap Bradley Terry model takes upwards of 15 minutes to run for 100 samples ... With these "
    "changes the BT MLE bootstrap takes around 10 seconds.' https://github.com/lm-sys/FastChat/pull/3523; "
    "data size (1.6M battles, 22k unique outcomes) from https://github.com/cthorrez/faster-arena-elo README"
)
START = datetime(2024, 1, 1, tzinfo=UTC)


def simulate(votes: int, contestants: int, tie_rate: float, seed: int) -> tuple[list[BattleInfo], dict[str, float]]:
    """Votes among contestants 50 Elo points apart (mean 1000), by 1,000 users over 30 days."""
    names = [f"bot-{k:02d}" for k in range(contestants)]
    strengths = {name: 1000.0 + 50.0 * (k - (contestants - 1) / 2) for k, name in enumerate(names)}
    battles = simulate_votes(strengths, votes, seed=seed, tie_rate=tie_rate, users=1000, start=START, days=30)
    return battles, strengths


def vote_rows(battles: list[BattleInfo], names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each vote as (index of a, index of b, score of a in {0, 0.5, 1})."""
    index = {name: i for i, name in enumerate(names)}
    score = {"a": 1.0, "b": 0.0, "tie": 0.5, "bad": 0.5}
    a = np.array([index[b.contestant_a] for b in battles])
    b = np.array([index[b.contestant_b] for b in battles])
    s = np.array([score[b.vote] for b in battles])
    return a, b, s


def logistic_elo(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """One scikit-learn fit of the Bradley–Terry model, on the Elo scale (mean 1000)."""
    fit = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6, max_iter=1000)  # C=inf: no penalty
    fit.fit(x, y, sample_weight=weight)
    rating = 400.0 * fit.coef_[0]  # x carries log(10), so coefficients are in units of 400 Elo points
    return rating - rating.mean() + 1000.0


def on_rows(a: np.ndarray, b: np.ndarray, s: np.ndarray, n: int) -> np.ndarray:
    """Logistic regression on the vote rows: a win or loss one row, a tie two rows of weight 1/2."""
    rows = len(a)
    x = np.zeros((2 * rows, n))
    x[np.arange(rows), a] = math.log(10)
    x[np.arange(rows), b] = -math.log(10)
    x[rows:] = x[:rows]
    y = np.concatenate([np.ones(rows), np.zeros(rows)])
    weight = np.concatenate([s, 1.0 - s])
    keep = weight > 0
    return logistic_elo(x[keep], y[keep], weight[keep])


def on_pair_table(a: np.ndarray, b: np.ndarray, s: np.ndarray, n: int) -> np.ndarray:
    """Logistic regression on the pair table: for each ordered pair a win row and a loss row, weighted by counts."""
    wins = np.zeros((n, n))
    np.add.at(wins, (a, b), s)
    np.add.at(wins, (b, a), 1.0 - s)
    i, j = np.nonzero(np.triu(wins + wins.T, k=1))
    x = np.zeros((2 * len(i), n))
    x[np.arange(len(i)), i] = math.log(10)
    x[np.arange(len(i)), j] = -math.log(10)
    x[len(i) :] = x[: len(i)]
    y = np.concatenate([np.ones(len(i)), np.zeros(len(i))])
    return logistic_elo(x, y, np.concatenate([wins[i, j], wins[j, i]]))


def naive_bootstrap(fit: Any, a: np.ndarray, b: np.ndarray, s: np.ndarray, n: int, rounds: int) -> dict[str, Any]:
    """The point fit, then ``rounds`` refits on the vote rows resampled with replacement; timed."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    point = fit(a, b, s, n)
    point_s = time.perf_counter() - started
    boot = []
    for _ in range(rounds):
        pick = rng.integers(0, len(a), len(a))
        boot.append(fit(a[pick], b[pick], s[pick], n))
    lower, upper = np.percentile(np.array(boot), [2.5, 97.5], axis=0)
    return {"rounds": rounds, "total_s": time.perf_counter() - started, "point_s": point_s, "point": point,
            "interval_width": float(np.mean(upper - lower))}  # fmt: skip


def ours(battles: list[BattleInfo], rounds: int, repeats: int, seed: int) -> dict[str, Any]:
    """``rejoinder.arena.leaderboard`` with ``rounds`` bootstrap rounds and with none; best of ``repeats``."""
    totals, points = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        board = leaderboard(battles, rounds=rounds, seed=seed)
        totals.append(time.perf_counter() - started)
        started = time.perf_counter()
        leaderboard(battles, rounds=0)
        points.append(time.perf_counter() - started)
    return {"rounds": rounds, "total_s": min(totals), "point_s": min(points), "board": board, "totals_s": totals,
            "interval_width": float(np.mean([r.upper - r.lower for r in board.rows]))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=10_000)
    parser.add_argument("--contestants", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--tie-rate", type=float, default=0.1)
    parser.add_argument("--naive-rounds", type=int, default=200, help="rounds of the scikit-learn anchors (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arena-scale", action="store_true",
                        help="also time ours on 1.6M votes among 130 contestants (about a minute)")  # fmt: skip
    args = parser.parse_args()

    battles, strengths = simulate(args.votes, args.contestants, args.tie_rate, args.seed)
    mine = ours(battles, args.rounds, args.repeats, args.seed)
    board = mine.pop("board")
    sides: dict[str, dict[str, Any]] = {"rejoinder.arena (Newton, batched multinomial bootstrap)": mine}
    agreement: dict[str, float] = {}
    if args.naive_rounds:
        names = sorted(strengths)
        rating = {row.contestant: row.rating for row in board.rows}
        a, b, s = vote_rows(battles, names)
        naive = {"scikit-learn LogisticRegression per round, on the rows": on_rows,
                 "scikit-learn LogisticRegression per round, on the pair table": on_pair_table}  # fmt: skip
        for label, fit in naive.items():
            tries = [naive_bootstrap(fit, a, b, s, len(names), args.naive_rounds) for _ in range(args.repeats)]
            side = min(tries, key=lambda t: t["total_s"])
            side["totals_s"] = [t["total_s"] for t in tries]
            point = side.pop("point")
            agreement[label] = max(abs(point[i] - rating[name]) for i, name in enumerate(names))
            sides[label] = side
    if args.arena_scale:
        big, _ = simulate(1_600_000, 130, args.tie_rate, args.seed)
        side = ours(big, args.rounds, 1, args.seed)
        side["distinct_cells"] = len({(x.contestant_a, x.contestant_b, x.vote) for x in big})
        del side["board"], big
        sides["rejoinder.arena on 1.6M votes among 130 contestants"] = side

    rows = []
    base = next(iter(sides.values()))
    for label, side in sides.items():
        side["seconds_per_100_rounds"] = side["total_s"] * 100 / side["rounds"]
        side["bootstrap_only_s_per_100_rounds"] = (side["total_s"] - side["point_s"]) * 100 / side["rounds"]
        side["ratio_to_fastchat_published"] = side["seconds_per_100_rounds"] / FASTCHAT_SECONDS_PER_100
        same_data = "distinct_cells" not in side
        side["ratio_to_ours"] = side["seconds_per_100_rounds"] / base["seconds_per_100_rounds"] if same_data else None
        rows.append([label, side["rounds"], f"{side['total_s']:.3f}", f"{side['point_s']:.3f}",
                     f"{side['seconds_per_100_rounds']:.3f}", f"{side['ratio_to_fastchat_published']:.4f}",
                     f"{side['ratio_to_ours']:.1f}" if same_data else "", f"{side['interval_width']:.1f}"])  # fmt: skip
    rows.append(["FastChat compute_bootstrap_bt, published (PR #3523), 1.6M battles", 100, "~10", "", "~10", "1", "",
                 ""])  # fmt: skip
    title = (f"{args.votes:,} votes among {args.contestants} contestants, tie rate {args.tie_rate:.0%}: "
             f"{board.counted} counted, {board.capped} left out by the daily cap")  # fmt: skip
    print_table(title, ["fit + bootstrap", "rounds", "total s", "point fit s", "s per 100 rounds",
                        "x FastChat published", "x ours", "mean 95% CI width"], rows)  # fmt: skip
    print(f"\nFastChat's figure: {FASTCHAT_SOURCE}.")
    print("That is Chatbot Arena's data fitted by a process pool over all cores; ours runs in one process.")
    print("s per 100 rounds = total (preprocessing, point fit and bootstrap) x 100 / rounds.")

    table = [[r.rank, r.contestant, f"{strengths[r.contestant]:.0f}", f"{r.rating:.1f}",
              f"{r.lower:.1f}", f"{r.upper:.1f}", r.votes] for r in board.rows]  # fmt: skip
    print_table("The leaderboard (true: the simulated strength)",
                ["rank", "contestant", "true", "rating", "lower", "upper", "votes"], table)  # fmt: skip
    for label, gap in agreement.items():
        print(f"largest rating difference on the full data, ours vs {label}: {gap:.4f} Elo points")

    write_record(
        "leaderboard",
        {
            "args": vars(args),
            "anchor": {"seconds_per_100_rounds": FASTCHAT_SECONDS_PER_100, "source": FASTCHAT_SOURCE},
            "results": sides,
            "agreement_elo": agreement,
            "leaderboard": board.to_json(),
            "true_strengths": strengths,
        },
    )


if __name__ == "__main__":
    main()
