"""The arena leaderboard: Bradley–Terry ratings, bootstrap intervals, ranks, the daily cap, pair picking."""

from __future__ import annotations

import inspect
import json
import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from itertools import combinations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rejoinder.arena import (
    BOOTSTRAP_ROUNDS,
    DAILY_CAP,
    counted_votes,
    leaderboard,
    pick_pair,
    rank_by_intervals,
    simulate_votes,
)
from rejoinder.cli import app, arena_leaderboard_command
from rejoinder.store import BattleInfo

DAY = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def vote(a: str, b: str, outcome: str, *, user: str | None = None, at: datetime = DAY, n: int = 0) -> BattleInfo:
    return BattleInfo(f"battle-{n}", user, at, a, b, f"conv-a-{n}", f"conv-b-{n}", outcome, at)


def simulate(strengths: dict[str, float], count: int, seed: int, tie_rate: float = 0.1) -> list[BattleInfo]:
    """Votes among contestants of the given Elo strengths, each by its own user (so none is capped)."""
    return simulate_votes(strengths, count, seed=seed, tie_rate=tie_rate, start=DAY)


STRENGTHS = {"alpha": 1200.0, "beta": 1100.0, "gamma": 1000.0, "delta": 900.0, "epsilon": 800.0}


def test_bradley_terry_recovers_the_order_and_the_gaps_of_known_strengths():
    board = leaderboard(simulate(STRENGTHS, 4000, seed=1, tie_rate=0.0), rounds=50)
    assert [row.contestant for row in board.rows] == list(STRENGTHS)
    assert math.isclose(sum(row.rating for row in board.rows) / len(board.rows), 1000.0, abs_tol=1e-6)
    for row in board.rows:
        assert abs(row.rating - STRENGTHS[row.contestant]) < 40  # the interval is about +-20
        assert row.lower < STRENGTHS[row.contestant] + 40 and row.upper > STRENGTHS[row.contestant] - 40
    assert board.counted == 4000 and board.capped == 0


def test_simulated_votes_follow_the_bradley_terry_odds_and_spread_over_the_given_voters_and_days():
    votes = simulate_votes({"strong": 1200.0, "weak": 1000.0}, 4000, seed=7, tie_rate=0.2, users=10, days=3)
    ties = sum(v.vote == "tie" for v in votes) / len(votes)
    decided = [v for v in votes if v.vote != "tie"]
    strong_wins = sum((v.vote == "a") == (v.contestant_a == "strong") for v in decided) / len(decided)
    assert ties == pytest.approx(0.2, abs=0.03)
    assert strong_wins == pytest.approx(1 / (1 + 10 ** (-200 / 400)), abs=0.03)  # 0.76
    assert {v.user_id for v in votes} == {f"user-{k}" for k in range(10)}
    assert max(v.created_at for v in votes) - min(v.created_at for v in votes) > timedelta(days=2.9)
    assert simulate_votes({"x": 1.0, "y": 2.0}, 50, seed=1) == simulate_votes({"x": 1.0, "y": 2.0}, 50, seed=1)
    with pytest.raises(ValueError, match="at least 2 contestants"):
        simulate_votes({"alone": 1000.0}, 10)
    with pytest.raises(ValueError, match="tie_rate"):
        simulate_votes({"x": 1.0, "y": 2.0}, 10, tie_rate=1.5)


def test_a_contestant_with_few_votes_is_marked_preliminary_in_the_rows_the_table_and_the_json():
    from rejoinder.arena import PRELIMINARY_VOTES

    votes = simulate({"old": 1100.0, "older": 1000.0}, 3 * PRELIMINARY_VOTES, seed=8)
    votes += [vote("newcomer", "old", "a", user="u", n=10_000 + k) for k in range(PRELIMINARY_VOTES - 1)]
    board = leaderboard(votes, rounds=20)
    flags = {row.contestant: row.preliminary for row in board.rows}
    assert flags == {"old": False, "older": False, "newcomer": True}
    assert [row["preliminary"] for row in board.to_json()["rows"] if row["contestant"] == "newcomer"] == [True]
    assert board.to_json()["settings"]["preliminary_votes"] == PRELIMINARY_VOTES
    console = Console(width=200, record=True)
    console.print(board.table())
    printed = console.export_text()
    assert "newcomer *" in printed and "preliminary" in printed


def test_ties_count_half_a_win_each_way_and_both_bad_counts_as_a_tie():
    votes = [vote("left", "right", "tie", n=n, user=f"u{n}") for n in range(10)]
    votes += [vote("left", "right", "bad", n=10 + n, user=f"v{n}") for n in range(10)]
    board = leaderboard(votes, rounds=20)
    left, right = board.rows
    assert math.isclose(left.rating, 1000.0, abs_tol=1e-6) and math.isclose(right.rating, 1000.0, abs_tol=1e-6)
    assert (left.votes, left.wins, left.losses, left.ties) == (20, 0, 0, 20)
    # One win and two ties against the same opponent is 2 of 3 "wins": odds of 2, log10(2) * 400 points apart.
    mixed = [vote("x", "y", "a", n=0, user="u0"), vote("x", "y", "tie", n=1, user="u1"), vote("y", "x", "tie", n=2)]
    x, y = leaderboard(mixed, rounds=0).rows
    assert x.contestant == "x"
    assert math.isclose(x.rating - y.rating, 400 * math.log10(2), abs_tol=0.5)


def test_an_unbeaten_contestant_gets_a_finite_rating_above_the_others():
    votes = [vote("champion", "other", "a", n=n, user=f"u{n}") for n in range(5)]
    votes += [vote("other", "third", "a" if n % 2 else "b", n=5 + n, user=f"v{n}") for n in range(6)]
    board = leaderboard(votes, rounds=50)
    champion = board.rows[0]
    assert champion.contestant == "champion" and champion.losses == 0
    assert all(math.isfinite(value) for row in board.rows for value in (row.rating, row.lower, row.upper))
    assert champion.rating > board.rows[1].rating + 400


def test_intervals_contain_the_rating_and_narrow_with_more_votes():
    few = leaderboard(simulate(STRENGTHS, 400, seed=2), rounds=100, seed=3)
    many = leaderboard(simulate(STRENGTHS, 6400, seed=2), rounds=100, seed=3)
    for board in (few, many):
        assert all(row.lower <= row.rating <= row.upper for row in board.rows)
    few_width, many_width = (sum(r.upper - r.lower for r in b.rows) / len(b.rows) for b in (few, many))
    assert many_width < few_width / 2.5  # sixteen times the votes: about a quarter of the width


def test_the_bootstrap_is_reproducible_with_its_seed():
    votes = simulate(STRENGTHS, 500, seed=4)
    first, again, other = (leaderboard(votes, rounds=30, seed=s) for s in (7, 7, 8))
    assert first.to_json() == again.to_json()
    assert [r.lower for r in first.rows] != [r.lower for r in other.rows]


def test_rank_is_one_plus_the_contestants_whose_lower_bound_is_above_its_upper_bound():
    # a and b overlap, so both are first; c is below both of them: third.
    assert rank_by_intervals([1010, 1000, 800], [1100, 1090, 900]) == [1, 1, 3]
    # Now only a is clearly above c (b's interval reaches down to c's): c is second.
    assert rank_by_intervals([1010, 880, 800], [1100, 1090, 900]) == [1, 1, 2]


def test_leaderboard_ranks_follow_the_rule_on_its_own_intervals():
    board = leaderboard(simulate({"a": 1300.0, "b": 1290.0, "c": 900.0}, 1500, seed=5), rounds=100)
    assert [row.rank for row in board.rows] == [1, 1, 3]
    lower, upper = [r.lower for r in board.rows], [r.upper for r in board.rows]
    assert [r.rank for r in board.rows] == rank_by_intervals(lower, upper)


def test_the_daily_cap_counts_only_the_first_votes_of_each_user_each_utc_day_and_reports_the_rest():
    morning = DAY.replace(hour=8)
    votes = [vote("a", "b", "a", user="ann", at=morning + timedelta(minutes=k), n=k) for k in range(3)]
    votes += [vote("a", "b", "b", user="ann", at=morning + timedelta(hours=1, minutes=k), n=10 + k) for k in range(2)]
    # 23:30 in New York on 1 May is 03:30 UTC on 2 May: a new UTC day for ann.
    new_york = timezone(timedelta(hours=-4))
    votes.append(vote("a", "b", "b", user="ann", at=datetime(2024, 5, 1, 23, 30, tzinfo=new_york), n=20))
    votes += [vote("a", "b", "tie", user=None, at=morning + timedelta(minutes=k), n=30 + k) for k in range(4)]
    votes.append(vote("a", "b", "b", user="bob", at=morning, n=40))
    counted, capped = counted_votes(reversed(votes), daily_cap=3)
    assert capped == 3  # ann's two later votes on 1 May and the fourth anonymous one
    assert sorted(b.id for b in counted) == sorted(
        ["battle-0", "battle-1", "battle-2", "battle-20", "battle-30", "battle-31", "battle-32", "battle-40"]
    )
    board = leaderboard(votes, rounds=10, daily_cap=3)
    a = next(row for row in board.rows if row.contestant == "a")
    assert (board.counted, board.capped, a.wins, a.losses, a.ties) == (8, 3, 3, 2, 3)
    assert board.to_json()["settings"]["daily_cap"] == 3


def test_pick_pair_balances_positions_and_never_pairs_a_contestant_with_itself():
    names = ["eliza", "retrieval", "bank", "travel", "assistant"]
    counts: dict[str, tuple[int, int]] = {}
    pairs: Counter[frozenset[str]] = Counter()
    rng = random.Random(0)
    for _ in range(3000):
        left, right = pick_pair(names, counts, rng)
        assert left != right and {left, right} <= set(names)
        pairs[frozenset((left, right))] += 1
        lc, rc = counts.get(left, (0, 0))
        counts[left] = (lc + 1, rc)
        lc, rc = counts.get(right, (0, 0))
        counts[right] = (lc, rc + 1)
    assert max(abs(left - right) for left, right in counts.values()) <= 3
    assert set(pairs) == {frozenset(p) for p in combinations(names, 2)}
    assert all(240 <= n <= 360 for n in pairs.values())  # 300 each, uniformly


def test_pick_pair_puts_the_one_shown_left_less_often_on_the_left():
    rng = random.Random(1)
    for _ in range(20):
        assert pick_pair(["x", "y"], {"x": (5, 1), "y": (2, 2)}, rng) == ("y", "x")
    assert {pick_pair(["x", "y"], {}, rng) for _ in range(50)} == {("x", "y"), ("y", "x")}


def test_pick_pair_needs_two_distinct_contestants():
    with pytest.raises(ValueError, match="at least 2 distinct contestants"):
        pick_pair(["eliza", "eliza"], {}, random.Random(0))


def test_no_votes_give_an_empty_leaderboard():
    board = leaderboard([vote("a", "b", None)], rounds=5)  # type: ignore[arg-type]
    assert (board.rows, board.counted, board.capped) == ([], 0, 0)


def test_cli_prints_the_leaderboard_and_writes_json(store, db_url, tmp_path):
    def battle(a: str, b: str, user: str) -> str:
        left = store.create_conversation(a, user_id=user)
        right = store.create_conversation(b, user_id=user)
        return store.create_battle(a, b, left, right, user_id=user).id

    for k, (a, b, outcome) in enumerate([("eliza", "retrieval", "a"), ("retrieval", "eliza", "b"),
                                         ("eliza", "bank", "tie"), ("bank", "retrieval", "a"),
                                         ("eliza", "bank", "a")]):  # fmt: skip
        store.vote_battle(battle(a, b, f"visitor-{k % 2}"), outcome)
    battle("eliza", "bank", "visitor-9")  # not voted: not on the leaderboard
    out = tmp_path / "board.json"
    runner = CliRunner(env={"COLUMNS": "160"})
    result = runner.invoke(app, ["arena", "leaderboard", "--db", db_url, "--rounds", "20", "--daily-cap", "2",
                                 "--json", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "eliza" in result.output and "95% CI" in result.output
    assert "left out by the daily cap of 2 votes per user per UTC day: 1" in result.output
    report = json.loads(out.read_text())
    assert (report["counted"], report["capped"]) == (4, 1)
    assert {row["contestant"] for row in report["rows"]} == {"eliza", "retrieval", "bank"}
    assert report["settings"]["rounds"] == 20


def test_cli_defaults_are_the_modules():
    parameters = inspect.signature(arena_leaderboard_command).parameters
    assert (parameters["rounds"].default, parameters["daily_cap"].default) == (BOOTSTRAP_ROUNDS, DAILY_CAP)
