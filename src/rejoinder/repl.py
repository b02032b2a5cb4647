"""The interactive terminal chat: line editing and history (prompt_toolkit), colours (rich)."""

from __future__ import annotations

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from rich.console import Console
from rich.markup import escape

from rejoinder.chat import ChatSession
from rejoinder.dialogue import Reply, StreamingBot
from rejoinder.errors import InvalidMessage, RejoinderError
from rejoinder.terminal import sigint_calls

HELP = "/quit leaves (Ctrl-D too) · /explain toggles why the bot said it · /id shows the conversation id"
SHOWN_ON_RESUME = 6


def _history() -> History:
    from rejoinder.store import data_dir

    try:
        path = data_dir() / "chat_history"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


def _say(console: Console, bot: str, reply: Reply, explain: bool) -> None:
    console.print(f"[bold cyan]{escape(bot)}>[/] [cyan]{escape(reply.text)}[/]", highlight=False)
    if explain:
        _explain(console, reply)


def _stream(console: Console, session: ChatSession, bot: str, text: str, explain: bool) -> None:
    """Show the reply as it is produced; Ctrl-C stops it (what was said is kept, marked cancelled)."""
    try:
        turn = session.stream(text)
    except InvalidMessage as exc:
        console.print(f"[yellow]{escape(str(exc))}[/]", highlight=False)
        return
    console.print(f"[bold cyan]{escape(bot)}>[/] ", end="", highlight=False)
    try:
        with sigint_calls(turn.cancel):
            for piece in turn:
                console.print(piece, end="", style="cyan", highlight=False, markup=False, soft_wrap=True)
    except KeyboardInterrupt:  # a second Ctrl-C: the turn is already stored as far as it got
        turn.close()
    except RejoinderError as exc:
        console.print(f"\n[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return
    reply = turn.reply
    if reply is not None and reply.finish_reason == "cancelled":
        console.print(" [dim](stopped)[/]", highlight=False)
    elif reply is not None and reply.finish_reason == "length":
        console.print(" [dim](cut at the length limit)[/]", highlight=False)
    else:
        console.print()
    if explain and reply is not None:
        _explain(console, reply)


def _explain(console: Console, reply: Reply) -> None:
    if reply.meta:
        details = ", ".join(f"{k}={v}" for k, v in reply.meta.items() if v not in (None, "", []))
        console.print(f"  [dim]{escape(details)}[/]", highlight=False)


def run_repl(
    session: ChatSession,
    opening: Reply | None,
    *,
    console: Console,
    explain: bool = False,
    prompt: PromptSession[str] | None = None,
) -> None:
    """Chat until the user leaves; every answered turn is already stored when it is shown."""
    prompt = prompt or PromptSession(history=_history())
    bot = session.bot.name
    console.print(f"[bold]{bot}[/] · conversation [green]{session.conversation_id}[/]\n[dim]{HELP}[/]", highlight=False)
    if hasattr(session.bot, "describe"):
        console.print(f"[dim]{escape(session.bot.describe())}[/]", highlight=False)
    if opening is None and session.dialogue.messages:
        console.print(f"[dim]… resuming; the last {SHOWN_ON_RESUME} messages:[/]")
        for message in session.dialogue.messages[-SHOWN_ON_RESUME:]:
            if message.role == "assistant":
                _say(console, bot, Reply(message.text), False)
            else:
                console.print(f"[bold green]you>[/] {escape(message.text)}", highlight=False)
    elif opening is not None:
        _say(console, bot, opening, explain)

    while True:
        try:
            text = prompt.prompt([("ansibrightgreen bold", "you> ")])
        except (EOFError, KeyboardInterrupt):
            break
        command = text.strip().lower()
        if command in {"/quit", "/exit", "/q"}:
            break
        if command == "/explain":
            explain = not explain
            console.print(f"[dim]explain {'on' if explain else 'off'}[/]")
            continue
        if command == "/id":
            console.print(session.conversation_id)
            continue
        if command in {"/help", "/?"}:
            console.print(f"[dim]{HELP}[/]")
            continue
        if not text.strip():
            continue
        if isinstance(session.bot, StreamingBot):
            _stream(console, session, bot, text, explain)
            continue
        try:
            reply = session.send(text)
        except KeyboardInterrupt:
            console.print("[dim](stopped; nothing was stored for this message)[/]", highlight=False)
            continue
        except InvalidMessage as exc:
            console.print(f"[yellow]{escape(str(exc))}[/]", highlight=False)
            continue
        except RejoinderError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            continue
        _say(console, bot, reply, explain)
    console.print(
        f"[dim]Saved. Resume with: rejoinder chat --conversation {session.conversation_id}[/]", highlight=False
    )
