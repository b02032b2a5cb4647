"""Building a frame bot is cheap and has no side effects; its slow first-use work (training the NLU,
starting the demo backend) is ``prepare``, with progress, resumable after a cancel, and the demo
backend is only ever one this process started and can prove is its own."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import httpx
import pytest

from rejoinder.bots.frames import demo_backend
from rejoinder.bots.frames.bot import EXAMPLES, create
from rejoinder.dialogue import Cancel, Dialogue, Message, PreparingBot
from rejoinder.errors import ConfigError

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
BANK = str(EXAMPLES / "bank_en" / "domain.yaml")


def quick_bank(**options):
    """The English bank bot with the quick NLU (hashing embedder, no NER)."""
    return create(BANK, embedder="hashing", ner=False, **options)


def demo_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("demo-backend-")}


def test_building_a_frame_bot_starts_nothing_and_writes_nothing(tmp_path):
    threads, servers = demo_threads(), dict(demo_backend._SERVERS)
    bot = quick_bank()
    assert isinstance(bot, PreparingBot)
    assert demo_threads() == threads and servers == demo_backend._SERVERS
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*"))  # no NLU trained
    readiness = bot.readiness()
    assert not readiness.ready and (readiness.done, readiness.total) == (0, 2)
    assert "demo backend" in readiness.detail and "NLU" in readiness.detail
    assert bot.demo_backend_url is None


def test_bad_options_fail_at_construction_before_anything_is_prepared():
    with pytest.raises(ConfigError, match="embedder='bert'"):
        create(BANK, embedder="bert")
    with pytest.raises(ConfigError, match="classifier='svm'"):
        create(BANK, classifier="svm")
    with pytest.raises(ConfigError, match="demo_backend_port=70000"):
        create(BANK, demo_backend_port=70000)


def test_prepare_starts_a_verified_demo_backend_and_trains_the_nlu_with_progress(tmp_path):
    bot = quick_bank()
    events = []
    bot.prepare(events.append)
    assert [e.stage for e in events][:2] == ["demo backend", "demo backend"]
    nlu = [e for e in events if e.stage == "nlu"]
    assert nlu[-1].done == nlu[-1].total == 4 and any("training" in e.detail for e in nlu)
    assert bot.readiness().ready and bot.readiness().complete
    identity = httpx.get(f"{bot.demo_backend_url}/_identity").json()
    assert identity["service"] == demo_backend.SERVICE
    assert any((tmp_path / "home" / "frames").iterdir())  # the trained models are cached
    again = []
    bot.prepare(again.append)
    assert again == []  # idempotent

    second = []
    quick_bank().prepare(second.append)  # the cached models load instead of training again
    assert not any("training" in e.detail for e in second)


def test_a_port_held_by_another_process_is_refused_not_trusted():
    with socket.socket() as impostor:
        impostor.bind(("127.0.0.1", 0))
        impostor.listen()
        port = impostor.getsockname()[1]
        bot = quick_bank(demo_backend_port=port)
        with pytest.raises(ConfigError, match=rf"demo_backend_port={port}: 127\.0\.0\.1:{port} is taken"):
            bot.prepare()
    assert not bot.readiness().ready


def test_the_demo_backend_answers_only_with_the_token_this_process_gave_it():
    port = demo_backend.serve_in_background(0)
    assert demo_backend.serve_in_background(0) == port  # one per process
    token = demo_backend._SERVERS[port].token
    assert demo_backend.answers_as_ours(port, token)
    assert not demo_backend.answers_as_ours(port, "someone-else")
    assert not demo_backend.answers_as_ours(demo_backend.free_port(), token)  # nothing listens there


def test_a_cancelled_preparation_resumes_on_the_next_call():
    bot = quick_bank()
    cancel = Cancel()

    def stop_at_the_nlu(event):
        if event.stage == "nlu":
            cancel.set()

    bot.prepare(stop_at_the_nlu, cancel)
    readiness = bot.readiness()
    assert not readiness.ready and (readiness.done, readiness.total) == (1, 2)
    assert bot.demo_backend_url is not None and "NLU" in readiness.detail
    bot.prepare()
    assert bot.readiness().complete


def test_an_unprepared_bot_prepares_itself_on_its_first_turn():
    bot = quick_bank()
    dialogue = Dialogue(bot="bank", conversation_id="lazy")
    bot.greet(dialogue)
    for text in ["I lost my visa on Monday in Rome", "yes"]:
        dialogue.messages.append(Message("user", text, created_at=NOW))
        reply = bot.respond(dialogue)
        dialogue.messages.append(Message("assistant", reply.text, meta=reply.meta))
    assert reply.meta["action"] == "submitted" and reply.text.startswith("Done: your debit card is blocked.")
    assert bot.readiness().complete
