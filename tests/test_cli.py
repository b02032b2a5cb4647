"""The command line: scripted chat on pipes, the interactive REPL, listings and clear errors."""

from __future__ import annotations

import io

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console
from typer.testing import CliRunner

from conftest import DOCTOR_1966
from rejoinder.chat import ChatSession
from rejoinder.cli import app, run_piped
from rejoinder.repl import run_repl

runner = CliRunner()


def chat(args: list[str], stdin: str, db_url: str):
    return runner.invoke(app, ["chat", "--db", db_url, *args], input=stdin)


def test_piped_chat_prints_the_opening_then_one_reply_per_line(db_url):
    result = chat(["--bot", "eliza"], "I am sad\nMy mother hates me\n", db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(lines)


@pytest.mark.skipif(not DOCTOR_1966.exists(), reason="../shared/data/eliza is not present")
def test_piped_chat_with_a_script_file_replays_the_1966_opening(db_url):
    result = chat(["--bot", "eliza", "--script", str(DOCTOR_1966)], "Men are all alike.\n", db_url)
    assert result.stdout.splitlines() == ["HOW DO YOU DO. PLEASE TELL ME YOUR PROBLEM", "IN WHAT WAY"]


def test_resuming_a_conversation_prints_no_new_opening(db_url):
    first = chat(["--bot", "eliza"], "I am sad\n", db_url)
    conversation_id = first.stderr.split("conversation:")[1].split()[0]
    second = chat(["--conversation", conversation_id], "I am sad\n", db_url)
    assert second.exit_code == 0
    assert len(second.stdout.splitlines()) == 1
    assert second.stdout != first.stdout.splitlines()[1] + "\n"  # the reassembly cycle moved on


def test_blank_lines_are_skipped_and_huge_lines_are_refused_with_their_line_number(db_url, monkeypatch):
    monkeypatch.setenv("REJOINDER_MAX_MESSAGE_CHARS", "50")
    result = chat(["--bot", "eliza"], "\nI am sad\n" + "x" * 60 + "\nI am happy\n", db_url)
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 3  # opening + two replies
    assert "line 3: the message is 60 characters long; the limit is 50" in result.stderr


def test_unknown_bot_is_an_error_listing_the_bots(db_url):
    result = chat(["--bot", "nobot"], "", db_url)
    assert result.exit_code == 2
    assert "unknown bot 'nobot'" in result.stderr and "eliza" in result.stderr


def test_malformed_script_error_names_file_line_and_column(tmp_path, db_url):
    script = tmp_path / "bad.txt"
    script.write_text("(HI)\nSTART\n(I ((0 I 0) (YOU 9)))\n(NONE ((0) (X)))\n")
    result = chat(["--bot", "eliza", "--script", str(script)], "", db_url)
    assert result.exit_code == 2
    assert f"{script}:3:18: reassembly of rule I refers to part 9" in result.stderr


def test_unknown_conversation_is_an_error(db_url):
    result = chat(["--conversation", "missing"], "", db_url)
    assert result.exit_code == 2 and "no conversation with id 'missing'" in result.stderr


def test_resume_refuses_options_that_would_change_the_bot(db_url):
    result = chat(["--conversation", "x", "--script", "y.txt"], "", db_url)
    assert result.exit_code == 2 and "drop --script" in result.stderr


def test_config_file_selects_bot_and_options(tmp_path, db_url):
    config = tmp_path / "bot.yaml"
    config.write_text("bot: eliza\noptions:\n  friendly: true\n")
    result = chat(["--config", str(config)], "I am sad\n", db_url)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line != line.upper() and line[-1] in ".?" for line in lines)


def test_bots_lists_the_registered_bots():
    result = runner.invoke(app, ["bots"])
    assert result.exit_code == 0 and "eliza-ru" in result.stdout


def test_conversations_and_history_show_what_was_said(db_url):
    first = chat(["--bot", "eliza", "--user", "ann"], "I am sad\n", db_url)
    conversation_id = first.stderr.split("conversation:")[1].split()[0]
    listing = runner.invoke(app, ["conversations", "--db", db_url, "--user", "ann"])
    assert conversation_id[:8] in listing.stdout
    history = runner.invoke(app, ["history", conversation_id, "--db", db_url])
    assert "ann: I am sad" in history.stdout


def test_db_command_reports_the_schema_revision(db_url):
    result = runner.invoke(app, ["db", "--db", db_url])
    assert "schema revision: 0004_imports" in result.stdout


def test_run_piped_stops_with_status_2_on_a_store_failure(store):
    session, opening = ChatSession.start(store, "eliza")
    store.delete_conversation(session.conversation_id)
    out, err = io.StringIO(), io.StringIO()
    assert run_piped(session, opening, io.StringIO("hello\n"), out, err) == 2
    assert "line 1: error: no conversation" in err.getvalue()


def test_repl_answers_explains_and_leaves_on_quit(store):
    session, opening = ChatSession.start(store, "eliza")
    console = Console(file=io.StringIO(), width=200, color_system=None)
    with create_pipe_input() as pipe:
        pipe.send_text("I am sad\n/explain\nMy mother hates me\n\n/id\n/quit\n")
        prompt = PromptSession(input=pipe, output=DummyOutput())
        run_repl(session, opening, console=console, prompt=prompt)
    shown = console.file.getvalue()
    assert opening.text in shown and "explain on" in shown and "rules=" in shown
    assert f"rejoinder chat --conversation {session.conversation_id}" in shown
    assert len(store.load_dialogue(session.conversation_id).messages) == 5


def test_repl_shows_the_last_messages_when_resuming(store):
    session, _ = ChatSession.start(store, "eliza")
    session.send("I am sad")
    resumed = ChatSession.resume(store, session.conversation_id)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    with create_pipe_input() as pipe:
        pipe.send_text("/quit\n")
        run_repl(resumed, None, console=console, prompt=PromptSession(input=pipe, output=DummyOutput()))
    assert "resuming" in console.file.getvalue() and "you> I am sad" in console.file.getvalue()
