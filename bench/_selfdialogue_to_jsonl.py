"""Convert Self-Dialogue Corpus batch CSVs into the bench's JSONL formats (stdlib only).

Each CSV row is one self-dialogue: its utterances are the non-empty cells of the
``Answer.sentence<N>`` columns taken in numeric order of N (1, 2, ..., 10, 11, ...,
not the CSV's lexical column order). Rows whose ``WorkerId`` is listed in the
blocklist file are dropped. Worker ids are only compared against the blocklist:
they are never written out, printed or kept.

Output formats (one JSON object per line):
  conversations (default): {"turns": ["utt1", "utt2", ...]}   -- one row per line
  queries:                 {"text": "utt"}                    -- one utterance per line

Usage:
  python3 bench/_selfdialogue_to_jsonl.py CSV [CSV ...] --blocked blocked_workers.txt -o out.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

SENTENCE_COLUMN = re.compile(r"^Answer\.sentence(\d+)$")
WORKER_COLUMN = "WorkerId"


class InputError(Exception):
    """Bad input: the message names the file (and row/column) at fault."""


def read_blocklist(path: Path) -> frozenset[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read blocklist ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: blocklist is not UTF-8 text") from None
    blocked = set()
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            blocked.add(entry)
    return frozenset(blocked)


def sentence_columns(path: Path, fieldnames: list[str] | None) -> list[str]:
    if not fieldnames:
        raise InputError(f"{path}: empty file or no CSV header row")
    if WORKER_COLUMN not in fieldnames:
        raise InputError(f"{path}: header has no '{WORKER_COLUMN}' column (needed to apply the blocklist)")
    numbered = sorted((int(m.group(1)), name) for name in fieldnames if (m := SENTENCE_COLUMN.match(name)))
    if not numbered:
        raise InputError(f"{path}: header has no 'Answer.sentence<N>' columns")
    numbers = [n for n, _ in numbered]
    if len(set(numbers)) != len(numbers):
        raise InputError(f"{path}: duplicate 'Answer.sentence<N>' column numbers in header")
    return [name for _, name in numbered]


def iter_dialogues(path: Path, blocked: frozenset[str], stats: dict[str, int]):
    """Yield each kept row's utterances (list of str) in file order."""
    csv.field_size_limit(10 * 1024 * 1024)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"{path}: cannot open CSV ({exc.strerror or exc})") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            columns = sentence_columns(path, reader.fieldnames)
            for row in reader:
                line = reader.line_num
                if None in row:
                    raise InputError(f"{path}: line {line}: more fields than header columns")
                worker = row.get(WORKER_COLUMN)
                if worker is None:
                    raise InputError(f"{path}: line {line}: row is missing the '{WORKER_COLUMN}' field")
                if worker.strip() in blocked:
                    stats["rows_blocked"] += 1
                    continue
                turns = []
                for name in columns:
                    cell = row.get(name)
                    if cell is None:
                        raise InputError(f"{path}: line {line}: row is missing the '{name}' field")
                    cell = " ".join(cell.split())
                    if cell:
                        turns.append(cell)
                stats["rows_read"] += 1
                yield turns
        except csv.Error as exc:
            raise InputError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text (around line {reader.line_num + 1})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", nargs="+", type=Path, help="Self-Dialogue batch results CSV file(s)")
    parser.add_argument("--blocked", type=Path, required=True, help="file of blocked WorkerIds, one per line")
    parser.add_argument("-o", "--output", type=Path, help="JSONL file to write (default: stdout)")
    parser.add_argument("--format", choices=("conversations", "queries"), default="conversations")
    parser.add_argument("--min-turns", type=int, default=2, help="drop dialogues with fewer non-empty turns")
    args = parser.parse_args(argv)
    if args.min_turns < 1:
        parser.error("--min-turns must be >= 1")

    stats = {"rows_read": 0, "rows_blocked": 0, "rows_short": 0, "lines": 0, "utterances": 0}
    try:
        blocked = read_blocklist(args.blocked)
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {args.output}: cannot write ({exc.strerror or exc})", file=sys.stderr)
        return 2
    try:
        for path in args.csv:
            for turns in iter_dialogues(path, blocked, stats):
                if len(turns) < args.min_turns:
                    stats["rows_short"] += 1
                    continue
                stats["utterances"] += len(turns)
                if args.format == "conversations":
                    out.write(json.dumps({"turns": turns}, ensure_ascii=False) + "\n")
                    stats["lines"] += 1
                else:
                    for text in turns:
                        out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                        stats["lines"] += 1
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if out is not sys.stdout:
            out.close()
            args.output.unlink(missing_ok=True)  # no half-written output
        return 2
    if out is not sys.stdout:
        out.close()
    print(
        f"{stats['lines']} {args.format} lines ({stats['utterances']} utterances) from {stats['rows_read']} rows; "
        f"skipped {stats['rows_blocked']} blocklisted and {stats['rows_short']} short rows",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
