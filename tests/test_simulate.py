"""The agenda-based user simulator: goals hold what the bot should store, runs repeat for a seed,
and success, wrong and incomplete submissions are told apart (hashing embedder, no NER: fast)."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
from typer.testing import CliRunner

from rejoinder.bots.frames import values
from rejoinder.bots.frames.bot import EXAMPLES, FrameBot, _start_demo_backend, build_nlu
from rejoinder.bots.frames.demo_backend import free_port
from rejoinder.bots.frames.domain import load_domain
from rejoinder.bots.frames.schema import Slot
from rejoinder.bots.frames.simulate import (
    ENUMS,
    DialogueResult,
    Goal,
    SimConfig,
    _judge,
    city_pool,
    future_dates,
    money_pool,
    noisy,
    past_dates,
    sample_goal,
    simulate,
)
from rejoinder.cli import app
from rejoinder.errors import ConfigError

DOMAINS = {"en": "bank_en", "ru": "bank_ru", "travel": "travel"}


@pytest.fixture(scope="module")
def port():
    return free_port()


@pytest.fixture(scope="module")
def bots(tmp_path_factory, port):
    """The example bots, built once per module (NLU cached in a temporary home, not the user's)."""
    built: dict[str, FrameBot] = {}
    home = tmp_path_factory.mktemp("home")

    def get(name: str, cls: type[FrameBot] = FrameBot) -> FrameBot:
        key = f"{name}:{cls.__name__}"
        if key not in built:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("REJOINDER_HOME", str(home))
                domain = _start_demo_backend(load_domain(EXAMPLES / DOMAINS[name] / "domain.yaml"), port)
                built[key] = cls(domain, build_nlu(domain, embedder="hashing", ner=False))
        return built[key]

    return get


# -- goals hold the normalised values the bot should store ------------------------------------------


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_date_phrases_resolve_as_values_extract_reads_them(lang):
    past = Slot(name="when", type="date", prefer="past")
    for offset in range(0, 371, 9):  # every weekday, month ends, the turn of the year
        today = date(2026, 1, 1) + timedelta(offset)
        now = datetime(today.year, today.month, today.day, 12, 0)
        for phrase, iso in past_dates(today, lang):
            assert [v.value for v in values.extract(phrase, "date", lang=lang, now=now, slot=past)] == [iso], (
                today,
                phrase,
            )
        for phrase, iso in future_dates(today, lang):
            assert [v.value for v in values.extract(phrase, "date", lang=lang, now=now)] == [iso], (today, phrase)
        assert all(iso <= today.isoformat() for _, iso in past_dates(today, lang))
        assert all(iso > today.isoformat() for _, iso in future_dates(today, lang))


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_enum_money_and_city_surfaces_read_back_as_their_values(lang):
    domain = load_domain(EXAMPLES / DOMAINS[lang] / "domain.yaml")
    for (frame_name, slot_name), table in ENUMS[lang].items():
        frames = [f for f in domain.frames if frame_name in ("*", f.name) and slot_name in {s.name for s in f.slots}]
        assert frames, (frame_name, slot_name)
        for frame in frames:
            slot = frame.slot(slot_name)
            for value, (answers, mentions) in table.items():
                for text in answers + mentions:
                    found = {v.value for v in values.extract(text, "enum", lang=lang, slot=slot)}
                    assert found == {value}, (frame.name, text)
    for text, money in money_pool(lang):
        assert [v.value for v in values.extract(text, "money", lang=lang)] == [money]
    pool = city_pool(lang)
    assert len(pool) > 100
    for canonical, _name, forms in pool[::10]:
        for form in forms.values():
            assert [v.value for v in values.extract(form.lower(), "city", lang=lang)] == [canonical]


@pytest.mark.parametrize("name", ["en", "ru", "travel"])
def test_sampled_goals_hold_what_the_tracker_stores(name):
    domain = load_domain(EXAMPLES / DOMAINS[name] / "domain.yaml")
    rng = random.Random(3)
    today = date(2026, 11, 26)
    now = datetime(2026, 11, 26, 12, 0)
    for _ in range(20):
        for frame in domain.frames:
            goal = sample_goal(domain.language, frame, today, rng, SimConfig(optional=1.0))
            assert set(goal.said) == {s.name for s in frame.slots}
            defaults = {s.name: s.default for s in frame.slots if s.default is not None}
            assert goal.values == {**defaults, **{k: v.value for k, v in goal.said.items()}}
            for slot_name, said in goal.said.items():
                slot = frame.slot(slot_name)
                if slot.type == "text":
                    assert values.extract(said.answer, "text")[0].value == said.value
                    continue
                for text in {said.answer, said.mention}:
                    found = values.extract(text, slot.type, lang=domain.language, now=now, slot=slot)
                    assert found and found[0].value == said.value, (frame.name, slot_name, text)


def test_noise_spares_protected_words_and_bare_answers():
    config = SimConfig(typos=1.0, lowercase=1.0, fillers=0.0, no_punctuation=1.0)
    rng = random.Random(0)
    text = noisy([("please check the transfer ", False), ("AB123456", True)], "en", rng, config)
    assert text.endswith(" AB123456") and text.split()[:4] != ["please", "check", "the", "transfer"]
    assert noisy([("Fresh Basket", True)], "en", rng, config, bare=True) == "Fresh Basket"


# -- accounting -----------------------------------------------------------------------------------


def _result() -> DialogueResult:
    return DialogueResult(0, "travel", {}, success=False, turns=3)


def test_judging_a_submission():
    goal = Goal("travel", {}, {"to": "Paris", "date": "2026-12-01"})
    ok, wrong, missing, other = _result(), _result(), _result(), _result()
    _judge(ok, goal, "travel", {"to": "Paris", "date": "2026-12-01"})
    _judge(wrong, goal, "travel", {"to": "Paris", "date": "2026-12-01", "from": "Rome"})
    _judge(missing, goal, "travel", {"to": "Paris"})
    _judge(other, goal, "block_card", {"card": "debit"})
    assert ok.success and not ok.wrong_submission and ok.reason is None
    assert wrong.wrong_submission and not wrong.success and wrong.reason == "wrong_value:from"
    assert missing.incomplete_submission and not missing.wrong_submission and missing.reason == "missing_value:date"
    assert other.wrong_submission and other.reason == "wrong_frame"


class SloppyBot(FrameBot):
    """Submits every booking to Atlantis, whatever the user said."""

    def _submit(self, state, dialogue, parse, frame, instance, changed, now):
        if "to" in instance["slots"]:
            instance["slots"]["to"] = {**instance["slots"]["to"], "value": "Atlantis"}
        return super()._submit(state, dialogue, parse, frame, instance, changed, now)


def test_a_bot_that_alters_a_value_makes_wrong_submissions(bots):
    report = simulate(bots("travel", SloppyBot), n=8, seed=1)
    submitted = [r for r in report.results if r.submitted is not None]
    assert submitted and report.successes == 0
    assert report.wrong_submissions == len(submitted)
    assert all(r.reason == "wrong_value:to" and r.submitted["values"]["to"] == "Atlantis" for r in submitted)
    assert report.per_frame["travel"]["wrong_submissions"] == len(submitted)


def test_the_simulation_repeats_for_a_seed(bots):
    bot = bots("travel")
    first, again, other = (simulate(bot, n=8, seed=s).as_dict() for s in (7, 7, 8))
    assert first == again
    assert first["dialogue_results"] != other["dialogue_results"]


def test_frames_and_language_are_checked(bots):
    with pytest.raises(ConfigError):
        simulate(bots("travel"), n=1, frames=["lost_card"])
    with pytest.raises(ConfigError):
        simulate(bots("travel"), n=1, language="ru")


# -- the example bots -----------------------------------------------------------------------------


def test_travel_dialogues_mostly_succeed(bots):
    report = simulate(bots("travel"), n=30, seed=11, config=SimConfig(change_mind=0.5, unrelated=0.5))
    assert report.dialogues == 30
    assert report.success_rate >= 0.6, [r.format() for r in report.failed]
    assert 2 <= report.mean_turns <= 10
    assert report.events.get("changed_mind", 0) > 0 and report.events.get("unrelated_asked", 0) > 0
    changed = [r for r in report.results if r.success and r.goal["stale"]]
    assert changed and all(r.submitted["values"] == r.goal["values"] for r in changed)


def test_english_bank_dialogues_mostly_succeed(bots):
    report = simulate(bots("en"), n=30, seed=5)
    assert set(report.per_frame) == {"lost_card", "block_card", "balance", "transfer_status", "dispute"}
    assert all(row["dialogues"] == 6 for row in report.per_frame.values())
    assert report.success_rate >= 0.6, [r.format() for r in report.failed]
    assert len(report.failed) <= 5 and all(r.transcript for r in report.failed)


def test_russian_bank_dialogues_run(bots):
    report = simulate(bots("ru"), n=10, seed=2)
    assert report.language == "ru" and report.dialogues == 10
    assert all(r.turns >= 1 and r.transcript[1][0] == "user" for r in report.results)
    assert any("\u0400" <= ch <= "\u04ff" for ch in report.results[0].transcript[1][1])
    assert report.successes > 0


def test_cli_eval_dialogues(tmp_path):
    output = tmp_path / "report.json"
    result = CliRunner().invoke(
        app, ["eval", "dialogues", "--bot", "travel", "-n", "3", "--embedder", "hashing", "--json", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert "task success rate" in result.output and "travel" in result.output
    assert output.exists()
    bad = CliRunner().invoke(app, ["eval", "dialogues", "--bot", "travel", "--language", "ru"])
    assert bad.exit_code == 2
