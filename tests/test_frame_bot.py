"""The goal-oriented bot over a travel frame and a card frame, with a real HTTP backend on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from rejoinder.bots.frames.backends import idempotency_key, submit
from rejoinder.bots.frames.bot import EXAMPLES, FrameBot, build_nlu
from rejoinder.bots.frames.demo_backend import free_port, serve_in_background
from rejoinder.bots.frames.domain import load_domain
from rejoinder.bots.frames.schema import Submit
from rejoinder.dialogue import Dialogue, Message
from rejoinder.errors import SourceError

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # a Thursday

NLU = """\
language: en
intents:
  book_ticket:
    - I want to fly from [Moscow](from) to [Paris](to) [tomorrow](date)
    - book a ticket to [Berlin](to)
    - I need a flight to [Rome](to) on [Friday](date)
    - get me a ticket from [London](from) to [Madrid](to)
    - buy a plane ticket
    - I'd like to book a flight
    - flights to [Vienna](to) please
    - can you book me a ticket
    - I want to travel to [Prague](to) [next week](date)
    - book tickets
  block_card:
    - block my card
    - please block my [credit](card) card
    - I lost my card
    - freeze my [debit](card) card
    - my card was stolen
    - block the [credit](card) card please
    - I need to block a card
    - stop my card
  opening_hours:
    - when are you open
    - what are your opening hours
    - are you open on sunday
    - what time do you close
    - opening hours
    - when does the office open
"""


@pytest.fixture(scope="module")
def port():
    return serve_in_background(free_port())


@pytest.fixture
def domain(tmp_path, port):
    base = f"http://127.0.0.1:{port}"
    travel = {
        "name": "travel",
        "intents": ["book_ticket"],
        "slots": [
            {"name": "from", "type": "city", "is_required": False},
            {"name": "to", "type": "city", "prompt": "What city are you travelling to?", "is_required": True},
            {"name": "date", "type": "date", "prompt": "When are you travelling?", "is_required": True},
        ],
        "submit": {"url": f"{base}/travel/book", "success_prompt": "Booked: {result.booking}."},
        "confirmation": {"is_required": True, "prompt": "Tickets from {from} to {to} on {date}"},
    }
    card = {
        "name": "block_card",
        "intents": ["block_card"],
        "slots": [
            {
                "name": "card",
                "type": "enum",
                "prompt": "Which card, debit or credit?",
                "is_required": True,
                "choices": ["debit", {"value": "credit", "synonyms": ["visa", "credit card"]}],
            }
        ],
        "submit": {
            "url": f"{base}/bank/block_card",
            "success_prompt": "Your {card} card is blocked ({result.reference}).",
        },
        "confirmation": {"is_required": True, "prompt": "Block your {card} card?"},
    }
    (tmp_path / "travel.json").write_text(json.dumps(travel))
    (tmp_path / "card.json").write_text(json.dumps(card))
    (tmp_path / "nlu.yaml").write_text(NLU)
    (tmp_path / "domain.yaml").write_text(
        "name: test\nlanguage: en\nnlu: nlu.yaml\nframes: [travel.json, card.json]\n"
        "responses:\n  opening_hours: We are open from 9 to 18.\n"
    )
    return load_domain(tmp_path / "domain.yaml")


@pytest.fixture
def bot(domain):
    return FrameBot(domain, build_nlu(domain, embedder="hashing", ner=False), min_intent_confidence=0.3)


def talk(bot, lines, dialogue=None):
    dialogue = dialogue or Dialogue(bot="frames", conversation_id="c1")
    replies = []
    for line in lines:
        dialogue.messages.append(Message("user", line, created_at=NOW))
        reply = bot.respond(dialogue)
        dialogue.messages.append(Message("assistant", reply.text, meta=reply.meta))
        replies.append(reply)
    return replies, dialogue


def bookings(port):
    return httpx.get(f"http://127.0.0.1:{port}/_stats").json()["done"].get("book", 0)


def test_several_slots_in_one_utterance_go_straight_to_confirmation(bot):
    [reply], _ = talk(bot, ["I want to fly from Moscow to Paris tomorrow"])
    assert reply.text == "Tickets from Moscow to Paris on Friday 27 November 2026"
    assert reply.meta["action"] == "confirm"


def test_missing_slots_are_asked_in_order_then_confirmed_and_booked(bot, port):
    before = bookings(port)
    replies, dialogue = talk(bot, ["book a ticket", "Berlin", "next Friday", "yes"])
    assert [r.meta["action"] for r in replies] == ["ask:to", "ask:date", "confirm", "submitted"]
    assert replies[0].text == "What city are you travelling to?"
    assert replies[3].text.startswith("Booked: TK-")
    assert bookings(port) == before + 1
    assert dialogue.state["last"]["slots"]["to"]["value"] == "Berlin"


def test_a_correction_at_confirmation_updates_and_reads_back_again(bot):
    replies, _ = talk(bot, ["I want to fly from Moscow to Paris tomorrow", "no, to Rome"])
    assert replies[1].text == "Tickets from Moscow to Rome on Friday 27 November 2026"


def test_no_at_confirmation_asks_what_to_change(bot):
    replies, _ = talk(bot, ["I want to fly from Moscow to Paris tomorrow", "no", "to Vienna", "yes"])
    assert [r.meta["action"] for r in replies] == ["confirm", "ask:change", "confirm", "submitted"]
    assert "Vienna" in replies[2].text


def test_ellipsis_reopens_the_last_frame_with_the_other_values_kept(bot):
    replies, _ = talk(bot, ["I want to fly from Moscow to Paris tomorrow", "yes", "And to Rome?"])
    assert replies[2].text == "Tickets from Moscow to Rome on Friday 27 November 2026"


def test_anaphora_takes_the_city_mentioned_before(bot):
    replies, _ = talk(bot, ["book a ticket", "Paris", "tomorrow", "no", "from there"])
    assert "from Paris" in replies[-1].text


def test_a_frame_switch_mid_dialogue_comes_back_after(bot):
    replies, dialogue = talk(bot, ["book a ticket", "I lost my card", "credit", "yes"])
    assert replies[1].meta["action"] == "ask:card"
    assert replies[3].text.startswith("Your credit card is blocked")
    assert "What city are you travelling to?" in replies[3].text
    assert dialogue.state["current"]["frame"] == "travel"


def test_cancel_drops_the_frame_and_a_response_intent_is_answered(bot):
    replies, dialogue = talk(bot, ["book a ticket", "cancel", "when are you open"])
    assert replies[1].meta["action"] == "cancel" and dialogue.state["current"] is None
    assert replies[2].text == "We are open from 9 to 18."


def test_a_question_in_the_middle_is_answered_and_the_slot_asked_again(bot):
    replies, _ = talk(bot, ["book a ticket", "what are your opening hours"])
    assert replies[1].text == "We are open from 9 to 18. What city are you travelling to?"


def test_the_state_survives_a_restart(bot, domain):
    _, dialogue = talk(bot, ["book a ticket", "Berlin"])
    stored = json.loads(json.dumps(dialogue.state))
    fresh = FrameBot(domain, build_nlu(domain, embedder="hashing", ner=False), min_intent_confidence=0.3)
    resumed = Dialogue(bot="frames", conversation_id="c1", messages=list(dialogue.messages), state=stored)
    [reply], _ = talk(fresh, ["tomorrow"], resumed)
    assert reply.text == "Tickets to Berlin on Friday 27 November 2026"


def test_a_repeated_submission_is_never_booked_twice(port):
    spec = Submit(url=f"http://127.0.0.1:{port}/travel/book")
    key = idempotency_key("c9", "travel", 1, {"to": "Oslo", "date": "2026-12-01"})
    before = bookings(port)
    first = submit(spec, "travel", {"to": "Oslo", "date": "2026-12-01"}, key)
    second = submit(spec, "travel", {"to": "Oslo", "date": "2026-12-01"}, key)
    assert first.ok and second.ok and first.result == second.result
    assert bookings(port) == before + 1


def test_an_unreachable_backend_is_retried_with_backoff_then_reported(port):
    spec = Submit(url=f"http://127.0.0.1:{free_port()}/travel/book", retries=2, timeout_s=0.5)
    slept = []
    outcome = submit(spec, "travel", {}, "k", sleep=slept.append)
    assert not outcome.ok and outcome.attempts == 3 and slept == [0.2, 0.4]


def test_a_bad_domain_fails_before_the_bot_starts(tmp_path):
    (tmp_path / "domain.yaml").write_text("name: x\nlanguage: en\nframes: [missing.json]\n")
    with pytest.raises(SourceError, match=r"missing\.json"):
        load_domain(tmp_path / "domain.yaml")
    (tmp_path / "domain.yaml").write_text("name: x\nlanguage: fr\nframes: [a.json]\n")
    with pytest.raises(SourceError, match="/language"):
        load_domain(tmp_path / "domain.yaml")


def test_frames_check_command_accepts_the_examples_and_points_at_a_fault(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from rejoinder.cli import app

    examples = Path(__file__).resolve().parents[1] / "src" / "rejoinder" / "bots" / "frames" / "examples"
    good = CliRunner().invoke(app, ["frames", "check", *map(str, sorted(examples.glob("*/domain.yaml")))])
    assert good.exit_code == 0 and good.stdout.count(": ok") == 3
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "slots": [{"name": "a", "type": "cty"}]}')
    result = CliRunner().invoke(app, ["frames", "check", str(bad)])
    assert result.exit_code == 2 and f"{bad}: /slots/0/type:" in result.stderr
    schema = CliRunner().invoke(app, ["frames", "schema"])
    assert '"title": "Rejoinder slot frame"' in schema.stdout


def test_optional_template_parts_are_said_only_with_a_value():
    from rejoinder.bots.frames.bot import fill

    template = "Block your {card} card[ (reason: {reason})]?"
    assert fill(template, {"card": "debit"}) == "Block your debit card?"
    assert fill(template, {"card": "debit", "reason": "stolen"}) == "Block your debit card (reason: stolen)?"


# -- a follow-up to the last request, and goodbyes while a question is open -------------------------


class UnsureAbout:
    """The NLU, except that given texts get a given intent at a given confidence (a classifier's doubt)."""

    def __init__(self, nlu, forced):
        self.inner, self.forced = nlu, forced

    def parse(self, text, now=None):
        parse = self.inner.parse(text, now)
        if text in self.forced:
            parse.intent, parse.confidence = self.forced[text]
        return parse


@pytest.fixture(scope="module")
def bank(tmp_path_factory, port):
    """The example bank bots with the quick NLU (hashing embedder, no NER), by language."""
    built = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REJOINDER_HOME", str(tmp_path_factory.mktemp("home")))
        for language in ("en", "ru"):
            domain = load_domain(EXAMPLES / f"bank_{language}" / "domain.yaml")
            built[language] = (domain, build_nlu(domain, embedder="hashing", ner=False))
    return built


def bank_bot(bank, language, forced=None):
    domain, nlu = bank[language]
    bot = FrameBot(domain, UnsureAbout(nlu, forced or {}), name="bank", demo_backend_port=0)
    bot.prepare()
    return bot


LOST_DEBIT = ["I lost my visa on Monday in Rome", "yes"]


def test_an_elliptical_follow_up_the_classifier_doubts_reopens_the_last_frame(bank):
    bot = bank_bot(bank, "en", {"and my credit card too?": ("block_card", 0.55)})
    replies, dialogue = talk(bot, [*LOST_DEBIT, "and my credit card too?"])
    assert replies[2].text.startswith("Report your credit card lost on Monday 23 November 2026 in Rome")
    assert dialogue.state["current"]["frame"] == "lost_card"


def test_a_confident_new_request_after_a_finished_one_starts_its_own_frame(bank):
    bot = bank_bot(bank, "en", {"block my credit card": ("block_card", 0.95)})
    replies, dialogue = talk(bot, [*LOST_DEBIT, "block my credit card"])
    assert replies[2].text.startswith("Block your credit card now?")
    assert dialogue.state["current"]["frame"] == "block_card"


@pytest.mark.parametrize("goodbye", ["thanks, bye", "bye", "goodbye", "ok, bye then"])
def test_a_goodbye_while_a_slot_is_asked_parks_the_request_unsent(bot, port, goodbye):
    before = bookings(port)
    replies, dialogue = talk(bot, ["book a ticket", "Berlin", goodbye])
    assert replies[2].meta["action"] == "park"
    assert "Nothing has been sent" in replies[2].text and "booking" not in replies[2].text.lower()
    assert '"continue"' in replies[2].text
    assert dialogue.state["current"] is None and dialogue.state["parked"][-1]["frame"] == "travel"
    assert bookings(port) == before


def test_continue_picks_a_parked_request_up_where_it_stopped(bot, port):
    before = bookings(port)
    replies, dialogue = talk(bot, ["book a ticket", "Berlin", "thanks, bye", "hi", "continue", "tomorrow", "yes"])
    assert replies[3].text.endswith('Your request (travel) is not finished yet: say "continue" to pick it up.')
    assert replies[4].meta["action"] == "resume"
    assert replies[4].text == "Now, back to travel. When are you travelling?"
    assert replies[5].text == "Tickets to Berlin on Friday 27 November 2026"
    assert replies[6].meta["action"] == "submitted" and bookings(port) == before + 1
    assert dialogue.state["parked"] == []


def test_a_goodbye_at_the_read_back_submits_nothing(bot, port):
    before = bookings(port)
    replies, dialogue = talk(bot, ["I want to fly from Moscow to Paris tomorrow", "no thanks, bye"])
    assert replies[1].meta["action"] == "park" and bookings(port) == before
    [cancelled], _ = talk(bot, ["cancel"], dialogue)
    assert cancelled.text == "Okay, I've cancelled that." and dialogue.state["parked"] == []


def test_yes_with_a_goodbye_at_the_read_back_submits_and_says_goodbye(bot, port):
    before = bookings(port)
    dialogue = Dialogue(bot="frames", conversation_id="yes-and-bye")
    replies, _ = talk(bot, ["I want to fly from Moscow to Paris tomorrow", "yes, thanks, bye"], dialogue)
    assert replies[1].meta["action"] == "submitted" and bookings(port) == before + 1
    assert replies[1].text.endswith("Goodbye!")


@pytest.mark.parametrize(
    ("language", "opening", "goodbye", "resume", "question"),
    [
        ("en", "I lost my card", "thanks, bye", "continue", "Which card did you lose"),
        ("en", "I lost my visa on Monday in Rome", "bye", "let's continue", "Report your debit card lost"),
        ("ru", "я потерял карту", "до свидания", "продолжить", "Какую карту вы потеряли"),
        ("ru", "потерял кредитку в понедельник в Казани", "спасибо, пока", "давайте продолжим", "Проверим: кредитная"),
    ],
)
def test_the_bank_bot_parks_a_request_at_goodbye_and_resumes_it_in_both_languages(
    bank, language, opening, goodbye, resume, question
):
    bot = bank_bot(bank, language)
    stats = f"{bot.demo_backend_url}/_stats"
    before = httpx.get(stats).json()["done"].get("lost_card", 0)
    replies, dialogue = talk(bot, [opening, goodbye, resume])
    assert replies[0].text.startswith(question)
    parked = {"en": "Nothing has been submitted", "ru": "Я ничего не отправила"}[language]
    assert replies[1].meta["action"] == "park" and replies[1].text.startswith(parked)
    assert {"en": "reporting a lost or stolen card", "ru": "потеря или кража карты"}[language] in replies[1].text
    assert replies[2].meta["action"] == "resume" and question in replies[2].text
    assert dialogue.state["current"]["frame"] == "lost_card"
    assert httpx.get(stats).json()["done"].get("lost_card", 0) == before


def test_russian_poka_is_a_goodbye_only_at_the_end():
    from rejoinder.bots.frames.nlu.pipeline import dialogue_acts

    assert "goodbye" in dialogue_acts("спасибо, пока", "ru")
    assert "goodbye" in dialogue_acts("ну пока!", "ru")
    assert "goodbye" not in dialogue_acts("пока не знаю", "ru")
    assert "goodbye" not in dialogue_acts("заблокируйте пока что", "ru")
