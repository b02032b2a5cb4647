"""The ``rejoinder`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rejoinder.errors import RejoinderError

app = typer.Typer(
    help="Rejoinder: build, run and align chat bots of every generation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

BotOption = Annotated[str | None, typer.Option("--bot", "-b", help="Bot name (see `rejoinder bots`).")]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="SQLAlchemy database URL (default: $REJOINDER_DB_URL, else a SQLite file in the user data dir)."
    ),
]


def _fail(error: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RejoinderError(f"--option {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value
    return options


@app.command("bots")
def bots_command() -> None:
    """List the bots you can chat with."""
    from rejoinder.bots import available_bots

    table = Table("bot", "description", "options", box=None, header_style="bold")
    for name, entry in available_bots().items():
        table.add_row(name, entry.description, ", ".join(entry.options()))
    console.print(table)


@app.command("chat")
def chat_command(
    bot: BotOption = None,
    conversation: Annotated[
        str | None, typer.Option("--conversation", "-c", help="Resume this stored conversation where it stopped.")
    ] = None,
    script: Annotated[
        Path | None, typer.Option("--script", help="ELIZA script file in the 1966 format (for ELIZA bots).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Bot configuration file (YAML, JSON or TOML).")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="Bot option KEY=VALUE (repeatable).")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="User id recorded with your messages.")] = None,
    db: DbOption = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show why the bot answered as it did.")] = False,
) -> None:
    """Chat with a bot in the terminal (or, with piped input, one reply per input line)."""
    from rejoinder.bots import load_bot_config
    from rejoinder.chat import ChatSession
    from rejoinder.store import Store

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        store = Store(db)
        if conversation:
            if script or config or option:
                raise RejoinderError(
                    "--conversation resumes a conversation with the bot it was started with; "
                    "drop --script, --config and --option"
                )
            session = ChatSession.resume(store, conversation)
            if bot and bot != session.dialogue.bot:
                raise RejoinderError(f"conversation {conversation} is with bot {session.dialogue.bot!r}, not {bot!r}")
            opening = None
        else:
            name, options = load_bot_config(config) if config else (bot or "eliza", {})
            if bot and config and bot != name:
                raise RejoinderError(f"--bot {bot!r} disagrees with the bot {name!r} named in {config}")
            options.update(_parse_options(option or []))
            if script is not None:
                options["script"] = str(script.expanduser().resolve())
            session, opening = ChatSession.start(store, name, options, user_id=user)
    except RejoinderError as exc:
        raise _fail(exc) from None

    if interactive:
        from rejoinder.repl import run_repl

        run_repl(session, opening, console=console, explain=explain)
        return
    err_console.print(f"conversation: {session.conversation_id}", highlight=False, markup=False)
    code = run_piped(session, opening, sys.stdin, sys.stdout, sys.stderr, explain=explain)
    raise typer.Exit(code)


def run_piped(
    session: Any, opening: Any, stdin: TextIO, stdout: TextIO, stderr: TextIO, *, explain: bool = False
) -> int:
    """One user message per input line, one reply per output line; blank lines are skipped.

    Returns the exit status: 0, or 1 if any line was refused (the reason goes to stderr with the
    line number; the other lines are still answered).
    """
    from rejoinder.errors import InvalidMessage

    status = 0
    if opening is not None:
        stdout.write(opening.text + "\n")
        stdout.flush()
    for number, line in enumerate(stdin, start=1):
        if not line.strip():
            continue
        try:
            reply = session.send(line.rstrip("\n"))
        except InvalidMessage as exc:
            stderr.write(f"line {number}: {exc}\n")
            status = 1
            continue
        except RejoinderError as exc:
            stderr.write(f"line {number}: error: {exc}\n")
            return 2
        stdout.write(reply.text + "\n")
        if explain:
            stderr.write(f"  {reply.meta}\n")
        stdout.flush()
    return status


@app.command("conversations")
def conversations_command(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's conversations.")] = None,
    db: DbOption = None,
) -> None:
    """List stored conversations, newest first."""
    from rejoinder.store import Store

    try:
        rows = Store(db).list_conversations(limit=limit, user_id=user)
    except RejoinderError as exc:
        raise _fail(exc) from None
    table = Table("id", "bot", "messages", "user", "last active (UTC)", box=None, header_style="bold")
    for row in rows:
        table.add_row(row.id, row.bot, str(row.message_count), row.user_id or "", f"{row.updated_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


@app.command("history")
def history_command(
    conversation: Annotated[str, typer.Argument(help="Conversation id.")],
    db: DbOption = None,
) -> None:
    """Print a stored conversation."""
    from rejoinder.store import Store

    try:
        dialogue = Store(db).load_dialogue(conversation)
    except RejoinderError as exc:
        raise _fail(exc) from None
    for message in dialogue.messages:
        who = message.bot or message.role if message.role == "assistant" else (message.user_id or message.role)
        console.print(f"[bold]{escape(str(who))}:[/] {escape(message.text)}", highlight=False)


@app.command("db")
def db_command(
    db: DbOption = None,
) -> None:
    """Show which database is used and migrate it to the newest schema."""
    from rejoinder.store import Store

    try:
        store = Store(db)
        console.print(f"database: {store.display_url}\nschema revision: {store.revision()}", highlight=False)
    except RejoinderError as exc:
        raise _fail(exc) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
