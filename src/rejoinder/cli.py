"""The ``rejoinder`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

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


def _local_user() -> str:
    import getpass

    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local"


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RejoinderError(f"--option {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value
    return options


@app.command("bots")
def bots_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each bot's options as JSON Schema (types, defaults, who sets them).")
    ] = False,
) -> None:
    """List the bots you can chat with, and their options."""
    import json

    from rejoinder.bots import available_bots

    if as_json:
        schemas: dict[str, Any] = {}
        for name, entry in available_bots().items():
            try:
                schemas[name] = entry.schema()
            except ImportError as exc:
                schemas[name] = {"title": name, "x-unavailable": f"needs {exc.name} (see the README for its extra)"}
        sys.stdout.write(json.dumps(schemas, indent=2, ensure_ascii=False) + "\n")
        return
    table = Table("bot", "description", "options (* only the operator may set)", box=None, header_style="bold")
    for name, entry in available_bots().items():
        try:
            options = ", ".join(f"{o.name}{'' if o.client_settable else '*'}" for o in entry.options())
            table.add_row(name, entry.description, options)
        except ImportError as exc:
            table.add_row(name, f"[dim]unavailable: needs {exc.name} (see the README for its extra)[/]", "")
    console.print(table)
    console.print("[dim]`rejoinder bots --json` gives each option's type, default and help.[/]", highlight=False)


@app.command("chat")
def chat_command(
    bot: BotOption = None,
    conversation: Annotated[
        str | None,
        typer.Option("--conversation", "-c", help="Resume this stored conversation (its id or a unique prefix)."),
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
    user: Annotated[
        str | None, typer.Option("--user", help="User id recorded with your messages (default: local:<login name>).")
    ] = None,
    db: DbOption = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show why the bot answered as it did.")] = False,
    model: Annotated[
        str | None,
        typer.Option("--model", help="LLM bots: a local Hugging Face model directory, a GGUF file, or smollm2."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="LLM bots: auto, torch, llama.cpp or openai.")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="LLM bots: an OpenAI-compatible server, e.g. http://host:8000/v1.")
    ] = None,
) -> None:
    """Chat with a bot in the terminal (or, with piped input, one reply per input line). The default bot is ELIZA."""
    from rejoinder.bots import load_bot_config
    from rejoinder.chat import ChatSession
    from rejoinder.store import Store
    from rejoinder.terminal import INTERRUPTED, piped_stdin, prepare_in_terminal, run_piped

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        store = Store(db)
        if conversation:
            if script or config or option or model or backend or base_url:
                raise RejoinderError(
                    "--conversation resumes a conversation with the bot it was started with; "
                    "drop --script, --config, --option, --model, --backend and --base-url"
                )
            session = ChatSession.resume(store, store.resolve_id(conversation))
            if bot and bot != session.dialogue.bot:
                raise RejoinderError(f"conversation {conversation} is with bot {session.dialogue.bot!r}, not {bot!r}")
            opening = None
        else:
            name, options, where, base = bot or "eliza", {}, {}, None
            if config:
                loaded = load_bot_config(config)
                name, options, where, base = loaded.bot, loaded.options, loaded.where, loaded.base
                if bot and bot != name:
                    raise RejoinderError(f"--bot {bot!r} disagrees with the bot {name!r} named in {config}")
            for key, value in _parse_options(option or []).items():
                options[key], where[key] = value, "--option"
            for key, value in (("model", model), ("backend", backend), ("base_url", base_url)):
                if value is not None:
                    options[key], where[key] = value, f"--{key.replace('_', '-')}"
            if script is not None:
                options["script"], where["script"] = str(script.expanduser().resolve()), "--script"
            session, opening = ChatSession.start(
                store, name, options, user_id=user or _local_user(), where=where, base=base
            )
        if not prepare_in_terminal(session.bot, err_console):
            raise typer.Exit(INTERRUPTED)
    except RejoinderError as exc:
        raise _fail(exc) from None

    if interactive:
        from rejoinder.repl import run_repl

        run_repl(session, opening, console=console, explain=explain)
        return
    err_console.print(f"conversation: {session.conversation_id}", highlight=False, markup=False)
    if hasattr(session.bot, "describe"):
        err_console.print(
            f"{session.bot.name}: {session.bot.describe()}", highlight=False, markup=False, soft_wrap=True
        )
    code = run_piped(session, opening, piped_stdin(), sys.stdout, sys.stderr, explain=explain)
    raise typer.Exit(code)


@app.command("conversations")
def conversations_command(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's conversations.")] = None,
    db: DbOption = None,
) -> None:
    """List stored conversations, newest first (any unique prefix of an id names its conversation)."""
    from rejoinder.store import Store

    try:
        rows = Store(db).list_conversations(limit=limit, user_id=user)
    except RejoinderError as exc:
        raise _fail(exc) from None
    table = Table("id", "bot", "messages", "user", "last active (UTC)", box=None, header_style="bold")
    table.columns[0].no_wrap = True
    table.columns[0].min_width = 36
    for row in rows:
        table.add_row(row.id, row.bot, str(row.message_count), row.user_id or "", f"{row.updated_at:%Y-%m-%d %H:%M:%S}")
    console.print(table, crop=False, soft_wrap=True)


@app.command("history")
def history_command(
    conversation: Annotated[str, typer.Argument(help="Conversation id, or a unique prefix of it.")],
    db: DbOption = None,
) -> None:
    """Print a stored conversation (its active branch)."""
    from rejoinder.store import Store

    try:
        store = Store(db)
        dialogue = store.load_dialogue(store.resolve_id(conversation))
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


@app.command("serve")
def serve_command(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Server config (YAML): bots, host, keys.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int, typer.Option(help="Server processes sharing the port (and the database).")] = 1,
    no_keys: Annotated[
        bool, typer.Option("--no-keys", help="Serve without API keys even off loopback (anyone who reaches it).")
    ] = False,
    db: DbOption = None,
) -> None:
    """Serve every bot over HTTP: the OpenAI-compatible API at /v1, conversations at /api, docs at /docs."""
    import json
    import os

    try:
        import uvicorn

        import rejoinder.server  # noqa: F401 - FastAPI and sse-starlette come with the server extra
    except ImportError as exc:
        raise _fail(
            RejoinderError(f"the server needs the server extra: pip install 'rejoinder[server]' ({exc})")
        ) from None
    from rejoinder.server.config import ServerConfig, load_server_config

    try:
        settings = load_server_config(config) if config else ServerConfig()
        if host:
            settings.host = host
        if port:
            settings.port = port
        if no_keys:
            settings.keys = "off"
        settings.check()
    except RejoinderError as exc:
        raise _fail(exc) from None
    if db:
        os.environ["REJOINDER_DB_URL"] = db
    os.environ["REJOINDER_SERVER_CONFIG"] = str(config.resolve()) if config else ""
    os.environ["REJOINDER_SERVER_OVERRIDES"] = json.dumps({"host": settings.host, "port": settings.port,
                                                           "keys": settings.keys})  # fmt: skip
    keys = "required" if settings.keys_required() else "not required (loopback)" if settings.keys == "auto" else "off"
    console.print(
        f"Rejoinder on http://{settings.host}:{settings.port}  (OpenAI API: /v1, conversations: /api, docs: /docs; "
        f"API keys {keys}; bots: {', '.join(b.name for b in settings.bots) or 'every registered bot'})",
        highlight=False,
    )
    uvicorn.run("rejoinder.server.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=workers, log_level="info", timeout_graceful_shutdown=5)  # fmt: skip


keys_app = typer.Typer(help="API keys of the server: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Who the key is for (unique).")],
    role: Annotated[str, typer.Option("--role", help="user or admin.")] = "user",
    db: DbOption = None,
) -> None:
    """Create a key; its secret is printed once and only its hash is stored."""
    from rejoinder.store import Store

    try:
        info, secret = Store(db).create_key(name, role)
    except RejoinderError as exc:
        raise _fail(exc) from None
    console.print(f"key {escape(info.name)} ({info.role}): {secret}", highlight=False, soft_wrap=True)
    err_console.print("Keep it now: it is not shown again.", highlight=False)


@keys_app.command("list")
def keys_list(db: DbOption = None) -> None:
    """List keys (names, roles, prefixes; never the secrets)."""
    from rejoinder.store import Store

    try:
        keys = Store(db).list_keys()
    except RejoinderError as exc:
        raise _fail(exc) from None
    table = Table("name", "role", "prefix", "created (UTC)", "last used", "revoked", box=None, header_style="bold")
    for k in keys:
        table.add_row(k.name, k.role, k.prefix + "…", f"{k.created_at:%Y-%m-%d %H:%M}",
                      f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")  # fmt: skip
    console.print(table, crop=False, soft_wrap=True)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name (or id).")], db: DbOption = None) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from rejoinder.store import Store

    try:
        info = Store(db).revoke_key(name)
    except RejoinderError as exc:
        raise _fail(exc) from None
    console.print(f"revoked {escape(info.name)}", highlight=False)


arena_app = typer.Typer(help="The arena: anonymous battles between bots and their leaderboard.", no_args_is_help=True)
app.add_typer(arena_app, name="arena")


@arena_app.command("leaderboard")
def arena_leaderboard_command(
    rounds: Annotated[int, typer.Option(min=0, help="Bootstrap resamples behind the 95% intervals.")] = 200,
    daily_cap: Annotated[int, typer.Option(min=1, help="Votes counted per user per UTC day.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (same seed, same intervals).")] = 0,
    output: Annotated[Path | None, typer.Option("--json", help="Write the leaderboard as JSON here.")] = None,
    db: DbOption = None,
) -> None:
    """Bradley-Terry ratings of the voted battles with bootstrap 95% intervals and ranks, as Chatbot Arena's."""
    import json

    from rejoinder.arena import leaderboard
    from rejoinder.store import Store

    try:
        board = leaderboard(Store(db).battles(voted=True), rounds=rounds, daily_cap=daily_cap, seed=seed)
    except RejoinderError as exc:
        raise _fail(exc) from None
    console.print(board.table(), crop=False, soft_wrap=True)
    console.print(f"left out by the daily cap of {daily_cap} votes per user per UTC day: {board.capped}")
    if output:
        output.write_text(json.dumps(board.to_json(), indent=2))


train_app = typer.Typer(help="Train bots: import corpora, fit models.", no_args_is_help=True)
retrieval_app = typer.Typer(
    help="Look after the retrieval bot's memory: review, approve, forget.", no_args_is_help=True
)
app.add_typer(train_app, name="train")
app.add_typer(retrieval_app, name="retrieval")

CollectionOption = Annotated[str, typer.Option("--collection", help="Which retrieval memory (one per bot).")]


def _retrieval_memory(db: str | None, collection: str) -> Any:
    from rejoinder.bots.retrieval.memory import RetrievalMemory
    from rejoinder.store import Store

    return RetrievalMemory(Store(db), collection)


@train_app.command("retrieval")
def train_retrieval_command(
    corpus: Annotated[
        list[str] | None,
        typer.Option(
            "--corpus",
            help="chitchat (default), self-dialogue[=PATH], chatterbot[:LANGUAGE], or a .jsonl/.csv file (repeatable).",
        ),
    ] = None,
    collection: CollectionOption = "default",
    window: Annotated[int, typer.Option(help="Turns of context kept before each reply.")] = 3,
    limit: Annotated[int | None, typer.Option(help="Import at most this many exchanges per corpus.")] = None,
    embedder: Annotated[str, typer.Option(help="minilm (default) or hashing.")] = "minilm",
    threshold: Annotated[float, typer.Option(help="Toxicity score at which a reply is refused.")] = 0.8,
    policy: Annotated[Path | None, typer.Option(help="Moderation policy file (YAML/JSON).")] = None,
    db: DbOption = None,
) -> None:
    """Import corpora into the retrieval bot's memory (screened, deduplicated, indexed), then embed them.

    Resumes an import that was interrupted (Ctrl-C, a crash, kill -9) where it stopped; Ctrl-C
    stops before the next batch, and running the command again goes on from there.
    """
    import signal

    from rejoinder.bots.retrieval.bot import shared_embedder
    from rejoinder.bots.retrieval.served import served_index
    from rejoinder.bots.retrieval.train import corpus_key, embed_missing, import_corpus
    from rejoinder.dialogue import Cancel
    from rejoinder.moderation import Moderator

    cancel = Cancel()

    def interrupt(_signum: int, _frame: Any) -> None:
        if cancel.is_set:
            raise KeyboardInterrupt
        cancel.set()
        err_console.print("stopping after this batch (Ctrl-C again to quit at once)", highlight=False)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        memory = _retrieval_memory(db, collection)
        moderator = Moderator.from_policy_file(policy) if policy else Moderator(threshold=threshold)
        model = shared_embedder(embedder)
        served = served_index(memory, model)
        table = Table("corpus", "read", "new", "duplicates", "refused", "seconds", "per second", "import", box=None)
        notes: list[str] = []
        for spec in corpus or ["chitchat"]:
            record = memory.find_import(corpus_key(spec), window)
            with _progress_bar() as bar:
                task = bar.add_task(
                    escape(spec), total=record.total if record else None, completed=record.position if record else 0
                )
                report = import_corpus(
                    memory,
                    moderator,
                    spec,
                    window=window,
                    limit=limit,
                    cancel=cancel,
                    on_batch=served.sync,
                    progress=lambda event, _task=task, _bar=bar: _bar.update(
                        _task, completed=event.done, total=event.total
                    ),
                )
            state = "complete" if report.complete else "stopped" if report.stopped else "at the limit"
            table.add_row(
                spec,
                str(report.read),
                str(report.imported),
                str(report.duplicates),
                str(report.refused),
                f"{report.seconds:.1f}",
                f"{report.per_second:.0f}",
                state,
            )
            if report.resumed_from:
                notes.append(f"{spec}: resumed at {report.resumed_from}")
            if cancel.is_set:
                break
        console.print(table)
        for note in notes:
            console.print(note, highlight=False, soft_wrap=True)
        if not cancel.is_set:
            with _progress_bar() as bar:
                task = bar.add_task("embeddings", total=None)
                embedded = embed_missing(
                    memory,
                    model,
                    cancel=cancel,
                    on_batch=served.sync,
                    progress=lambda event, _task=task, _bar=bar: _bar.update(
                        _task, completed=event.done, total=event.total
                    ),
                )
            if embedded.embedded:
                console.print(f"computed the embeddings of {embedded.embedded} exchanges in {embedded.seconds:.1f} s")
        served.sync()
        served.save()
        console.print(f"collection {collection!r} now serves {memory.stats().get('approved', 0)} exchanges")
        if cancel.is_set:
            err_console.print("stopped: run the same command again to go on from here", highlight=False)
            raise typer.Exit(code=130)
    except RejoinderError as exc:
        raise _fail(exc) from None
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress_bar() -> Any:
    """A progress bar with the count, the total, the rate and the time left (on standard error)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")

    return Progress(
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


@retrieval_app.command("stats")
def retrieval_stats_command(collection: CollectionOption = "default", db: DbOption = None) -> None:
    """How many exchanges are served, quarantined and rejected; whether imports and embeddings are complete."""
    try:
        memory = _retrieval_memory(db, collection)
        stats = memory.stats()
        imports = memory.imports()
        unembedded = memory.count_unembedded()
    except RejoinderError as exc:
        raise _fail(exc) from None
    for status in ("approved", "quarantined", "rejected"):
        console.print(f"{status}: {stats.get(status, 0)}")
    resume = f"`rejoinder train retrieval --collection {collection}` (or the bot's next start)"
    for record in imports:
        where = f"import of {record.corpus} (window {record.window}):"
        counts = f"{record.imported} new, {record.duplicates} duplicates, {record.refused} refused"
        if record.complete:
            line = f"{where} complete, {record.position} exchanges read ({counts})"
        else:
            of = f" of {record.total}" if record.total is not None else ""
            line = f"{where} INCOMPLETE, {record.position}{of} exchanges read ({counts}); {resume} resumes it"
        console.print(line, highlight=False, soft_wrap=True)
    served = stats.get("approved", 0)
    if unembedded:
        line = (
            f"embeddings: INCOMPLETE, {unembedded} of {served} served exchanges have none yet (the bot answers "
            f"from the lexical index until they do); {resume} computes them"
        )
    else:
        line = f"embeddings: complete ({served} served exchanges)"
    console.print(line, highlight=False, soft_wrap=True)


@retrieval_app.command("review")
def retrieval_review_command(
    collection: CollectionOption = "default",
    status: Annotated[str, typer.Option(help="quarantined (default), rejected or approved.")] = "quarantined",
    limit: Annotated[int, typer.Option(help="How many, most taught first.")] = 50,
    db: DbOption = None,
) -> None:
    """List learned replies waiting in quarantine (with how many distinct users taught each)."""
    try:
        rows = _retrieval_memory(db, collection).review(status=status, limit=limit)
    except RejoinderError as exc:
        raise _fail(exc) from None
    table = Table("id", "teachers", "context", "reply", "toxicity", box=None, header_style="bold")
    for row in rows:
        table.add_row(str(row.id), str(row.teachers), escape(row.context[-1]), escape(row.reply), f"{row.toxicity:.2f}")
    console.print(table)


@retrieval_app.command("approve")
def retrieval_approve_command(
    ids: Annotated[list[int], typer.Argument(help="Exchange ids (see `rejoinder retrieval review`).")],
    collection: CollectionOption = "default",
    db: DbOption = None,
) -> None:
    """Serve these learned replies."""
    try:
        changed = _retrieval_memory(db, collection).set_status(ids, "approved")
    except RejoinderError as exc:
        raise _fail(exc) from None
    console.print(f"approved {changed}")


@retrieval_app.command("reject")
def retrieval_reject_command(
    ids: Annotated[list[int], typer.Argument(help="Exchange ids.")],
    collection: CollectionOption = "default",
    db: DbOption = None,
) -> None:
    """Never serve these replies (they stay recorded, so teaching them again does not revive them)."""
    try:
        changed = _retrieval_memory(db, collection).set_status(ids, "rejected")
    except RejoinderError as exc:
        raise _fail(exc) from None
    console.print(f"rejected {changed}")


@retrieval_app.command("forget")
def retrieval_forget_command(
    ids: Annotated[list[int] | None, typer.Argument(help="Exchange ids to delete.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Remove everything this user taught.")] = None,
    collection: CollectionOption = "default",
    db: DbOption = None,
) -> None:
    """Delete exchanges by id, or everything one user taught."""
    if bool(ids) == bool(user):
        raise _fail(RejoinderError("give exchange ids or --user ID (one of the two)"))
    try:
        memory = _retrieval_memory(db, collection)
        if user:
            teachings, exchanges = memory.forget_user(user)
            console.print(f"removed {teachings} teachings by {user} and {exchanges} exchanges only they taught")
        else:
            console.print(f"deleted {memory.forget(ids or [])}")
    except RejoinderError as exc:
        raise _fail(exc) from None


eval_app = typer.Typer(help="Evaluate bots and their parts.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("nlu")
def eval_nlu_command(
    dataset: Annotated[str, typer.Argument(help="banking77, snips, or a training file (YAML/JSON; split 80/20).")],
    classifier: Annotated[
        str, typer.Option(help="embedding (default), finetuned, or joint (one fine-tuned model for intents and slots).")
    ] = "embedding",
    epochs: Annotated[int | None, typer.Option(help="Epochs of the finetuned classifier.")] = None,
    slots: Annotated[bool, typer.Option(help="Also train and score the slot tagger.")] = True,
    output: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")] = None,
) -> None:
    """Intent accuracy, exact-span slot F1 and the commonest confusions, with the published anchors beside them."""
    import json

    from rejoinder.bots.frames.nlu.evaluate import evaluate

    options = {"epochs": epochs} if epochs and classifier in ("finetuned", "joint") else {}
    try:
        report = evaluate(dataset, classifier=classifier, classifier_options=options, slots=slots)
    except RejoinderError as exc:
        raise _fail(exc) from None
    anchor = report.as_dict()["anchor"] or {}
    table = Table("measure", "Rejoinder", "published anchor", box=None, header_style="bold")
    if report.intent_accuracy is not None:
        table.add_row(
            "intent accuracy (top-1)", f"{report.intent_accuracy:.2%}", _percent(anchor.get("intent_accuracy"))
        )
        table.add_row("below threshold (fallback)", _percent(report.fallback_rate), "")
        table.add_row("accuracy when confident", _percent(report.accuracy_when_confident), "")
    if report.slot is not None:
        table.add_row("slot F1 (exact span)", f"{report.slot['f1']:.2%}", _percent(anchor.get("slot_f1")))
        table.add_row("slot precision / recall", f"{report.slot['precision']:.2%} / {report.slot['recall']:.2%}", "")
    for part, seconds in report.train_seconds.items():
        table.add_row(f"train time, {part}", f"{seconds:.1f} s", "")
    console.print(f"[bold]{escape(report.dataset)}[/]: {report.train_size} train, {report.test_size} test")
    console.print(table)
    if anchor.get("source"):
        console.print(f"[dim]anchor: {escape(anchor['source'])}[/]")
    if report.confusions:
        confusion = Table("gold", "predicted", "count", box=None, header_style="bold")
        for gold, predicted, count in report.confusions:
            confusion.add_row(escape(gold), escape(predicted), str(count))
        console.print(confusion)
    if output:
        output.write_text(json.dumps(report.as_dict(), indent=2))


def _percent(value: float | None) -> str:
    return f"{value:.2%}" if value is not None else ""


@eval_app.command("dialogues")
def eval_dialogues_command(
    bot: Annotated[str, typer.Option("--bot", help="Example frame bot: bank or travel.")] = "bank",
    language: Annotated[str, typer.Option(help="Language of the bank bot: en or ru (travel is en).")] = "en",
    dialogues: Annotated[int, typer.Option("--dialogues", "-n", help="How many dialogues to simulate.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the simulated users (same seed, same dialogues).")] = 0,
    noise: Annotated[float, typer.Option(help="Typo rate: chance of a typo in each word of 4+ letters.")] = 0.03,
    embedder: Annotated[str, typer.Option(help="Embedder of the intent classifier: minilm or hashing.")] = "minilm",
    output: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")] = None,
    nlu: Annotated[
        str, typer.Option("--nlu", help="classic (trained classifier and tagger) or llm (a prompted language model).")
    ] = "classic",
    model: Annotated[
        str | None, typer.Option("--model", help="With --nlu llm: a model directory, a GGUF file, or smollm2.")
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="With --nlu llm: auto, torch, llama.cpp or openai.")
    ] = "auto",
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="With --nlu llm: an OpenAI-compatible server's URL.")
    ] = None,
) -> None:
    """Task success of a frame bot with simulated users (agenda-based, noisy, English or Russian)."""
    import json

    from rejoinder.bots.frames.bot import create_bank, create_travel
    from rejoinder.bots.frames.simulate import SimConfig, simulate
    from rejoinder.errors import ConfigError

    try:
        if bot not in ("bank", "travel"):
            raise ConfigError(f"--bot {bot!r}: expected bank or travel")
        if language not in ("en", "ru") or (bot == "travel" and language != "en"):
            raise ConfigError(f"--language {language!r}: the bank bot speaks en or ru, the travel bot en")
        if embedder not in ("minilm", "hashing"):
            raise ConfigError(f"--embedder {embedder!r}: expected minilm or hashing")
        if nlu not in ("classic", "llm"):
            raise ConfigError(f"--nlu {nlu!r}: expected classic or llm")
        if dialogues < 1:
            raise ConfigError("--dialogues: expected at least 1")
        if not 0.0 <= noise <= 1.0:
            raise ConfigError("--noise: expected a typo rate from 0 to 1")
        llm = {"nlu": nlu, "model": model or "", "backend": backend, "base_url": base_url or ""}
        understanding = embedder if nlu == "classic" else f"LLM NLU, {backend}"
        if bot == "bank":
            frame_bot = create_bank(language, embedder=embedder, **llm)
        else:
            frame_bot = create_travel(embedder=embedder, **llm)
        with console.status(f"preparing the {bot} bot ({understanding})") as status:
            frame_bot.prepare(lambda e: status.update(escape(f"preparing the {bot} bot: {e.stage}: {e.detail}")))
        with console.status(f"simulating {dialogues} dialogues") as status:
            report = simulate(
                frame_bot,
                n=dialogues,
                seed=seed,
                config=SimConfig(typos=noise),
                progress=lambda i, _: status.update(f"simulating dialogue {i + 1} of {dialogues}"),
            )
    except RejoinderError as exc:
        raise _fail(exc) from None
    table = Table("measure", "value", "goal", box=None, header_style="bold")
    table.add_row("dialogues", str(report.dialogues), "")
    table.add_row("task success rate", f"{report.success_rate:.2%}", "≥ 95%")
    table.add_row("mean turns", f"{report.mean_turns:.2f}", "")
    table.add_row("wrong submissions", str(report.wrong_submissions), "0")
    table.add_row("incomplete submissions", str(report.incomplete_submissions), "")
    console.print(
        f"[bold]{escape(bot)} ({escape(language)}, {escape(understanding)})[/], seed {seed}, typo rate {noise}"
    )
    console.print(table)
    frames = Table("frame", "dialogues", "success", "mean turns", "wrong", box=None, header_style="bold")
    for name, row in report.per_frame.items():
        frames.add_row(
            escape(name),
            str(row["dialogues"]),
            f"{row['success_rate']:.2%}",
            f"{row['mean_turns']:.2f}",
            str(row["wrong_submissions"]),
        )
    console.print(frames)
    if report.failure_reasons:
        reasons = Table("failure", "count", box=None, header_style="bold")
        for reason, count in report.failure_reasons.items():
            reasons.add_row(escape(reason), str(count))
        console.print(reasons)
    if output:
        output.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))


frames_app = typer.Typer(help="Slot frames of the goal-oriented bot: schema and checks.", no_args_is_help=True)
app.add_typer(frames_app, name="frames")


@frames_app.command("schema")
def frames_schema_command() -> None:
    """Print the JSON Schema of slot frames."""
    import json

    from rejoinder.bots.frames.schema import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@frames_app.command("check")
def frames_check_command(
    paths: Annotated[list[Path], typer.Argument(help="Frame files (JSON/YAML) or domain files (domain.yaml).")],
) -> None:
    """Check frames or whole domains without starting a bot; errors name the file, pointer and reason."""
    from rejoinder.bots.frames.domain import load_domain
    from rejoinder.bots.frames.nlu.data import load_nlu_data
    from rejoinder.bots.frames.schema import load_frame

    try:
        for path in paths:
            if path.name.startswith("domain."):
                domain = load_domain(path)
                if domain.nlu_path is not None:
                    load_nlu_data(domain.nlu_path)
                console.print(f"{escape(str(path))}: ok ({len(domain.frames)} frames)")
            else:
                frame = load_frame(path)
                console.print(f"{escape(str(path))}: ok (frame {escape(frame.name)}, {len(frame.slots)} slots)")
    except RejoinderError as exc:
        raise _fail(exc) from None


@app.command("prompt")
def prompt_command(
    template: Annotated[
        str,
        typer.Argument(
            metavar="TEMPLATE", help="A template file (YAML) or a shipped template's name, e.g. intent-zero-shot."
        ),
    ],
    source: Annotated[
        str,
        typer.Argument(metavar="INPUT", help="Records, one JSON object per line; or banking77 / snips (test split)."),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the completions here as JSONL (default: stdout).")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="A local Hugging Face model directory, a GGUF file, or smollm2.")
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, torch, llama.cpp or openai.")] = "auto",
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="An OpenAI-compatible server, e.g. http://host:8000/v1.")
    ] = None,
    shots: Annotated[
        int | None, typer.Option("--shots", help="How many demonstrations (0: zero-shot; default: the template's).")
    ] = None,
    examples: Annotated[
        Path | None,
        typer.Option("--examples", help="Labelled JSONL to sample the demonstrations from (balanced across labels)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only this many records (banking77/snips: sampled; default 200).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampling of records and demonstrations.")] = 0,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads of the torch/llama.cpp backends (default: all).")
    ] = None,
    evaluate: Annotated[
        bool, typer.Option("--eval", help="The records are labelled: score the answers instead of printing them.")
    ] = False,
    report_path: Annotated[
        Path | None, typer.Option("--json", help="With --eval: write the report as JSON here.")
    ] = None,
) -> None:
    """Prompt a language model with a template (zero- or few-shot), or score a template on labelled data."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rejoinder.llm import prompting

    if report_path is not None and not evaluate:
        raise _fail(RejoinderError("--json writes the report of --eval; add --eval"))
    try:
        job = prompting.prepare_job(
            template, source, shots=shots, examples=examples, limit=limit, seed=seed, evaluate=evaluate
        )
        for note in job.notes:
            err_console.print(f"[dim]{escape(note)}[/]", highlight=False)
        with err_console.status("loading the model"):
            llm = prompting.open_backend(backend, model=model, base_url=base_url, threads=threads)
    except RejoinderError as exc:
        raise _fail(exc) from None
    sink = output.open("w", encoding="utf-8") if output and not evaluate else sys.stdout
    try:
        with Progress(
            TextColumn(f"[bold]{escape(job.template.name)}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task("prompt", total=len(job.records))

            def progress(done: int, total: int | None) -> None:
                bar.update(task, completed=done)

            if not evaluate:
                for completion in prompting.run_template(llm, job.template, job.records, progress=progress):
                    sink.write(json.dumps(completion.as_record(job.template.classifies), ensure_ascii=False) + "\n")
                    sink.flush()
                return
            report = prompting.evaluate_template(llm, job.template, job.records, job.label_field, progress=progress)
    except RejoinderError as exc:
        raise _fail(exc) from None
    finally:
        llm.close()
        if sink is not sys.stdout:
            sink.close()
    report.dataset = job.dataset or Path(source).name
    report.reference = job.reference
    if output:
        with output.open("w", encoding="utf-8") as handle:
            for completion in report.completions:
                handle.write(json.dumps(completion.as_record(job.template.classifies), ensure_ascii=False) + "\n")
    _print_prompt_report(report)
    if report_path:
        report_path.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))


def _print_prompt_report(report: Any) -> None:
    shots = f"{report.shots}-shot" if report.shots else "zero-shot"
    console.print(
        f"[bold]{escape(report.template)}[/] ({shots}) on [bold]{escape(str(report.dataset))}[/] "
        f"with {escape(report.model)}",
        highlight=False,
    )
    table = Table("measure", "value", box=None, header_style="bold")
    table.add_row("examples", str(report.examples))
    table.add_row("accuracy", f"{report.accuracy:.2%}")
    table.add_row("invalid answers", _percent(report.invalid_rate) or "n/a (no choices)")
    table.add_row("seconds", f"{report.seconds:.1f}")
    table.add_row("seconds per example", f"{report.seconds_per_example:.2f}")
    if report.tokens_per_second is not None:
        table.add_row("tokens/s (completions)", f"{report.tokens_per_second:.1f}")
    console.print(table)
    reference = report.reference or {}
    if reference.get("nlu"):
        nlu = reference["nlu"]
        console.print(f"[dim]reference: {nlu['intent_accuracy']:.2%} intent accuracy, {escape(nlu['source'])}[/]")
    if reference.get("published"):
        published = reference["published"]
        console.print(
            f"[dim]published: {published['intent_accuracy']:.2%} ({escape(published['source'])})[/]", highlight=False
        )
    if report.confusions:
        confusion = Table("gold", "predicted", "count", box=None, header_style="bold")
        for gold, predicted, count in report.confusions:
            confusion.add_row(escape(gold), escape(predicted), str(count))
        console.print(confusion)


data_app = typer.Typer(
    help="Alignment data: read, inspect and curate prompts, demonstrations and rankings.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
SourcesArgument = Annotated[
    list[str], typer.Argument(help="oasst, hh, store, or a .jsonl/.json/.csv file in a TRL format.", show_default=False)
]
FormatOption = Annotated[
    str | None,
    typer.Option("--format", help="Force a file's format: messages, prompt_completion, preference or ranking."),
]
SkipInvalidOption = Annotated[
    bool, typer.Option("--skip-invalid", help="Skip bad records (counted in the report) instead of stopping.")
]


@data_app.command("curate")
def data_curate_command(
    source: Annotated[
        list[str],
        typer.Option("--source", "-s", help="oasst, hh, store or a .jsonl/.json/.csv file; repeat for several."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the split JSONL files and the report.")],
    max_per_user: Annotated[int, typer.Option(help="At most this many distinct prompts per user id.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the per-user cap and the split.")] = 0,
    near_dup_threshold: Annotated[
        float, typer.Option(help="Near duplicates: prompt and completion Jaccard (word 3-grams) at least this.")
    ] = 0.8,
    split: Annotated[str, typer.Option(help="Train, validation and test fractions, by records.")] = "0.8,0.1,0.1",
    ner: Annotated[bool, typer.Option("--ner/--no-ner", help="Mask person names with spaCy/natasha NER.")] = True,
    skip_invalid: SkipInvalidOption = False,
    include_synthetic: Annotated[
        bool,
        typer.Option(
            "--include-synthetic", help="Keep OpenAssistant demonstrations that end in a model-written reply."
        ),
    ] = False,
    format: FormatOption = None,
    db: DbOption = None,
) -> None:
    """PII masking, deduplication, a per-user cap, use-case tags and a split by user, with a report."""
    from rejoinder.align.data import CurateConfig, curate, report_tables

    try:
        fractions = tuple(float(part) for part in split.split(","))
    except ValueError:
        raise _fail(RejoinderError(f"--split {split!r}: expected three numbers such as 0.8,0.1,0.1")) from None
    config = CurateConfig(
        sources=source,
        out=out,
        max_per_user=max_per_user,
        seed=seed,
        near_dup_threshold=near_dup_threshold,
        fractions=fractions,  # type: ignore[arg-type]
        ner=ner,
        skip_invalid=skip_invalid,
        include_synthetic=include_synthetic,
        db=db,
        format=format,  # type: ignore[arg-type]
    )
    try:
        with err_console.status("curating") as status:
            result = curate(config, on_step=lambda name: status.update(name))
    except RejoinderError as exc:
        raise _fail(exc) from None
    for table in report_tables(result.report):
        console.print(table)
    for warning in result.report.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    console.print(f"wrote {', '.join(result.report.files)} to {escape(str(out))}")


@data_app.command("stats")
def data_stats_command(
    sources: SourcesArgument,
    format: FormatOption = None,
    skip_invalid: SkipInvalidOption = False,
    db: DbOption = None,
) -> None:
    """Records by format, users, ranking sizes and what each source left out."""
    from collections import Counter

    from rejoinder.datasets.rlhf_sources import SourceStats, read_source

    table = Table("source", "records", "users", "K-way rankings (K: groups)", "left out", header_style="bold")
    for spec in sources:
        stats = SourceStats(spec)
        try:
            records = list(read_source(spec, stats=stats, skip_invalid=skip_invalid, format=format, db=db))  # type: ignore[arg-type]
        except RejoinderError as exc:
            raise _fail(exc) from None
        sizes = Counter(r.k for r in records if r.format == "ranking")  # type: ignore[union-attr]
        left = [f"{v} {k}" for k, v in stats.left_out.items()] + (
            [f"{len(stats.invalid)} invalid"] if stats.invalid else []
        )
        table.add_row(
            escape(spec),
            ", ".join(f"{v} {k}" for k, v in stats.records.items()) or "none",
            str(len({r.user_id for r in records if r.user_id})),
            ", ".join(f"{k}: {n}" for k, n in sorted(sizes.items())),
            escape("; ".join(left)) or "none",
        )
    console.print(table)


@data_app.command("tagger")
def data_tagger_command() -> None:
    """The use-case tagger's accuracy on its labelled prompts, overall and per class."""
    from rejoinder.align.usecase import USE_CASES, evaluate, labelled_set, oasst_labelled

    sets = {"ours, test": evaluate(labelled_set(), split="test")}
    try:
        oasst = oasst_labelled()
    except RejoinderError as exc:
        err_console.print(f"[yellow]warning:[/] the OpenAssistant labels need the shared data: {escape(str(exc))}")
    else:
        sets["OpenAssistant, held out"] = evaluate(oasst, split="test")
        sets["OpenAssistant, all 100"] = evaluate(oasst)
    table = Table("use case", *(f"{name} P / R (n)" for name in sets), header_style="bold")

    def cell(c: dict[str, float]) -> str:
        if not c["support"] and not c["predicted"]:
            return "-"
        precision = f"{c['precision']:.2f}" if c["predicted"] else "-"
        recall = f"{c['recall']:.2f}" if c["support"] else "-"
        return f"{precision} / {recall} ({c['support']:.0f})"

    for case in USE_CASES:
        table.add_row(case, *(cell(result.per_class[case]) for result in sets.values()))
    table.add_row("accuracy", *(f"{r.accuracy:.1%} of {r.n}" for r in sets.values()))
    console.print(table)


@data_app.command("show")
def data_show_command(
    source: Annotated[str, typer.Argument(help="oasst, hh, store, or a .jsonl/.json/.csv file.")],
    limit: Annotated[int, typer.Option(help="How many records.")] = 3,
    format: FormatOption = None,
    db: DbOption = None,
) -> None:
    """The first records of a source, as the JSON lines curation writes."""
    import json
    from itertools import islice

    from rejoinder.datasets.rlhf_sources import read_source

    try:
        for record in islice(read_source(source, format=format, db=db), max(limit, 0)):  # type: ignore[arg-type]
            print(json.dumps(record.to_json(), ensure_ascii=False))
    except RejoinderError as exc:
        raise _fail(exc) from None


@data_app.command("export")
def data_export_command(
    kind: Annotated[str, typer.Argument(help="preferences, sft or rankings.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .jsonl file to write (replaced atomically).")],
    since: Annotated[
        str | None, typer.Option(help="Only feedback and votes given at or after this date or time (UTC).")
    ] = None,
    db: DbOption = None,
) -> None:
    """The web chat's feedback and the arena's votes as training data: preferences (arena votes,
    regenerate choices) or rankings for `train reward` and `train rl`, thumbs-up replies for `train sft`."""
    from rejoinder.datasets.feedback import EXPORT_KINDS, SOURCES, export, parse_since
    from rejoinder.store import Store

    try:
        if kind not in EXPORT_KINDS:
            raise RejoinderError(f"export {kind!r}: expected one of {', '.join(EXPORT_KINDS)}")
        after = parse_since(since)
        store = Store(db)
        try:
            summary = export(kind, store, out, since=after)
        finally:
            store.close()
    except RejoinderError as exc:
        raise _fail(exc) from None
    table = Table("", "from / why", "count", header_style="bold")
    for source, n in summary.exported.items():
        table.add_row("exported", SOURCES.get(source, source), str(n))
    for reason, n in summary.skipped.most_common():
        table.add_row("skipped", escape(reason), str(n))
    console.print(table)
    if not summary.total:
        err_console.print(f"[yellow]warning:[/] no {kind} to export: {escape(str(out))} is empty", highlight=False)
    step = "sft" if kind == "sft" else "reward"
    console.print(f"wrote {summary.total} record{'' if summary.total == 1 else 's'} to {escape(str(out))}  "
                  f"(rejoinder train {step} --data {escape(str(out))})", highlight=False)  # fmt: skip


def config_command(cls: type, run: Any, name: str, help: str, parent: typer.Typer) -> None:
    """Add ``rejoinder <parent> <name>`` taking ``--config FILE`` and one flag per field of ``cls``.

    Flags override the file; the file overrides the dataclass defaults. Each flag's help is the
    field's help, so the YAML keys, the flags and their documentation are declared only once.
    """
    import dataclasses
    import inspect

    from rejoinder.align.config import _plain, field_types

    kinds = field_types(cls)
    parameters = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[Path | None, typer.Option("--config", "-c", help="A YAML file of these settings.")],
        )
    ]
    for f in dataclasses.fields(cls):
        plain, _ = _plain(kinds[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        text = f"{f.metadata.get('help', '')} [default: {shown}]"
        if plain is bool:
            option = typer.Option(f"{flag}/--no-{f.name.replace('_', '-')}", help=text, show_default=False)
            annotation: Any = Annotated[bool | None, option]
        elif typing_origin(plain) is list:
            option = typer.Option(flag, help=text + " (comma-separated)", show_default=False)
            annotation = Annotated[str | None, option]
        else:
            option = typer.Option(flag, help=text, show_default=False)
            annotation = Annotated[plain | None, option]
        parameters.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        )

    def command(**values: Any) -> None:
        from rejoinder.align.config import load_config

        path = values.pop("config")
        try:
            loaded = load_config(cls, path, {k: v for k, v in values.items() if v is not None})
        except RejoinderError as exc:
            raise _fail(exc) from None
        run(loaded)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__doc__ = help
    parent.command(name, help=help)(command)


def typing_origin(kind: Any) -> Any:
    import typing

    return typing.get_origin(kind)


def _print_log(entry: dict[str, Any]) -> None:
    """One line per logged step of a training run (and the sample replies after each evaluation)."""
    if "samples" in entry:
        for sample in entry["samples"]:
            console.print(f"  [dim]{escape(sample['prompt'])}[/] → {escape(sample['reply'][:200])}", highlight=False)
        return
    shown = {k: v for k, v in entry.items() if k not in ("step", "epoch") and isinstance(v, int | float)}
    keep = ("loss", "eval_loss", "learning_rate", "grad_norm", "accuracy", "eval_accuracy", "mean_token_accuracy")
    parts = [f"{k} {v:.4g}" for k, v in shown.items() if k in keep or k.startswith("eval_acc")]
    if parts:
        console.print(f"step {entry['step']:>5} epoch {entry['epoch']:.2f}  " + "  ".join(parts), highlight=False)


def _run_sft(config: Any) -> None:
    from rejoinder.align.sft import train_sft

    try:
        result = train_sft(config, on_log=_print_log)
    except RejoinderError as exc:
        raise _fail(exc) from None
    report = result.report
    table = Table("measure", "value", box=None, header_style="bold")
    for key in (
        "model",
        "method",
        "chat_template",
        "data",
        "train_demonstrations",
        "eval_demonstrations",
        "truncated",
        "steps",
        "epochs",
        "train_loss",
        "eval_loss",
        "eval_perplexity",
        "seconds",
        "seconds_per_epoch",
    ):
        value = report.get(key)
        table.add_row(key.replace("_", " "), f"{value:.4g}" if isinstance(value, float) else escape(str(value)))
    if report.get("reused"):
        console.print("[dim]this run folder already holds the model for this config: nothing to train[/]")
    console.print(table)
    where = escape(str(result.model_dir))
    console.print(f"model: {where}  (rejoinder chat --bot assistant --model {where})")


def _percent_or_dash(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def _run_reward(config: Any) -> None:
    from rejoinder.align.reward import train_reward

    try:
        result = train_reward(config, on_log=_print_log)
    except RejoinderError as exc:
        raise _fail(exc) from None
    report = result.report
    if report.get("reused"):
        console.print("[dim]this run folder already holds the reward model for this config: nothing to train[/]")
    table = Table("measure", "value", box=None, header_style="bold")
    for key in (
        "model",
        "method",
        "data",
        "train_groups",
        "train_groups_by_k",
        "train_sequences",
        "train_pairs",
        "eval_groups",
        "replies_too_long",
        "steps",
        "train_loss",
        "offset",
        "seconds",
        "seconds_per_epoch",
    ):
        value = report.get(key)
        table.add_row(key.replace("_", " "), f"{value:.4g}" if isinstance(value, float) else escape(str(value)))
    console.print(table)
    held = report.get("held_out")
    if held:
        accuracy = Table("held-out pairs", "pairs", "reward model", "longer wins", "random", header_style="bold")
        for source, row in [("all", held), *held["by_source"].items()]:
            accuracy.add_row(
                escape(source),
                str(row["pairs"]),
                _percent_or_dash(row["accuracy"]),
                _percent_or_dash(row["longer_wins"]),
                _percent_or_dash(row["random"]),
            )
        console.print(accuracy)
    console.print(
        f"model: {escape(str(result.model_dir))}  (rejoinder score --model {escape(str(result.model_dir))} FILE)"
    )


def _print_rl_step(row: dict[str, Any]) -> None:
    """The progress line of one RL step."""
    parts = [
        f"reward {row['reward']:+.3f}",
        f"KL {row['kl']:.3f} (k3 {row['kl_k3']:.3f})",
        f"β {row['beta']:.3g}",
    ]
    for key, label in (
        ("entropy", "entropy"),
        ("clip_frac", "clip"),
        ("approx_kl", "approx KL"),
        ("value_loss", "value loss"),
    ):
        if key in row:
            parts.append(f"{label} {row[key]:.3g}")
    parts.append(f"{row['reply_tokens']:.0f} tok, {row['tokens_per_s']:.0f} tok/s, {row['step_s']:.1f} s")
    if row.get("skipped_updates"):
        parts.append(f"[yellow]{row['skipped_updates']:.0f} skipped[/]")
    console.print(f"step {row['step']:>4}  " + "  ".join(parts), highlight=False)


def _run_rl(config: Any) -> None:
    from rejoinder.align.rl.trainer import train_rl

    try:
        result = train_rl(config, on_log=_print_rl_step)
    except RejoinderError as exc:
        raise _fail(exc) from None
    from rejoinder.align.runs import process_state

    if not process_state().is_main_process:
        return
    report = result.report
    if report.get("reused"):
        console.print("[dim]this run folder already holds the policy for this config: nothing to train[/]")
    table = Table("measure", "first step", "last step", box=None, header_style="bold")
    first, last = report.get("first") or {}, report.get("last") or {}
    for key in ("reward", "kl", "kl_k3", "entropy", "reply_tokens", "tokens_per_s", "step_s"):
        if key in first or key in last:
            table.add_row(
                key.replace("_", " "), f"{first.get(key, float('nan')):.4g}", f"{last.get(key, float('nan')):.4g}"
            )
    console.print(table)
    console.print(
        f"{report['algo']} from {escape(str(report['policy']))} on {escape(report['reward'])}: "
        f"{report['steps']} steps in {report['seconds']:.0f} s"
    )
    if report.get("stopped"):
        console.print(f"[yellow]stopped: {escape(report['stopped'])}[/]")
    where = escape(str(result.policy_dir))
    console.print(f"policy: {where}  (rejoinder chat --bot assistant --model {where})")


def _run_eval_policy(config: Any) -> None:
    from rejoinder.align.rl.evaluate import evaluate_policy

    try:
        record = evaluate_policy(config)
    except RejoinderError as exc:
        raise _fail(exc) from None
    print_policy_eval(record)


def print_policy_eval(record: dict[str, Any]) -> None:
    a, b = record["policy_side"], record["reference_side"]
    table = Table("measure", "policy", "reference", header_style="bold")
    table.add_row("mean reward", f"{a['mean_reward']:+.3f}", f"{b['mean_reward']:+.3f}")
    for term, value in a["reward_terms"].items():
        if len(a["reward_terms"]) > 1:
            table.add_row(f"  {escape(term)}", f"{value:+.3f}", f"{b['reward_terms'][term]:+.3f}")
    table.add_row("win rate (by reward, ties half)", f"{record['win_rate']:.1%}", "")
    table.add_row("KL to reference per reply (k1 / k3)", f"{record['kl_k1']:.3f} / {record['kl_k3']:.3f}", "0")
    table.add_row("reply tokens", f"{a['reply_tokens']:.1f}", f"{b['reply_tokens']:.1f}")
    table.add_row("replies that ended", f"{a['ended']:.0%}", f"{b['ended']:.0%}")
    table.add_row(
        "distinct-1 / distinct-2",
        f"{a['distinct_1']:.2f} / {a['distinct_2']:.2f}",
        f"{b['distinct_1']:.2f} / {b['distinct_2']:.2f}",
    )
    console.print(table)
    sides = Table("prompt", "policy", "reference", header_style="bold", show_lines=True)
    for row in record["side_by_side"][:6]:
        sides.add_row(
            escape(row["prompt"][:120]),
            escape(row["policy"][:240]) + f"\n[dim]{row['policy_reward']:+.2f}[/]",
            escape(row["reference"][:240]) + f"\n[dim]{row['reference_reward']:+.2f}[/]",
        )
    console.print(sides)
    console.print(f"{record['prompts']} held-out prompts; record: {escape(record['written_to'])}")


@train_app.command("pipeline")
def train_pipeline_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The pipeline's YAML file (examples/align/).")],
    output_dir: Annotated[Path | None, typer.Option(help="The run folder (overrides the file's output_dir).")] = None,
) -> None:
    """Curation, SFT, the reward model, RL and the evaluation, end to end; finished stages are skipped."""
    from rejoinder.align.pipeline import read_pipeline, run_pipeline

    try:
        stages = read_pipeline(config, {"output_dir": str(output_dir) if output_dir else None})
        results = run_pipeline(
            stages,
            on_stage=lambda stage, what: console.print(f"[bold]== {stage}[/]: {escape(what)}"),
            on_log=_print_log,
            on_rl_step=_print_rl_step,
        )
    except RejoinderError as exc:
        raise _fail(exc) from None
    if not results["main_process"]:
        return  # under accelerate launch, the main process prints the summary
    summary = Table("stage", "result", header_style="bold")
    if "sft" in results:
        r = results["sft"]
        summary.add_row("SFT", f"eval loss {r.get('eval_loss', float('nan')):.3f} in {r.get('seconds', 0):.0f} s")
    if "reward" in results:
        r = results["reward"]
        held = r.get("held_out") or {}
        summary.add_row(
            "reward model",
            f"held-out accuracy {_percent_or_dash(held.get('accuracy'))} "
            f"(longer wins {_percent_or_dash(held.get('longer_wins'))}, random 50%) in {r.get('seconds', 0):.0f} s",
        )
    if "rl" in results:
        r = results["rl"]
        first, last = r.get("first") or {}, r.get("last") or {}
        if "reward" in first:
            summary.add_row(
                f"RL ({r['algo']})",
                f"training reward {first['reward']:+.3f} → {last['reward']:+.3f}, KL {first['kl']:.3f} → "
                f"{last['kl']:.3f} over {r['steps']} steps in {r['seconds']:.0f} s",
            )
    if "eval" in results:
        e = results["eval"]
        summary.add_row(
            "held-out evaluation",
            f"reward {e['reference_side']['mean_reward']:+.3f} (SFT) → {e['policy_side']['mean_reward']:+.3f} (RL), "
            f"KL {e['kl_k1']:.3f}, win rate over SFT {e['win_rate']:.1%} on {e['prompts']} prompts",
        )
        print_policy_eval(e)
    console.print(summary)
    policy = stages["output_dir"] / "policy"
    console.print(f"policy: {escape(str(policy))}  (rejoinder chat --bot assistant --model {escape(str(policy))})")


def _register_training_commands() -> None:
    from rejoinder.align.reward import RewardConfig
    from rejoinder.align.rl.config import EvalConfig, RLConfig
    from rejoinder.align.sft import SFTConfig

    config_command(
        RLConfig,
        _run_rl,
        "rl",
        "Step 3: RL against the reward (reinforce, ppo, rloo, grpo, ppo++) or DPO on preferences, near the SFT model.",
        train_app,
    )
    config_command(
        EvalConfig,
        _run_eval_policy,
        "policy",
        "A trained policy beside its SFT model on held-out prompts: reward, KL, win rate, length, distinct-n.",
        eval_app,
    )

    config_command(
        RewardConfig,
        _run_reward,
        "reward",
        "Step 2: a reward model trained on K-way rankings (one forward pass per reply, C(K,2) pairs per prompt).",
        train_app,
    )

    config_command(
        SFTConfig,
        _run_sft,
        "sft",
        "Step 1: supervised fine-tuning on demonstrations (assistant tokens only; LoRA or full).",
        train_app,
    )


_register_training_commands()


@app.command("score")
def score_command(
    source: Annotated[
        Path, typer.Argument(help='JSONL: {"prompt": text or messages, "reply" (or "completion"): text} per line.')
    ],
    model: Annotated[Path, typer.Option("--model", help="A reward model folder (rejoinder train reward).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the scored lines here (default: stdout).")
    ] = None,
    batch: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 16,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads (0: the default).")] = 0,
) -> None:
    """Score prompt/reply pairs with a reward model: each line comes back with its "reward"."""
    import json

    from rejoinder.align.reward import RewardModel, read_scoring_input

    try:
        rows, prompts, replies = read_scoring_input(source)
        with err_console.status("loading the reward model"):
            scorer = RewardModel(model, threads=threads)
        rewards = scorer.score(prompts, replies, batch=batch)
    except RejoinderError as exc:
        raise _fail(exc) from None
    sink = output.open("w", encoding="utf-8") if output else sys.stdout
    try:
        for row, reward in zip(rows, rewards, strict=True):
            sink.write(json.dumps({**row, "reward": round(reward, 6)}, ensure_ascii=False) + "\n")
    finally:
        if output:
            sink.close()
    if rewards:
        mean = sum(rewards) / len(rewards)
        err_console.print(f"{len(rewards)} replies scored, mean reward {mean:+.3f}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
