"""The retrieval bot's first start: cheap to build, answering by words at once, resumable, honest.

Small corpora (a JSONL file of 300 exchanges), the hashing embedder and the moderation screen
without its model keep these fast; batches of 20 make an import long enough to interrupt.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rejoinder.bots.retrieval import train
from rejoinder.bots.retrieval.bot import RetrievalBot, create, shared_embedder
from rejoinder.bots.retrieval.index import word_overlap
from rejoinder.bots.retrieval.memory import RetrievalMemory
from rejoinder.bots.retrieval.served import close_all, index_folder
from rejoinder.chat import ChatSession
from rejoinder.cli import app
from rejoinder.dialogue import Cancel, Dialogue, Message, PreparingBot
from rejoinder.embeddings import HashingEmbedder, context_vector
from rejoinder.errors import ConcurrentUpdate, ConfigError, SourceError
from rejoinder.moderation import Moderator
from rejoinder.store import Store

TOPICS = ["dogs", "movies", "music", "cooking", "travel", "football", "books", "weather", "work", "games"]
CONVERSATIONS = 60
TURNS = 6  # 5 exchanges each: 300 in all


def conversations() -> list[list[str]]:
    return [
        [f"turn {j} of talk {i} about {TOPICS[i % len(TOPICS)]} and thing{i}x{j}" for j in range(TURNS)]
        for i in range(CONVERSATIONS)
    ]


EXCHANGES = CONVERSATIONS * (TURNS - 1)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "talk.jsonl"
    path.write_text("".join(json.dumps({"id": f"c{i}", "turns": t}) + "\n" for i, t in enumerate(conversations())))
    return path


@pytest.fixture(autouse=True)
def _small_batches(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(train, "BATCH", 20)
    monkeypatch.setattr(train, "EMBED_BATCH", 20)
    yield
    close_all()


@pytest.fixture
def screen() -> Moderator:
    return Moderator(use_model=False)


def memory_at(url: str) -> RetrievalMemory:
    return RetrievalMemory(Store(url), "default")


class GatedEmbedder:
    """The hashing embedder, but its model "loads" only when the test opens the gate.

    With ``only_background`` the model counts as loaded at once and only the preparation's
    embedding pass waits for the gate: replies can use the model while embeddings are missing.
    """

    name = "hashing"
    dim = 256

    def __init__(self, only_background: bool = False) -> None:
        self.inner = HashingEmbedder()
        self.gate = threading.Event()
        self.only_background = only_background
        self.calls = 0

    @property
    def loaded(self) -> bool:
        return self.only_background or self.gate.is_set()

    def encode(self, texts):
        if not self.only_background or threading.current_thread().name.startswith("rejoinder-retrieval-prepare"):
            self.calls += 1
            assert self.gate.wait(20), "the test never opened the gate"
        return self.inner.encode(texts)


def ask(bot: RetrievalBot, text: str):
    return bot.respond(Dialogue(bot="retrieval", messages=[Message("user", text)], conversation_id="t"))


# --------------------------------------------------------------------------------------------
# Building is cheap


def test_building_the_bot_opens_nothing_imports_nothing_and_loads_no_model(tmp_path, corpus):
    code = textwrap.dedent(
        f"""
        import sys, time
        from rejoinder.store import Store
        store = Store({f"sqlite:///{tmp_path / 'r.db'}"!r})
        from rejoinder.bots.retrieval.bot import create
        started = time.perf_counter()
        bot = create(store=store, corpus={str(corpus)!r})
        seconds = time.perf_counter() - started
        heavy = ("torch", "sentence_transformers", "profanity_check", "tantivy", "usearch")
        heavy = [m for m in heavy if m in sys.modules]
        print(seconds, heavy, bot.readiness().ready)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) < 0.5
    assert out[1:] == ["[]", "False"]
    memory = memory_at(f"sqlite:///{tmp_path / 'r.db'}")
    assert memory.stats() == {} and memory.imports() == []
    assert not index_folder(memory.store, "default").exists()


def test_the_retrieval_bot_is_a_preparing_bot(store):
    assert isinstance(create(store=store), PreparingBot)


# --------------------------------------------------------------------------------------------
# First start: answers by words before the embeddings exist


def test_a_first_start_answers_from_the_lexical_index_before_embeddings_exist(store, corpus, screen):
    embedder = GatedEmbedder()
    bot = RetrievalBot(RetrievalMemory(store, "default"), moderator=screen, embedder=embedder, corpus=str(corpus))
    assert not bot.readiness().ready
    bot.prepare()
    readiness = bot.readiness()
    assert readiness.ready and not readiness.complete
    reply = ask(bot, "turn 2 of talk 1 about movies and thing1x2")
    assert reply.meta["index"] == "lexical"
    assert reply.text == "turn 3 of talk 1 about movies and thing1x3"
    assert reply.confidence == pytest.approx(
        word_overlap(reply.meta["matched"], "turn 2 of talk 1 about movies and thing1x2")
    )
    embedder.gate.set()
    assert bot.wait(30)
    assert bot.readiness().complete and bot.readiness().ready
    assert bot.memory.count_unembedded() == 0
    reply = ask(bot, "turn 2 of talk 1 about movies and thing1x2")
    assert reply.meta["index"] == "hybrid" and "talk 1 about movies" in reply.text


def test_while_embeddings_are_computed_a_loaded_model_ranks_the_replies_and_gives_the_confidence(store, corpus, screen):
    embedder = GatedEmbedder(only_background=True)
    bot = RetrievalBot(RetrievalMemory(store, "default"), moderator=screen, embedder=embedder, corpus=str(corpus))
    bot.prepare()
    query = "turn 2 of talk 1 about movies and thing1x2"
    reply = ask(bot, query)
    assert reply.meta["index"] == "lexical" and "fit" in reply.meta
    assert reply.text == "turn 3 of talk 1 about movies and thing1x3"
    matched_context = conversations()[1][:3]
    expected = float(context_vector(embedder.inner.encode(matched_context)) @ embedder.inner.encode([query])[0])
    assert reply.confidence == pytest.approx(expected, abs=1e-5)
    embedder.gate.set()
    assert bot.wait(30) and bot.readiness().complete


def test_readiness_reports_the_import_then_the_embeddings_with_totals(store, corpus, screen):
    embedder = GatedEmbedder()
    bot = RetrievalBot(RetrievalMemory(store, "default"), moderator=screen, embedder=embedder, corpus=str(corpus))
    bot.prepare()
    deadline = time.monotonic() + 20
    while bot.preparation.stage != "embedding" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bot.preparation.stage == "embedding"
    while embedder.calls == 0 and time.monotonic() < deadline:  # the first batch is waiting at the gate
        time.sleep(0.01)
    readiness = bot.readiness()
    assert readiness.ready and not readiness.complete and "computing embeddings" in readiness.detail
    embedder.gate.set()
    assert bot.wait(30)
    assert bot.readiness().total == EXCHANGES == bot.readiness().done


def test_a_bot_that_was_never_prepared_starts_preparing_on_its_first_reply(store, corpus, screen):
    bot = RetrievalBot(
        RetrievalMemory(store, "default"), moderator=screen, embedder=shared_embedder("hashing"), corpus=str(corpus)
    )
    reply = ask(bot, "turn 0 of talk 3 about cooking and thing3x0")
    assert reply.meta["source"] == "retrieval"
    assert bot.wait(30) and bot.readiness().complete


# --------------------------------------------------------------------------------------------
# Interrupted imports resume


def reference_count(tmp_path: Path, corpus: Path, screen: Moderator) -> int:
    memory = memory_at(f"sqlite:///{tmp_path / 'reference.db'}")
    report = train.import_corpus(memory, screen, str(corpus))
    assert report.complete
    return memory.stats()["approved"]


def test_an_import_stopped_by_cancel_resumes_where_it_stopped(tmp_path, corpus, screen):
    memory = memory_at(f"sqlite:///{tmp_path / 'r.db'}")
    cancel = Cancel()
    seen = []

    def progress(event):
        seen.append(event.done)
        if len(seen) == 3:
            cancel.set()

    first = train.import_corpus(memory, screen, str(corpus), progress=progress, cancel=cancel)
    assert first.stopped and not first.complete and first.read == 60
    assert memory.stats()["approved"] == 60
    [record] = memory.imports()
    assert (record.position, record.total, record.complete) == (60, EXCHANGES, False)
    second = train.import_corpus(memory, screen, str(corpus))
    assert second.resumed_from == 60 and second.read == EXCHANGES - 60 and second.complete
    assert memory.stats()["approved"] == reference_count(tmp_path, corpus, screen)
    [record] = memory.imports()
    assert record.complete and record.imported + record.duplicates + record.refused == EXCHANGES


def test_a_bot_preparation_cancelled_from_outside_stops_within_a_batch_and_resumes(store, corpus, screen):
    cancel = Cancel()
    events = []

    def progress(event):
        events.append(event)
        if event.stage == "import" and event.done >= 40:
            cancel.set()

    make = lambda: RetrievalBot(  # noqa: E731
        RetrievalMemory(store, "default"), moderator=screen, embedder=shared_embedder("hashing"), corpus=str(corpus)
    )
    bot = make()
    bot.prepare(progress, cancel)
    assert bot.wait(20)
    assert bot.preparation.stage == "stopped"
    assert [e.done for e in events if e.stage == "import"] == [20, 40]
    assert "resumes" in bot.readiness().detail
    again = make()
    again.prepare(background=False)
    assert again.readiness().complete
    assert again.memory.stats()["approved"] == EXCHANGES


CHILD = """
import sys, time
from rejoinder.bots.retrieval import train
from rejoinder.bots.retrieval.memory import RetrievalMemory
from rejoinder.moderation import Moderator
from rejoinder.store import Store

train.BATCH = 20
memory = RetrievalMemory(Store(sys.argv[1]), "default")

def progress(event):
    print(event.done, flush=True)
    time.sleep(0.01)

train.import_corpus(memory, Moderator(use_model=False), sys.argv[2], progress=progress)
print("finished", flush=True)
"""


def test_an_import_killed_with_sigkill_loses_nothing_and_the_next_start_resumes(tmp_path, corpus, screen):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(corpus)], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == "finished" or int(line) >= 100:
            break
    time.sleep(random.uniform(0, 0.02))  # somewhere in the next batches, mid-transaction or between them
    child.send_signal(signal.SIGKILL)
    child.wait()
    memory = memory_at(url)
    [record] = memory.imports()
    assert not record.complete and 100 <= record.position < EXCHANGES
    assert memory.stats()["approved"] == record.imported  # the record and the rows moved together
    bot = RetrievalBot(memory, moderator=screen, embedder=shared_embedder("hashing"), corpus=str(corpus))
    bot.prepare(background=False)
    assert bot.readiness().complete
    assert memory.stats()["approved"] == reference_count(tmp_path, corpus, screen)
    [record] = memory.imports()
    assert record.complete and record.imported + record.duplicates + record.refused == EXCHANGES
    assert memory.count_unembedded() == 0


def test_two_processes_importing_at_once_share_the_work(tmp_path, corpus, screen):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    first, second = memory_at(url), memory_at(url)
    reports = []
    threads = [
        threading.Thread(target=lambda m=m: reports.append(train.import_corpus(m, screen, str(corpus))))
        for m in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(r.complete for r in reports) and sum(r.read for r in reports) == EXCHANGES
    assert first.stats()["approved"] == reference_count(tmp_path, corpus, screen)


# --------------------------------------------------------------------------------------------
# Honest progress and stats


def test_progress_reports_the_total_from_the_first_batch_with_rate_and_time_left(tmp_path, corpus, screen):
    memory = memory_at(f"sqlite:///{tmp_path / 'r.db'}")
    events = []
    train.import_corpus(memory, screen, str(corpus), progress=events.append)
    assert [e.total for e in events] == [EXCHANGES] * len(events)
    assert [e.done for e in events] == list(range(20, EXCHANGES + 1, 20))
    assert "/s" in events[0].detail and "left" in events[0].detail
    embedded = []
    train.embed_missing(memory, shared_embedder("hashing"), progress=embedded.append)
    assert embedded[0].total == memory.stats()["approved"] and embedded[-1].done == embedded[-1].total


def stats(db: str) -> str:
    result = CliRunner().invoke(app, ["retrieval", "stats", "--db", db])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_stats_say_whether_the_import_and_the_embeddings_are_complete(tmp_path, corpus, screen):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    memory = memory_at(db)
    cancel = Cancel()
    train.import_corpus(memory, screen, str(corpus), cancel=cancel, progress=lambda e: e.done >= 100 and cancel.set())
    report = stats(db)
    assert f"import of {corpus} (window 3): INCOMPLETE, 100 of {EXCHANGES} exchanges read" in report
    assert "embeddings: INCOMPLETE, 100 of 100 served exchanges have none yet" in report
    assert "rejoinder train retrieval" in report
    result = CliRunner().invoke(
        app, ["train", "retrieval", "--corpus", str(corpus), "--embedder", "hashing", "--db", db]
    )
    assert result.exit_code == 0, result.output
    assert "resumed at 100" in result.stdout
    report = stats(db)
    assert f"import of {corpus} (window 3): complete, {EXCHANGES} exchanges read" in report
    assert f"embeddings: complete ({EXCHANGES} served exchanges)" in report


def test_ctrl_c_stops_train_retrieval_after_the_batch_and_running_it_again_resumes(tmp_path, corpus, monkeypatch):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    checks = []
    real = Moderator.check_many

    def check_many(self, texts, **kwargs):
        checks.append(len(texts))
        if len(checks) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, texts, **kwargs)

    monkeypatch.setattr(Moderator, "check_many", check_many)
    args = ["train", "retrieval", "--corpus", str(corpus), "--embedder", "hashing", "--db", db]
    stopped = CliRunner().invoke(app, args)
    assert stopped.exit_code == 130, stopped.output
    assert "run the same command again" in stopped.stderr
    assert memory_at(db).stats()["approved"] == 60
    monkeypatch.setattr(Moderator, "check_many", real)
    resumed = CliRunner().invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at 60" in resumed.stdout and f"now serves {EXCHANGES} exchanges" in resumed.stdout


# --------------------------------------------------------------------------------------------
# Lessons are written with the turn


@pytest.fixture
def prepared(store, corpus, screen) -> RetrievalBot:
    bot = RetrievalBot(
        RetrievalMemory(store, "default"),
        moderator=screen,
        embedder=shared_embedder("hashing"),
        corpus=str(corpus),
        temperature=0,
    )
    bot.prepare(background=False)
    return bot


def test_respond_writes_nothing_and_the_lesson_rides_on_the_reply(prepared):
    dialogue = Dialogue(
        bot="retrieval",
        messages=[
            Message("user", "turn 0 of talk 1 about movies and thing1x0"),
            Message("assistant", "turn 1 of talk 1 about movies and thing1x1", meta={"source": "retrieval"}),
            Message("user", "what a fine thing to say"),
        ],
        conversation_id="c",
        user_id="ann",
    )
    reply = prepared.respond(dialogue)
    assert reply.meta["learned"] == {"exchange": None, "status": "quarantined", "teachers": 1}
    assert prepared.memory.review() == []
    [lesson] = reply.effects
    with prepared.memory.store.session() as session:
        lesson(session)
    [pending] = prepared.memory.review()
    assert pending.reply == "what a fine thing to say" and pending.teachers == 1


def test_a_turn_refused_with_a_concurrent_update_teaches_nothing(store, prepared):
    session, _ = ChatSession.start(store, "retrieval", bot=prepared, user_id="ann")
    session.send("turn 0 of talk 1 about movies and thing1x0")
    other = ChatSession.resume(store, session.conversation_id, bot=prepared)
    session.send("a lesson from the first window")
    with pytest.raises(ConcurrentUpdate):
        other.send("a lesson from the second window")
    assert [row.reply for row in prepared.memory.review()] == ["a lesson from the first window"]


def test_a_corpus_that_cannot_be_read_fails_the_preparation_with_its_name(store, tmp_path, screen):
    missing = tmp_path / "nowhere.jsonl"
    bot = RetrievalBot(
        RetrievalMemory(store, "default"), moderator=screen, embedder=shared_embedder("hashing"), corpus=str(missing)
    )
    with pytest.raises(SourceError, match=r"nowhere\.jsonl"):
        bot.prepare()
    assert "preparation failed" in bot.readiness().detail and not bot.readiness().ready
    with pytest.raises(SourceError, match=r"nowhere\.jsonl"):
        ask(bot, "hello")
    assert bot.memory.imports() == []


# -- typed options ------------------------------------------------------------------------------------
def test_a_client_may_tune_the_draw_but_not_the_quarantine_the_screen_or_the_corpus():
    from rejoinder.bots import available_bots

    entry = available_bots()["retrieval"]
    converted = entry.check({"temperature": "0", "k": "5", "learn": "false"}, client=True)
    assert (converted["temperature"], converted["k"], converted["learn"]) == (0.0, 5, False)
    for option, value in [("min_teachers", 1), ("threshold", 1.0), ("corpus", "/etc/passwd"), ("policy", "p.yaml"),
                          ("learn_per_hour", 1000), ("collection", "other"), ("embedder", "hashing")]:  # fmt: skip
        with pytest.raises(ConfigError, match=rf"'{option}'.*only by the operator"):
            entry.check({option: value}, client=True)
    assert entry.schema()["properties"]["corpus"]["x-client-settable"] is False


def test_bad_retrieval_options_are_all_named_with_what_is_accepted():
    with pytest.raises(ConfigError) as caught:
        create(k="0", temperature="warm", learn="maybe", embedder="word2vec")
    message = str(caught.value)
    assert "k='0': expected a whole number from 1 to 1000" in message
    assert "temperature='warm': expected a number from 0 to 10" in message
    assert "learn='maybe': expected true or false" in message
    assert "embedder='word2vec': expected one of: minilm, hashing" in message


def test_corpus_none_starts_empty_and_a_corpus_with_an_argument_is_kept_whole(tmp_path):
    from rejoinder.bots import available_bots

    assert create(store=Store(f"sqlite:///{tmp_path / 'a.db'}"), corpus="none").corpus is None
    converted = available_bots()["retrieval"].check({"corpus": "chatterbot:russian"}, base=tmp_path)
    assert converted["corpus"] == "chatterbot:russian"
    assert available_bots()["retrieval"].check({"corpus": "talks.jsonl"}, base=tmp_path)["corpus"] == str(
        tmp_path / "talks.jsonl"
    )
