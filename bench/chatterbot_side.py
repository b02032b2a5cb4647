"""ChatterBot side of the retrieval-bot benchmark.

Run with the isolated interpreter (see bench/chatterbot_env.sh):

    PY=bench/.venv-chatterbot/bin/python
    $PY bench/chatterbot_side.py train     --db DB --conversations C.jsonl [--limit-statements N]
    $PY bench/chatterbot_side.py answer    --db DB --queries Q.jsonl [--limit N]
    $PY bench/chatterbot_side.py neighbors --db DB --queries Q.jsonl --k K [--limit N]
    $PY bench/chatterbot_side.py compare   --pairs P.jsonl

Each command prints exactly one JSON object on stdout; progress and errors go to
stderr (anything the libraries would print on stdout is redirected to stderr too).
Bad input exits with status 2 and a message naming the file, line and field.

ChatterBot is used with its defaults (ChatterBot 1.2.15): SQLStorageAdapter on
sqlite:///DB, logic adapter BestMatch, IndexedTextSearch, LevenshteinDistance,
PosLemmaTagger with the spaCy model en_core_web_sm, preprocessor clean_whitespace.
Only chatterbot and the standard library are imported here.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import resource
import sqlite3
import sys
import time

BOT_NAME = "rejoinder-bench"
ENV_HINT = "create it with: bash bench/chatterbot_env.sh, then run this script with bench/.venv-chatterbot/bin/python"


class InputError(Exception):
    """Bad command-line input or input file; the message says which file/line/field."""


def log(message: str) -> None:
    print(f"[chatterbot_side] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


# --------------------------------------------------------------------------- input files


def iter_jsonl(path: str, what: str):
    """Yield (line_number, object) for each non-blank line of a JSONL file."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise InputError(f"{path}: cannot open {what} file ({exc.strerror or exc})") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise InputError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
                yield number, obj
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None


def require_text(path: str, number: int, obj: dict, field: str) -> str:
    if field not in obj:
        raise InputError(f"{path}:{number}: missing field '{field}'")
    value = obj[field]
    if not isinstance(value, str):
        raise InputError(f"{path}:{number}: field '{field}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InputError(f"{path}:{number}: field '{field}' is empty")
    return value


def read_conversations(path: str, limit_statements: int | None) -> list[list[str]]:
    """Conversations ({"turns": [str, ...]}) up to the one that reaches limit_statements."""
    conversations: list[list[str]] = []
    total = 0
    for number, obj in iter_jsonl(path, "conversations"):
        if "turns" not in obj:
            raise InputError(f"{path}:{number}: missing field 'turns'")
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns:
            raise InputError(f"{path}:{number}: field 'turns' must be a non-empty list of strings")
        for index, turn in enumerate(turns):
            if not isinstance(turn, str) or not turn.strip():
                raise InputError(f"{path}:{number}: field 'turns'[{index}] must be a non-empty string")
        conversations.append(turns)
        total += len(turns)
        if limit_statements is not None and total >= limit_statements:
            break
    if not conversations:
        raise InputError(f"{path}: no conversations in file")
    return conversations


def read_queries(path: str, limit: int | None) -> list[str]:
    texts = []
    for number, obj in iter_jsonl(path, "queries"):
        texts.append(require_text(path, number, obj, "text"))
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise InputError(f"{path}: no queries in file")
    return texts


def read_pairs(path: str) -> list[tuple[str, str]]:
    pairs = []
    for number, obj in iter_jsonl(path, "pairs"):
        for field in ("a", "b"):
            if field not in obj:
                raise InputError(f"{path}:{number}: missing field '{field}'")
            if not isinstance(obj[field], str):
                raise InputError(f"{path}:{number}: field '{field}' must be a string, got {type(obj[field]).__name__}")
        pairs.append((obj["a"], obj["b"]))
    if not pairs:
        raise InputError(f"{path}: no pairs in file")
    return pairs


# --------------------------------------------------------------------------- database checks


class EnvError(Exception):
    """The ChatterBot environment is missing or broken."""


SQLITE_MAGIC = b"SQLite format 3\x00"


def _sidecars(path: str) -> list[str]:
    return [path, path + "-wal", path + "-shm", path + "-journal"]


def prepare_fresh_db(path: str) -> None:
    """Remove an old bench DB at path (only if it is an SQLite file) so training starts fresh."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"--db {path}: directory {parent} does not exist")
    if os.path.isdir(path):
        raise InputError(f"--db {path}: is a directory, expected an SQLite file path")
    if os.path.exists(path):
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise InputError(f"--db {path}: exists and is not an SQLite database; refusing to overwrite it")
    for name in _sidecars(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def check_trained_db(path: str) -> int:
    """Fail clearly unless path is a ChatterBot SQLite DB with statements; return their count.

    Checked read-only with sqlite3 because SQLStorageAdapter would silently create
    an empty database (and tables) at a wrong path.
    """
    if not os.path.isfile(path):
        raise InputError(f"--db {path}: no such file (run the 'train' command first)")
    try:
        conn = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "statement" not in tables:
                raise InputError(f"--db {path}: SQLite file has no 'statement' table; not a ChatterBot database")
            count = conn.execute("SELECT COUNT(*) FROM statement").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"--db {path}: not a readable SQLite database ({exc})") from None
    if count == 0:
        raise InputError(f"--db {path}: ChatterBot database holds no statements")
    return count


# --------------------------------------------------------------------------- ChatterBot


def import_chatterbot():
    try:
        import chatterbot
        from chatterbot import ChatBot
    except ImportError as exc:
        raise EnvError(f"cannot import chatterbot with {sys.executable} ({exc}); {ENV_HINT}") from None
    return chatterbot, ChatBot


def make_bot(db: str, read_only: bool):
    """A ChatBot with every default except the SQLite file and read_only."""
    _, ChatBot = import_chatterbot()
    try:
        return ChatBot(BOT_NAME, database_uri="sqlite:///" + os.path.abspath(db), read_only=read_only)
    except (ChatBot.ChatBotException, OSError) as exc:
        # e.g. the spaCy model en_core_web_sm is missing.
        raise EnvError(f"ChatterBot could not start: {exc}; {ENV_HINT}") from None


def cmd_train(args) -> dict:
    conversations = read_conversations(args.conversations, args.limit_statements)
    prepare_fresh_db(args.db)
    started = time.perf_counter()
    bot = make_bot(args.db, read_only=False)  # training writes; read_only only affects get_response
    from chatterbot.trainers import ListTrainer

    trainer = ListTrainer(bot, show_training_progress=False)
    log(f"bot ready in {time.perf_counter() - started:.2f}s; training on {len(conversations)} conversations")

    t0 = time.perf_counter()
    stored = 0
    for index, turns in enumerate(conversations, start=1):
        if args.limit_statements is not None:
            turns = turns[: args.limit_statements - stored]  # the last conversation may be cut short
        trainer.train(turns)
        stored += len(turns)
        if index % 100 == 0 or index == len(conversations):
            log(
                f"trained {index}/{len(conversations)} conversations, {stored} statements, "
                f"{time.perf_counter() - t0:.1f}s"
            )
    import_s = time.perf_counter() - t0
    statements = bot.storage.count()
    bot.storage.engine.dispose()  # close connections so SQLite checkpoints its WAL into the file
    return {"statements": statements, "import_s": round(import_s, 3), "peak_rss_mb": peak_rss_mb()}


def cmd_answer(args) -> dict:
    texts = read_queries(args.queries, args.limit)
    count = check_trained_db(args.db)
    t0 = time.perf_counter()
    bot = make_bot(args.db, read_only=True)
    load_s = time.perf_counter() - t0
    log(f"bot loaded in {load_s:.2f}s over {count} statements; answering {len(texts)} queries")

    latencies, replies = [], []
    for index, text in enumerate(texts, start=1):
        start = time.perf_counter()
        response = bot.get_response(text)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        latencies.append(round(elapsed_ms, 3))
        replies.append(response.text)
        log(f"{index}/{len(texts)} {elapsed_ms:.0f} ms")
    return {"latencies_ms": latencies, "replies": replies, "load_s": round(load_s, 3), "peak_rss_mb": peak_rss_mb()}


def default_comparator(bot=None):
    """ChatterBot's default statement comparison function, as BestMatch uses it.

    With a bot: the comparator instance held by the bot's (first, default) logic
    adapter's search algorithm. Without one: the same default that
    chatterbot.search.IndexedTextSearch picks when no
    'statement_comparison_function' is given, LevenshteinDistance (difflib
    SequenceMatcher ratio on lower-cased text, rounded to 2 decimals).
    """
    if bot is not None:
        return bot.logic_adapters[0].search_algorithm.compare_statements
    import_chatterbot()
    from chatterbot import languages
    from chatterbot.comparisons import LevenshteinDistance

    return LevenshteinDistance(language=languages.ENG)


def neighbors_for(bot, text: str, k: int) -> list[dict]:
    """The k stored statements whose in_response_to best matches text, ChatterBot's way.

    Reproduces phase 1 of chatterbot.logic.BestMatch.process, i.e.
    chatterbot.search.IndexedTextSearch.search (ChatterBot 1.2.15), but ranks all
    candidates instead of stopping early:

    1. The input is built as ChatBot.get_response builds it: the bot's
       preprocessors (default: clean_whitespace) are applied to the text, and its
       search_text is the tagger's index string (PosLemmaTagger: "POS:lemma"
       bigrams from en_core_web_sm).
    2. Candidates come from the storage adapter's filter() with exactly the
       parameters IndexedTextSearch passes: search_in_response_to_contains=<input
       search_text> (SQL LIKE '%bigram%' on search_in_response_to, OR-ed over the
       bigrams), persona_not_startswith='bot:', page_size=<search_page_size>.
    3. Each candidate is scored with the search algorithm's own comparator:
       compare_text(input text, candidate.in_response_to) (LevenshteinDistance).

    IndexedTextSearch yields only a candidate that beats the best confidence so far
    (starting at 0), and BestMatch stops at the first one reaching
    maximum_similarity_threshold (0.95), or at 1.0. So BestMatch's closest match
    is the first candidate in storage order with the highest confidence (or the
    first with >= 0.95), never one with confidence 0. We return candidates with
    confidence > 0 sorted by confidence, ties in storage order, so result [0] is
    BestMatch's closest match unless an earlier >= 0.95 candidate cut the search
    short. Fewer than k entries come back when fewer candidates score above 0.
    (BestMatch's phase 2, picking the reply among statements whose search_text
    equals the match's, is not reproduced: "text" is the matched statement's own
    text, i.e. the reply that followed in_response_to in training.)
    """
    from chatterbot.conversation import Statement

    search = bot.logic_adapters[0].search_algorithm
    statement = Statement(text=text)
    for preprocessor in bot.preprocessors:
        statement = preprocessor(statement)
    search_text = bot.tagger.get_text_index_string(statement.text)

    scored = []
    candidates = bot.storage.filter(
        search_in_response_to_contains=search_text,
        persona_not_startswith="bot:",
        page_size=search.search_page_size,
    )
    for order, candidate in enumerate(candidates):
        confidence = search.compare_statements.compare_text(statement.text, candidate.in_response_to)
        if confidence > 0:
            scored.append((-confidence, order, candidate))
    best = heapq.nsmallest(k, scored, key=lambda item: (item[0], item[1]))
    return [
        {"in_response_to": candidate.in_response_to, "text": candidate.text, "confidence": -negative}
        for negative, _, candidate in best
    ]


def cmd_neighbors(args) -> dict:
    texts = read_queries(args.queries, args.limit)
    count = check_trained_db(args.db)
    t0 = time.perf_counter()
    bot = make_bot(args.db, read_only=True)
    load_s = time.perf_counter() - t0
    search_name = bot.logic_adapters[0].search_algorithm.name
    comparator = type(bot.logic_adapters[0].search_algorithm.compare_statements).__name__
    log(
        f"bot loaded in {load_s:.2f}s over {count} statements ({search_name}, {comparator}); "
        f"{len(texts)} queries, k={args.k}"
    )

    results, timings = [], []
    for index, text in enumerate(texts, start=1):
        start = time.perf_counter()
        results.append(neighbors_for(bot, text, args.k))
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        timings.append(round(elapsed_ms, 3))
        log(f"{index}/{len(texts)} {elapsed_ms:.0f} ms, {len(results[-1])} neighbours")
    return {"neighbors": results, "compare_ms": timings, "load_s": round(load_s, 3), "peak_rss_mb": peak_rss_mb()}


def similarity(a: str, b: str) -> float:
    """ChatterBot's default comparison function (LevenshteinDistance.compare_text)."""
    return default_comparator().compare_text(a, b)


def cmd_compare(args) -> dict:
    pairs = read_pairs(args.pairs)
    comparator = default_comparator()
    return {"scores": [comparator.compare_text(a, b) for a, b in pairs]}


# --------------------------------------------------------------------------- command line


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatterbot_side.py", description="ChatterBot (default BestMatch, SQLite) side of the benchmark."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a fresh bot with ListTrainer, one conversation at a time")
    train.add_argument("--db", required=True, help="SQLite file to (re)create")
    train.add_argument("--conversations", required=True, help='JSONL, one {"turns": [str, ...]} per line')
    train.add_argument("--limit-statements", type=positive_int, help="stop once this many statements are stored")
    train.set_defaults(func=cmd_train)

    answer = sub.add_parser("answer", help="time get_response() for each query")
    answer.add_argument("--db", required=True, help="SQLite file written by 'train'")
    answer.add_argument("--queries", required=True, help='JSONL, one {"text": str} per line')
    answer.add_argument("--limit", type=positive_int, help="use only the first N queries")
    answer.set_defaults(func=cmd_answer)

    neighbors = sub.add_parser("neighbors", help="top-K statements by BestMatch's search and comparison")
    neighbors.add_argument("--db", required=True, help="SQLite file written by 'train'")
    neighbors.add_argument("--queries", required=True, help='JSONL, one {"text": str} per line')
    neighbors.add_argument("--k", type=positive_int, required=True, help="neighbours per query")
    neighbors.add_argument("--limit", type=positive_int, help="use only the first N queries")
    neighbors.set_defaults(func=cmd_neighbors)

    compare = sub.add_parser("compare", help="ChatterBot's default similarity for each pair")
    compare.add_argument("--pairs", required=True, help='JSONL, one {"a": str, "b": str} per line')
    compare.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    real_stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON object
            result = args.func(args)
    except InputError as exc:
        print(f"chatterbot_side.py {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except EnvError as exc:
        print(f"chatterbot_side.py {args.command}: environment error: {exc}", file=sys.stderr)
        return 3
    json.dump(result, real_stdout, ensure_ascii=False)
    real_stdout.write("\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
