"""The retrieval bot: answers from the most similar past context, learns safely, survives restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rejoinder.bots.retrieval.bot import FALLBACK, RetrievalBot, shared_embedder
from rejoinder.bots.retrieval.memory import RetrievalMemory
from rejoinder.bots.retrieval.served import ServedIndex, close_all, index_folder, served_index
from rejoinder.bots.retrieval.train import import_exchanges
from rejoinder.chat import ChatSession
from rejoinder.datasets.corpus import Exchange
from rejoinder.errors import ConfigError, RejoinderError
from rejoinder.moderation import Moderator
from rejoinder.store import Store

CONVERSATIONS = [
    ["hello how are you", "I am fine thanks, and you?", "pretty good, just tired"],
    ["what is your favourite movie", "I love The Matrix", "me too, the effects are great"],
    ["do you like dogs", "yes, I have a golden retriever", "what is its name"],
    ["where do you live", "I live in Boston", "is it cold there in winter"],
    ["what do you do for work", "I am a nurse at a hospital", "that must be hard work"],
    ["do you play any sports", "I play tennis on weekends", "nice, I prefer swimming"],
    ["what music do you like", "mostly jazz and some rock", "have you seen a concert lately"],
    ["are you hungry", "starving, I could eat a pizza", "pepperoni is my favourite"],
    ["I watched a movie", "why?", "because it was raining all day"],
    ["I quit my job", "why?", "my boss was impossible to work with"],
    ["what is the weather like", "sunny and warm today", "perfect for a walk in the park"],
    ["can you cook", "only pasta, but I make it well", "what sauce do you use"],
]


def exchanges(conversations=CONVERSATIONS) -> list[Exchange]:
    out = []
    for n, turns in enumerate(conversations):
        for i in range(1, len(turns)):
            out.append(Exchange(tuple(turns[max(0, i - 3) : i]), turns[i], "test", f"c{n}"))
    return out


@pytest.fixture
def memory(store):
    yield RetrievalMemory(store, "test")
    close_all()


@pytest.fixture
def embedder():
    return shared_embedder("hashing")


@pytest.fixture
def moderator():
    return Moderator()


@pytest.fixture
def bot(memory, embedder, moderator) -> RetrievalBot:
    import_exchanges(memory, embedder, moderator, exchanges())
    bot = RetrievalBot(memory, moderator=moderator, embedder=embedder, temperature=0, min_teachers=2)
    bot.prepare(background=False)
    return bot


def say(session: ChatSession, text: str) -> str:
    return session.send(text).text


def test_answers_with_what_followed_the_most_similar_context(store, bot):
    session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="ann")
    reply = session.send("Hello! How are you?")
    assert reply.text == "I am fine thanks, and you?"
    assert reply.meta["matched"] == "hello how are you"
    assert reply.confidence > 0.5


def test_previous_turns_decide_between_equal_last_utterances(store, bot):
    served = bot.served
    first = served.search(["I watched a film on tv", "why?"], k=2)
    second = served.search(["my boss is horrible so I quit the job", "why?"], k=2)
    replies = bot.memory.replies([first[0].id, second[0].id])
    assert replies[first[0].id].reply == "because it was raining all day"
    assert replies[second[0].id].reply == "my boss was impossible to work with"


def test_never_repeats_its_own_recent_replies(store, bot):
    session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="ann")
    replies = [say(session, "hello how are you") for _ in range(5)]
    assert len(set(replies)) == 5


def test_unrelated_messages_get_low_confidence(store, bot):
    session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="ann")
    assert session.send("quantum chromodynamics lagrangian").confidence < 0.3


def test_an_empty_memory_answers_with_a_fallback(store, memory, embedder, moderator):
    bot = RetrievalBot(memory, moderator=moderator, embedder=embedder)
    session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="ann")
    reply = session.send("hello")
    assert (reply.text, reply.confidence, reply.meta["source"]) == (FALLBACK, 0.0, "fallback")


def test_toxic_corpus_replies_are_refused_at_import(memory, embedder, moderator):
    report = import_exchanges(
        memory,
        embedder,
        moderator,
        [Exchange(("how are you",), "fuck off you idiot", "t"), Exchange(("how are you",), "fine thanks", "t")],
    )
    assert (report.read, report.imported, report.refused) == (2, 1, 1)


def test_importing_twice_adds_nothing_new(memory, embedder, moderator):
    import_exchanges(memory, embedder, moderator, exchanges())
    report = import_exchanges(memory, embedder, moderator, exchanges())
    assert report.imported == 0 and report.duplicates == report.read


def test_a_toxic_message_is_deflected_and_not_learned(store, bot):
    session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="troll")
    say(session, "hello how are you")
    reply = session.send("f u c k you, you stupid b1tch")
    assert reply.meta["source"] == "moderated" and reply.confidence == 0.0
    assert bot.memory.review(limit=10) == []


def test_a_users_reply_is_learned_into_quarantine_attributed_to_them(store, bot):
    session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="ann")
    bot_line = say(session, "hello how are you")
    reply = session.send("I feel great today, thanks for asking")
    assert reply.meta["learned"]["status"] == "quarantined"
    [pending] = bot.memory.review()
    assert pending.context[-1] == bot_line and pending.reply == "I feel great today, thanks for asking"
    assert pending.teachers == 1 and pending.source == "learned"


def test_a_learned_reply_is_served_once_enough_distinct_users_taught_it(store, bot):
    learned = "I feel great today, thanks for asking"
    for user in ("ann", "bob"):
        session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id=user)
        assert say(session, "hello how are you") == "I am fine thanks, and you?"
        session.send(learned)
    assert bot.memory.review() == []
    hits = bot.served.search(["I am fine thanks, and you?"], k=3)
    assert learned in [r.reply for r in bot.memory.replies([h.id for h in hits]).values()]


def test_an_admin_can_approve_reject_and_forget(store, bot):
    session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="ann")
    say(session, "hello how are you")
    session.send("a reply only one user taught")
    [pending] = bot.memory.review()
    assert bot.memory.set_status([pending.id], "approved") == 1
    assert bot.served.sync() == 1
    assert bot.memory.set_status([pending.id], "rejected") == 1
    assert bot.memory.review(status="rejected")[0].id == pending.id
    assert bot.memory.forget([pending.id]) == 1
    with pytest.raises(RejoinderError, match="no exchange with id"):
        bot.memory.set_status([pending.id], "approved")


def test_anonymous_users_and_users_over_the_hourly_limit_do_not_teach(store, memory, embedder, moderator):
    import_exchanges(memory, embedder, moderator, exchanges())
    bot = RetrievalBot(memory, moderator=moderator, embedder=embedder, temperature=0, learn_per_hour=2)
    anonymous, _ = ChatSession.start(store, "retrieval", bot=bot)
    say(anonymous, "hello")
    assert anonymous.send("something").meta["learned"] == {"skipped": "anonymous users do not teach"}
    session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="eager")
    say(session, "hello")
    outcomes = [session.send(f"lesson number {i}").meta["learned"] for i in range(4)]
    assert [o.get("skipped") for o in outcomes] == [None, None, "rate limit", "rate limit"]


def test_attack_toxic_and_spammed_replies_never_reach_another_user(store, memory, embedder, moderator):
    """Tay, replayed: one user teaches 1,000 toxic replies, another 1,000 times the same spam."""
    import_exchanges(memory, embedder, moderator, exchanges())
    bot = RetrievalBot(memory, moderator=moderator, embedder=embedder, min_teachers=3, learn_per_hour=1000)
    toxic = ["you are a worthless piece of shit", "go kill yourself", "f.u.c.k you", "I will find you and kill you"]
    spam = "BUY CHEAP WATCHES AT SPAM DOT EXAMPLE"
    troll, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="troll")
    spammer, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="spammer")
    prompts = [turns[0] for turns in CONVERSATIONS]
    for i in range(500):
        say(troll, prompts[i % len(prompts)])
        say(troll, toxic[i % len(toxic)])
        say(spammer, prompts[i % len(prompts)])
        say(spammer, spam)
    assert not any("shit" in row.reply or "kill" in row.reply for row in memory.review(limit=10_000))
    victim, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="victim")
    heard = [say(victim, prompt) for prompt in prompts * 3]
    assert spam not in heard
    assert not any(moderator.check(text).allowed is False for text in heard)
    assert memory.stats().get("quarantined", 0) >= 1  # the spam waits for a second teacher that never comes


def test_forgetting_a_user_removes_everything_they_taught(store, bot):
    for user in ("ann", "bob"):
        session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id=user)
        say(session, "do you like dogs")
        session.send(f"only {user} says this")
    shared, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="ann")
    say(shared, "where do you live")
    shared.send("taught by both")
    other, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="bob")
    say(other, "where do you live")
    other.send("taught by both")
    teachings, removed = bot.memory.forget_user("ann")
    assert (teachings, removed) == (2, 1)
    replies = {row.reply for row in bot.memory.review(status="quarantined", limit=100)}
    replies |= {row.reply for row in bot.memory.review(status="approved", limit=1000)}
    assert "only ann says this" not in replies and "only bob says this" in replies and "taught by both" in replies


def test_the_index_is_saved_next_to_the_store_and_catches_up_after_a_restart(tmp_path, embedder, moderator):
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    memory = RetrievalMemory(Store(url), "default")
    import_exchanges(memory, embedder, moderator, exchanges())
    folder = index_folder(memory.store, "default")
    assert folder == tmp_path / "chat.retrieval" / "default"
    assert (folder / "vectors.usearch").exists()
    close_all()
    # Meanwhile another process approves something the saved index has not seen.
    memory.teach(
        ["hi there"],
        "a late addition",
        user_id="admin",
        conversation_id=None,
        vector=embedder.encode(["hi there"])[0],
        toxicity=0.0,
        min_teachers=1,
    )
    restarted = ServedIndex(RetrievalMemory(Store(url), "default"), embedder, folder)
    assert len(restarted.index) == len(exchanges()) + 1
    restarted.close()


def test_lost_index_files_are_rebuilt_from_the_store(tmp_path, embedder, moderator):
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    memory = RetrievalMemory(Store(url), "default")
    import_exchanges(memory, embedder, moderator, exchanges())
    close_all()
    folder = index_folder(memory.store, "default")
    (folder / "vectors.usearch").unlink()
    rebuilt = ServedIndex(memory, embedder, folder)
    assert len(rebuilt.index) == len(exchanges())
    assert rebuilt.search(["do you like dogs"], k=1)
    rebuilt.close()


def test_a_second_process_on_the_same_collection_keeps_its_own_copy(tmp_path, embedder, moderator):
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    memory = RetrievalMemory(Store(url), "default")
    import_exchanges(memory, embedder, moderator, exchanges())
    first = served_index(memory, embedder)
    second = ServedIndex(memory, embedder, index_folder(memory.store, "default"))
    assert first.index.persist and not second.index.persist
    assert len(second.index) == len(first.index)
    second.close()


def test_a_resumed_conversation_draws_the_same_replies(store, memory, embedder, moderator):
    import_exchanges(memory, embedder, moderator, exchanges())
    bot = RetrievalBot(memory, moderator=moderator, embedder=embedder, temperature=1.0, learn=False)
    lines = ["hello how are you", "what is your favourite movie", "do you like dogs", "hello how are you"]
    session, _ = ChatSession.start(store, "retrieval", bot=bot, user_id="ann")
    first = say(session, lines[0])
    resumed = ChatSession.resume(store, session.conversation_id, bot=bot)
    replies = [first, *[say(resumed, line) for line in lines[1:]]]
    assert replies == _replay(bot, session.conversation_id, lines)


def _replay(bot, conversation_id, lines):
    """What the bot says to ``lines`` in one uninterrupted dialogue with the same id."""
    from rejoinder.dialogue import Dialogue, Message

    dialogue = Dialogue(bot="retrieval", conversation_id=conversation_id, user_id="ann")
    out = []
    for line in lines:
        dialogue.messages.append(Message("user", line))
        reply = bot.respond(dialogue)
        dialogue.messages.append(Message("assistant", reply.text, meta=reply.meta))
        out.append(reply.text)
    return out


def test_bad_options_are_refused_by_name(memory, embedder, moderator):
    with pytest.raises(ConfigError, match="temperature"):
        RetrievalBot(memory, moderator=moderator, embedder=embedder, temperature=-1)


def test_train_command_imports_a_jsonl_corpus_and_reports(tmp_path):
    from typer.testing import CliRunner

    from rejoinder.cli import app

    corpus = tmp_path / "talk.jsonl"
    corpus.write_text("\n".join(json.dumps({"turns": turns}) for turns in CONVERSATIONS) + "\n")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = CliRunner().invoke(
        app, ["train", "retrieval", "--corpus", str(corpus), "--embedder", "hashing", "--db", db]
    )
    assert result.exit_code == 0, result.output
    assert f"now serves {len(exchanges())} exchanges" in result.stdout
    stats = CliRunner().invoke(app, ["retrieval", "stats", "--db", db])
    assert f"approved: {len(exchanges())}" in stats.stdout
    close_all()


def test_train_command_reports_a_broken_corpus_file_with_its_line(tmp_path):
    from typer.testing import CliRunner

    from rejoinder.cli import app

    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"turns": ["a", "b"]}\n{"turns": [oops]}\n')
    result = CliRunner().invoke(
        app,
        ["train", "retrieval", "--corpus", str(corpus), "--embedder", "hashing", "--db", f"sqlite:///{tmp_path}/r.db"],
    )
    assert result.exit_code == 2
    assert f"{corpus}:2:" in result.stderr
    close_all()


@pytest.mark.slow
def test_minilm_bot_holds_a_sensible_chitchat_out_of_the_box(tmp_path):
    """The real default: MiniLM embeddings over the first 5,000 chitchat exchanges."""
    from rejoinder.bots.retrieval.train import embed_missing, import_corpus

    memory = RetrievalMemory(Store(f"sqlite:///{tmp_path / 'r.db'}"), "default")
    model = shared_embedder("minilm")
    import_corpus(memory, Moderator(), "chitchat", limit=5000)
    embed_missing(memory, model)
    bot = RetrievalBot(memory, moderator=Moderator(), embedder=model, temperature=0)
    session, _ = ChatSession.start(memory.store, "retrieval", bot=bot, user_id="ann")
    reply = session.send("Hi! How are you doing today?")
    assert reply.confidence > 0.6
    assert Path(index_folder(memory.store, "default"), "vectors.usearch").exists()
    close_all()


def test_a_stored_model_score_spares_the_model_but_not_the_word_lists_and_rules():
    moderator = Moderator()
    assert not moderator.check("what a lovely day", model_score=0.99).allowed
    assert not moderator.check("f u c k you", model_score=0.0).allowed
    assert moderator.check("what a lovely day", model_score=0.1).allowed
