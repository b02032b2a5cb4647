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
from rejoinder.errors import ConcurrentUpdate, ConversationNotFound, StoreError
from rejoinder.store import Store, default_url


def test_a_new_database_is_migrated_to_the_newest_revision(store):
    assert store.revision() == "0004_imports"


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


def test_upgrading_an_old_database_keeps_its_conversations(db_url):
    from alembic import command

    old = Store(db_url, migrate=False)
    config = old._alembic_config()
    with old.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    cid = old.create_conversation("eliza", user_id="ann")
    old.append_turn(cid, [Message("user", "hello")], {"limit": 2}, expected_version=0)
    old.close()
    upgraded = Store(db_url)
    assert upgraded.revision() == "0004_imports"
    assert [m.text for m in upgraded.load_dialogue(cid).messages] == ["hello"]


def test_every_migration_can_be_undone_and_redone(db_url):
    from alembic import command

    store = Store(db_url)
    config = store._alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        command.upgrade(config, "head")
    assert store.revision() == "0004_imports"


def test_the_import_progress_table_comes_with_0004_and_goes_with_its_downgrade(db_url):
    from alembic import command
    from sqlalchemy import inspect

    store = Store(db_url)
    assert "retrieval_imports" in inspect(store.engine).get_table_names()
    config = store._alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    assert "retrieval_imports" not in inspect(store.engine).get_table_names()
    assert "retrieval_exchanges" in inspect(store.engine).get_table_names()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    assert "retrieval_imports" in inspect(store.engine).get_table_names()
