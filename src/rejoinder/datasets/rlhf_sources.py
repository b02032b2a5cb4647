"""Where alignment records come from: OpenAssistant trees, HH-RLHF pairs, the store, files.

Every reader yields :mod:`rejoinder.datasets.rlhf` records and fills a :class:`SourceStats` with
what it read, made and left out (and why), so that curation can report every record.

- ``oasst`` (:func:`read_oasst`): the OpenAssistant message trees in the shared data
  (``rlhf/oasst_en_100_tree.jsonl``, Apache-2.0). Every path from the root prompt to an assistant
  reply is a :class:`Demonstration` (multi-turn: prompter turns are ``user``, assistant turns
  ``assistant``); every group of sibling assistant replies that carry a ``rank`` is a
  :class:`Ranking` of K = 2..9 completions, best first (``rank`` 0 is the best; siblings without a
  rank are left out of the group), its prompt the conversation up to their parent. Deleted
  messages and messages that failed review (``review_result`` false) are skipped with everything
  below them, and counted. Synthetic messages (written by a model, ``synthetic`` true; 22 in the
  file: 5 root prompts and 17 replies in those 5 trees) are kept in prompts and in rankings (the
  ranking is still people's judgement), but a path that *ends* at a synthetic reply is not a
  demonstration by default (``include_synthetic=True`` keeps it): a demonstration is what a
  person wrote. Records of synthetic material say so in ``meta["synthetic"]``. The export has no
  user ids, so each tree is taken as the work of one user, ``oasst-tree:<message_tree_id>`` (the
  prompter who opened it): the per-user cap counts a tree's prompts together and the split never
  puts one tree in two splits.
- ``hh`` (:func:`read_hh`): Anthropic's HH-RLHF harmless-base test split in the shared data
  (``rlhf/hh-rlhf_harmless-base_test.jsonl.gz``, MIT). Each row's chosen and rejected dialogues are
  cut at their last ``"\\n\\nAssistant:"`` into the prompt (conversational turns) and the two
  replies, as a :class:`Preference` with ``red_team`` true: the prompts are red-team attacks and
  "chosen" means *less harmful*, so these records are never supervised fine-tuning targets
  (:func:`rejoinder.datasets.rlhf.sft_example` refuses them). Rows whose two dialogues differ
  before the last assistant turn (5 of 2,312: a turn written inline as ``"  Human:"``) have no
  common prompt; they are left out and counted as ``different prompts``. There are no user ids;
  each row gets ``hh:<12 hex digits of the SHA-256 of its first human turn>``, so rows that open
  the same way count as one user and stay in one split.
- ``store`` (:func:`read_store`): the conversations in Rejoinder's store, each one's active branch
  as a :class:`Demonstration` with the conversation's user id (``store:<conversation id>`` when it
  has none). Replies that were cancelled mid-stream are left out with the message they answered,
  and so is a bot's opening remark before the user spoke (chat templates such as Gemma's want the
  user first and the roles alternating); a conversation without an assistant reply makes no record.
  All counted. The feedback recorded against messages (thumbs, regenerate choices, rankings among
  sibling replies) and the arena's votes are read by :mod:`rejoinder.datasets.feedback`
  (``rejoinder data export``), which writes them as files of these formats.
- any ``.jsonl``/``.json``/``.csv`` file: :func:`rejoinder.datasets.rlhf.read_records`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rejoinder.datasets.rlhf import (
    Demonstration,
    Format,
    Preference,
    Ranking,
    Record,
    Turn,
    _Bad,
    read_records,
    split_hh,
)
from rejoinder.errors import ConfigError, SourceError
from rejoinder.resources import shared_data

OASST = ("rlhf", "oasst_en_100_tree.jsonl")
HH_RLHF = ("rlhf", "hh-rlhf_harmless-base_test.jsonl.gz")
NAMED_SOURCES = ("oasst", "hh", "store")


@dataclass
class SourceStats:
    """What one source gave: records by format, and what was left out, by reason."""

    name: str
    records: Counter[str] = field(default_factory=Counter)
    left_out: Counter[str] = field(default_factory=Counter)
    invalid: list[SourceError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "records": dict(self.records),
            "left_out": dict(self.left_out),
            "invalid": len(self.invalid),
            "invalid_examples": [str(e) for e in self.invalid[:5]],
        }


def _count(stats: SourceStats | None, records: Iterator[Record]) -> Iterator[Record]:
    for record in records:
        if stats is not None:
            stats.records[record.format] += 1
        yield record


# --------------------------------------------------------------------------------------------
# OpenAssistant


def read_oasst(
    path: str | Path | None = None, *, include_synthetic: bool = False, stats: SourceStats | None = None
) -> Iterator[Record]:
    """Demonstrations and K-way rankings of OpenAssistant message trees (see the module docstring)."""
    path = Path(path) if path is not None else shared_data(*OASST, required=True)
    if not path.is_file():
        raise SourceError("no such file", path=path)
    return _count(stats, _oasst_records(path, include_synthetic, stats))


def _oasst_records(path: Path, include_synthetic: bool, stats: SourceStats | None) -> Iterator[Record]:
    left_out = stats.left_out if stats is not None else Counter()
    with path.open(encoding="utf-8") as file:
        for line, text in enumerate(file, start=1):
            if not text.strip():
                continue
            try:
                tree = json.loads(text)
                root, tree_id = tree["prompt"], str(tree["message_tree_id"])
            except json.JSONDecodeError as error:
                raise SourceError(f"broken JSON: {error.msg}", path=path, line=line, column=error.colno) from None
            except (KeyError, TypeError):
                raise SourceError(
                    "expected an OpenAssistant tree: an object with 'message_tree_id' and 'prompt'",
                    path=path,
                    line=line,
                ) from None
            try:
                yield from _oasst_tree(root, tree_id, include_synthetic, left_out)
            except _Bad as bad:
                raise SourceError(f"tree {tree_id}: {bad}", path=path, line=line) from None


def _oasst_usable(message: dict[str, Any], left_out: Counter[str]) -> bool:
    if message.get("deleted"):
        left_out["deleted messages (with their replies)"] += 1
        return False
    if message.get("review_result") is False:
        left_out["messages that failed review (with their replies)"] += 1
        return False
    if not isinstance(message.get("text"), str) or not message["text"].strip():
        left_out["empty messages (with their replies)"] += 1
        return False
    return True


def _oasst_turn(message: dict[str, Any]) -> Turn:
    role = {"prompter": "user", "assistant": "assistant"}.get(message.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise _Bad(f"message {message.get('message_id')}.role", "'prompter' or 'assistant'", message.get("role"))
    return Turn(role, message["text"])


def _oasst_tree(
    root: dict[str, Any], tree_id: str, include_synthetic: bool, left_out: Counter[str]
) -> Iterator[Record]:
    if not _oasst_usable(root, left_out):
        return
    user = f"oasst-tree:{tree_id}"
    # (message, the turns up to and including it, whether any of them is synthetic)
    stack: list[tuple[dict[str, Any], tuple[Turn, ...], bool]] = [
        (root, (_oasst_turn(root),), bool(root.get("synthetic")))
    ]
    while stack:
        message, turns, synthetic = stack.pop(0)
        replies = [r for r in message.get("replies") or [] if _oasst_usable(r, left_out)]
        ranked = sorted(
            (r for r in replies if r.get("role") == "assistant" and r.get("rank") is not None), key=lambda r: r["rank"]
        )
        if len(ranked) >= 2:
            ranked_synthetic = synthetic or any(r.get("synthetic") for r in ranked)
            ranks = [int(r["rank"]) for r in ranked]
            yield Ranking(
                turns,
                tuple((_oasst_turn(r),) for r in ranked),
                tuple(ranks) if len(set(ranks)) < len(ranks) else None,
                id=f"oasst:{message['message_id']}",
                source="oasst",
                user_id=user,
                meta={"synthetic": True} if ranked_synthetic else {},
            )
        for reply in replies:
            path = (*turns, _oasst_turn(reply))
            path_synthetic = synthetic or bool(reply.get("synthetic"))
            if reply.get("role") == "assistant":
                if reply.get("synthetic") and not include_synthetic:
                    left_out["demonstrations ending in a synthetic reply"] += 1
                else:
                    yield Demonstration(
                        path,
                        id=f"oasst:{reply['message_id']}",
                        source="oasst",
                        user_id=user,
                        meta={"synthetic": True} if path_synthetic else {},
                    )
            stack.append((reply, path, path_synthetic))


# --------------------------------------------------------------------------------------------
# HH-RLHF


def read_hh(path: str | Path | None = None, *, stats: SourceStats | None = None) -> Iterator[Record]:
    """Red-team preference pairs of Anthropic HH-RLHF (see the module docstring)."""
    path = Path(path) if path is not None else shared_data(*HH_RLHF, required=True)
    if not path.is_file():
        raise SourceError("no such file", path=path)
    return _count(stats, _hh_records(path, stats))


def hh_user(prompt: tuple[Turn, ...]) -> str:
    first = next((t.content for t in prompt if t.role == "user"), "")
    return "hh:" + hashlib.sha256(" ".join(first.lower().split()).encode("utf-8")).hexdigest()[:12]


def _hh_records(path: Path, stats: SourceStats | None) -> Iterator[Record]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:  # type: ignore[operator]
        for line, text in enumerate(file, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
                chosen, rejected = row["chosen"], row["rejected"]
                if not isinstance(chosen, str) or not isinstance(rejected, str):
                    raise TypeError
            except json.JSONDecodeError as error:
                raise SourceError(f"broken JSON: {error.msg}", path=path, line=line, column=error.colno) from None
            except (KeyError, TypeError):
                raise SourceError(
                    "expected an HH-RLHF row: an object with 'chosen' and 'rejected' dialogue strings",
                    path=path,
                    line=line,
                ) from None
            try:
                prompt, good = split_hh(chosen)
                prompt_r, bad = split_hh(rejected)
            except _Bad as error:
                raise SourceError(str(error), path=path, line=line) from None
            if prompt != prompt_r:
                if stats is not None:
                    stats.left_out["different prompts in chosen and rejected"] += 1
                continue
            if not prompt or not good or not bad:
                if stats is not None:
                    stats.left_out["empty prompt or reply"] += 1
                continue
            yield Preference(
                prompt,
                (Turn("assistant", good),),
                (Turn("assistant", bad),),
                id=f"hh-rlhf:{line}",
                source="hh-rlhf",
                user_id=hh_user(prompt),
                red_team=True,
            )


# --------------------------------------------------------------------------------------------
# The store


def read_store(store: Any, *, stats: SourceStats | None = None) -> Iterator[Record]:
    """Each stored conversation's active branch as a demonstration (see the module docstring)."""
    return _count(stats, _store_records(store, stats))


def is_cancelled(message: Any) -> bool:
    """Whether a stored message is a reply that was cancelled mid-stream (its text is cut short)."""
    return message.role == "assistant" and bool(
        message.meta.get("cancelled") or message.meta.get("finish_reason") == "cancelled"
    )


def store_turns(messages: Iterable[Any], left_out: Counter[str]) -> list[Turn]:
    """Stored messages (one branch, in order) as turns a chat template takes: empty messages dropped,
    a cancelled reply left out with the message it answered, and a bot's opening remark before the
    user spoke left out (each counted in ``left_out``)."""
    turns: list[Turn] = []
    for message in messages:
        if not message.text.strip():
            continue
        if is_cancelled(message):
            left_out["cancelled replies (with the message they answered)"] += 1
            if turns and turns[-1].role == "user":
                turns.pop()
            continue
        if message.role == "assistant" and not any(t.role == "user" for t in turns):
            left_out["opening remarks before the user spoke"] += 1
            continue
        turns.append(Turn(message.role, message.text))
    return turns


def _store_records(store: Any, stats: SourceStats | None) -> Iterator[Record]:
    left_out = stats.left_out if stats is not None else Counter()
    for info in reversed(store.list_conversations(limit=2**62)):  # oldest first
        turns = store_turns(store.load_dialogue(info.id).messages, left_out)
        if not any(t.role == "assistant" for t in turns):
            left_out["conversations without a reply"] += 1
            continue
        while turns and turns[-1].role != "assistant":
            turns.pop()
        yield Demonstration(
            tuple(turns),
            id=f"store:{info.id}",
            source="store",
            user_id=info.user_id or f"store:{info.id}",
            meta={"bot": info.bot},
        )


def _own_store(db: str | None, stats: SourceStats | None) -> Iterator[Record]:
    """The store at ``db`` read as :func:`read_store` does, closed when the reading ends."""
    from rejoinder.store import Store

    store = Store(db)
    try:
        yield from read_store(store, stats=stats)
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# By name


def read_source(
    spec: str,
    *,
    stats: SourceStats | None = None,
    skip_invalid: bool = False,
    format: Format | None = None,
    db: str | None = None,
    include_synthetic: bool = False,
) -> Iterator[Record]:
    """The records of ``oasst``, ``hh``, ``store`` (the store at ``db``, default the user's) or a file path."""
    if spec == "oasst":
        return read_oasst(include_synthetic=include_synthetic, stats=stats)
    if spec == "hh":
        return read_hh(stats=stats)
    if spec == "store":
        return _own_store(db, stats)
    path = Path(spec).expanduser()
    if path.suffix.lower() in (".jsonl", ".json", ".csv") or path.exists():
        skipped = stats.invalid if (stats is not None and skip_invalid) else ([] if skip_invalid else None)
        return _count(stats, read_records(path, format=format, skipped=skipped))
    raise ConfigError(
        f"source {spec!r}: expected {', '.join(NAMED_SOURCES)} or a .jsonl/.json/.csv file (no such file here)"
    )
