"""The store keeps every answered turn, refuses lost updates and migrates itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text

from rejoinder.dialogue import Message
from rejoinder.errors import ConcurrentUpdate, ConversationNotFound, InvalidMessage, MessageNotFound, StoreError
from rejoinder.store import Store, default_url


def test_a_new_database_is_migrated_to_the_newest_revision(store):
    assert store.revision() == store.head()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_default_database_lives_in_the_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("REJOINDER_HOME", str(tmp_path / "h"))
    assert default_url() == f"sqlite:///{tmp_path / 'h' / 'rejoinder.db'}"
    monkeypatch.setenv("REJOINDER_DB_URL", "sqlite:///elsewhere.db")
    assert default_url() == "sqlite:///elsewhere.db"


def test_turns_round_trip_with_roles_bot_user_and_time(store):
    cid = store.create_conversation("eliza", bot_options={"script": "doctor"}, user_id="ann")
    version = store.append_turn(cid, [Message("assistant", "HELLO", bot="eliza")], {"limit": 1}, expected_version=0)
    store.append_turn(
        cid,
        [Message("user", "hi", user_id="ann"), Message("assistant", "GO ON", bot="eliza", meta={"rules": ["NONE/0"]})],
        {"limit": 2},
        expected_version=version,
    )
    dialogue = store.load_dialogue(cid)
    assert [(m.role, m.text, m.bot, m.user_id) for m in dialogue.messages] == [
        ("assistant", "HELLO", "eliza", None),
        ("user", "hi", None, "ann"),
        ("assistant", "GO ON", "eliza", None),
    ]
    assert dialogue.messages[2].meta == {"rules": ["NONE/0"]}
    assert dialogue.messages[0].created_at.tzinfo is not None
    assert dialogue.state == {"limit": 2} and dialogue.version == 2
    info = store.get_conversation(cid)
    assert (info.bot, info.bot_options, info.user_id, info.message_count) == ("eliza", {"script": "doctor"}, "ann", 3)


def test_a_stale_state_version_is_refused_and_nothing_is_written(store):
    cid = store.create_conversation("eliza")
    store.append_turn(cid, [Message("user", "one")], {"n": 1}, expected_version=0)
    with pytest.raises(ConcurrentUpdate):
        store.append_turn(cid, [Message("user", "two")], {"n": 2}, expected_version=0)
    dialogue = store.load_dialogue(cid)
    assert [m.text for m in dialogue.messages] == ["one"] and dialogue.state == {"n": 1}


def test_unknown_conversation_is_reported_by_id(store):
    with pytest.raises(ConversationNotFound, match="nope"):
        store.load_dialogue("nope")
    with pytest.raises(ConversationNotFound):
        store.append_turn("nope", [], {}, expected_version=0)


def test_conversations_are_listed_newest_first_and_by_user(store):
    a = store.create_conversation("eliza", user_id="u1")
    b = store.create_conversation("eliza", user_id="u2")
    store.append_turn(a, [Message("user", "later")], {}, expected_version=0)
    ids = [c.id for c in store.list_conversations()]
    assert ids.index(a) < ids.index(b)
    assert [c.id for c in store.list_conversations(user_id="u2")] == [b]


def test_deleting_a_conversation_removes_its_messages_and_state(store):
    cid = store.create_conversation("eliza")
    store.append_turn(cid, [Message("user", "x")], {"a": 1}, expected_version=0)
    store.delete_conversation(cid)
    with pytest.raises(ConversationNotFound):
        store.get_conversation(cid)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 0


def test_a_database_from_a_newer_rejoinder_is_refused_untouched(db_url):
    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match="revision 9999"):
        Store(db_url)


def test_a_bad_url_gets_a_clear_error():
    with pytest.raises(StoreError, match="not a database URL"):
        Store("not a url")


def test_an_unusable_database_path_gets_a_clear_error(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store(f"sqlite:///{tmp_path}/file.txt/sub/x.db")
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the database"):
        Store(f"sqlite:///{tmp_path}/garbage.db")


def test_a_killed_process_loses_no_answered_message(tmp_path, db_url):
    """Kill -9 a chat after it has answered; every answered turn is in the store."""
    env = {**os.environ, "REJOINDER_DB_URL": db_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rejoinder.cli", "chat", "--bot", "eliza"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin and proc.stdout
    opening = proc.stdout.readline()
    assert opening.strip()
    answered = []
    for line in ["I am sad", "My mother hates me", "You are a machine"]:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        answered.append(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.1)
    store = Store(db_url)
    [info] = store.list_conversations()
    texts = [m.text for m in store.load_dialogue(info.id).messages]
    assert texts == [
        opening.strip(),
        "I am sad",
        answered[0],
        "My mother hates me",
        answered[1],
        "You are a machine",
        answered[2],
    ]


def _old_database(db_url: str, revision: str) -> Store:
    from alembic import command

    old = Store(db_url, migrate=False)
    config = old._alembic_config()
    with old.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return old


def test_upgrading_an_old_database_keeps_its_conversations_as_single_branches(db_url):
    old = _old_database(db_url, "0003")
    now = "2026-11-30 10:00:00"
    with old.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO conversations (id, bot, bot_options, user_id, created_at, updated_at) "
                "VALUES ('c1', 'eliza', '{}', 'ann', :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO bot_states (conversation_id, bot, state, version, updated_at) "
                "VALUES ('c1', 'eliza', '{\"limit\": 2}', 1, :now)"
            ),
            {"now": now},
        )
        for seq, (role, words) in enumerate([("assistant", "HOW DO YOU DO"), ("user", "hello"), ("assistant", "HI")]):
            connection.execute(
                text(
                    "INSERT INTO messages (conversation_id, seq, role, text, created_at, meta) "
                    "VALUES ('c1', :seq, :role, :text, :now, '{}')"
                ),
                {"seq": seq + 1, "role": role, "text": words, "now": now},
            )
    old.close()
    upgraded = Store(db_url)
    assert upgraded.revision() == upgraded.head()
    dialogue = upgraded.load_dialogue("c1")
    assert [m.text for m in dialogue.messages] == ["HOW DO YOU DO", "hello", "HI"]
    first, second, third = dialogue.messages
    assert first.parent_id is None and second.parent_id == first.id and third.parent_id == second.id
    assert dialogue.state == {"limit": 2} and dialogue.version == 1
    assert upgraded.get_conversation("c1").active_leaf == third.id


def test_downgrading_keeps_the_active_branch_of_each_conversation(db_url):
    from alembic import command

    store = Store(db_url)
    cid = store.create_conversation("eliza")
    store.append_turn(cid, [Message("user", "hi"), Message("assistant", "one")], {"n": 1}, expected_version=0)
    first_reply = store.load_dialogue(cid).messages[-1]
    store.append_turn(cid, [Message("assistant", "two")], {"n": 2}, expected_version=1, parent_id=first_reply.parent_id)
    store.switch_branch(cid, first_reply.id, expected_version=2)
    config = store._alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    with store.engine.connect() as connection:
        texts = [row[0] for row in connection.execute(text("SELECT text FROM messages ORDER BY seq"))]
    assert texts == ["hi", "one"]


def test_every_migration_can_be_undone_and_redone(db_url):
    from alembic import command

    store = Store(db_url)
    config = store._alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        command.upgrade(config, "head")
    assert store.revision() == store.head()


def test_replies_to_one_prefix_are_siblings_and_the_active_branch_is_loaded(store):
    cid = store.create_conversation("eliza")
    store.append_turn(cid, [Message("user", "hi"), Message("assistant", "one")], {"n": 1}, expected_version=0)
    user, first = store.load_dialogue(cid).messages
    store.append_turn(cid, [Message("assistant", "two")], {"n": 2}, expected_version=1, parent_id=user.id)
    active = store.load_dialogue(cid)
    assert [m.text for m in active.messages] == ["hi", "two"] and active.state == {"n": 2}
    assert [m.text for m in store.siblings(first.id)] == ["one", "two"]
    assert store.load_dialogue(cid, leaf=first.id).state == {"n": 1}
    store.switch_branch(cid, first.id, expected_version=2)
    again = store.load_dialogue(cid)
    assert [m.text for m in again.messages] == ["hi", "one"] and again.state == {"n": 1} and again.version == 3
    assert len(store.message_tree(cid)) == 3


def test_feedback_is_recorded_against_a_message_with_its_user(store):
    cid = store.create_conversation("eliza")
    store.append_turn(cid, [Message("user", "hi"), Message("assistant", "one")], {}, expected_version=0)
    reply = store.load_dialogue(cid).messages[-1]
    store.add_feedback(reply.id, "rating", {"score": 1}, user_id="ann")
    store.add_feedback(reply.id, "comment", {"text": "nice"}, user_id="bob")
    found = store.feedback(conversation_id=cid)
    assert [(f.kind, f.value, f.user_id) for f in found] == [
        ("rating", {"score": 1}, "ann"),
        ("comment", {"text": "nice"}, "bob"),
    ]
    assert [f.user_id for f in store.feedback(message_id=reply.id, kind="comment")] == ["bob"]
    with pytest.raises(InvalidMessage, match="feedback kind 'stars'"):
        store.add_feedback(reply.id, "stars", {"n": 5})
    with pytest.raises(MessageNotFound):
        store.add_feedback("no-such-message", "rating", {"score": 1})
    store.delete_conversation(cid)
    assert store.feedback() == []


def test_a_unique_prefix_of_a_conversation_id_names_it(store):
    first = store.create_conversation("eliza")
    second = store.create_conversation("eliza")
    assert store.resolve_id(first[:8]) == first
    assert store.resolve_id(first[:8] + "…") == first
    assert store.resolve_id(second) == second
    with pytest.raises(ConversationNotFound):
        store.resolve_id("zzzzzzzz")
    with pytest.raises(ConversationNotFound):
        store.resolve_id(first[:2])


def test_a_history_finds_the_message_that_ends_it_greetings_and_system_prompts_aside(store):
    from rejoinder.dialogue import ROOT_DIGEST, chain_digest

    cid = store.create_conversation("eliza", user_id="key:ann")
    store.append_turn(cid, [Message("assistant", "How do you do.")], {}, expected_version=0)
    store.append_turn(
        cid, [Message("user", "I am sad"), Message("assistant", "Why are you sad?")], {}, expected_version=1
    )
    client = [("system", "be nice"), ("user", "I am sad"), ("assistant", "Why are you sad?")]
    digests = [ROOT_DIGEST]
    for role, said in client:
        digests.append(chain_digest(digests[-1], role, said))
    conversation, message, digest = store.find_history(digests[::-1], bot="eliza", user_id="key:ann")
    assert conversation == cid and digest == digests[-1]
    assert store.load_dialogue(cid).messages[-1].id == message
    assert store.find_history(digests[::-1], bot="eliza", user_id="key:bob") is None  # another key's
    assert store.find_history(digests[::-1], bot="bank", user_id="key:ann") is None
    shorter = store.find_history([chain_digest(digests[-1], "user", "no"), digests[2]], bot="eliza", user_id="key:ann")
    assert shorter[0] == cid and shorter[2] == digests[2]  # the longest stored prefix


def test_api_keys_keep_only_a_hash_and_stop_working_when_revoked(store):
    from sqlalchemy import select

    from rejoinder.store.models import ApiKey

    _, secret = store.create_key("ann", "admin")
    assert store.check_key(secret).name == "ann" and store.check_key(secret).role == "admin"
    assert store.check_key(secret + "x") is None
    with store.session() as s:
        assert secret not in str([tuple(r) for r in s.execute(select(ApiKey.__table__)).all()])
    with pytest.raises(InvalidMessage, match="exists already"):
        store.create_key("ann")
    with pytest.raises(InvalidMessage, match="role"):
        store.create_key("bob", "root")
    store.revoke_key("ann")
    assert store.check_key(secret) is None
    assert [k.name for k in store.list_keys()] == ["ann"] and store.list_keys()[0].revoked_at is not None


def test_processes_opening_a_new_database_at_once_migrate_it_once(db_url):
    code = "import sys; from rejoinder.store import Store; Store(sys.argv[1]).close()"
    starts = [subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE, text=True)
              for _ in range(4)]  # fmt: skip
    errors = [p.communicate(timeout=120)[1] for p in starts]
    assert [p.returncode for p in starts] == [0, 0, 0, 0], errors
    store = Store(db_url)
    assert store.revision() == store.head()
    store.close()
