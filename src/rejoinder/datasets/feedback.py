"""The web chat's feedback and the arena's votes as training data (``rejoinder data export``).

Three exports, each a JSON Lines file of one of TRL's formats (:mod:`rejoinder.datasets.rlhf`)
that ``rejoinder train reward``, ``rejoinder train rl`` and ``rejoinder train sft`` read as it is.
Every record has the ``user_id`` of the person who wrote its prompt (the conversation's user;
the unit of the per-user cap and of the split), a ``source`` (``arena``, ``choice``, ``rating``
or ``ranking``: the reward trainer reports held-out accuracy per source), an ``id`` naming what it
came from (``arena:<battle id>``, ``choice:<feedback id>:<rejected message id>``, ...) and
``meta`` (conversation and message ids; ``judge`` when someone other than the prompt's author
gave the feedback). Prompts and completions are conversational (message lists). Prompts are the
stored branch as :func:`~rejoinder.datasets.rlhf_sources.store_turns` cleans it for ``store``:
a bot's opening remark before the user spoke is left out (chat templates want the user first),
and so is a cancelled reply with the message it answered.

**preferences** (:func:`read_preferences`): ``{"prompt", "chosen", "rejected"}``.

- Arena votes ``a`` and ``b``; ``tie`` and ``bad`` (both bad) say nothing about which side is
  better and are skipped and counted. The prompt is what the two sides share: their messages up to
  and including the last user message they have in common; chosen and rejected are the rest of
  each side. A battle of several turns is one record whose chosen and rejected hold every later
  turn, user messages included: the vote judged the whole battle, and after the first reply the
  two sides' histories differ, so a later turn has no prompt the sides share and a pair per turn
  would attribute the one vote to replies to different conversations. (Rejoinder's reward trainer
  and DPO read a completion as one reply; they join the turns of a multi-turn one - ``meta.turns``
  says how many user turns a record has, so such records can be filtered out.) A battle with a
  cancelled reply on either side is skipped: the voter judged a reply cut short.
- Regenerate choices: the sibling a user kept (the latest ``choice`` of each user on each sibling
  set) is chosen against each other version that existed when they chose (the feedback's ``of``),
  the prompt being the branch up to their parent. Cancelled versions and versions whose text is
  the kept one's are left out (a pair of equal texts teaches nothing).

**sft** (:func:`read_demonstrations`): ``{"messages"}``, the branch up to and including a reply
rated up. Each user's latest rating of a reply counts (up, then down: not exported); a reply one
user rated up and another down is skipped and counted.

**rankings** (:func:`read_rankings`): ``{"prompt", "completions": [best, ..., worst], "ranks"}``
over sibling replies (K >= 2), from three signals:

- ``ranking`` feedback (a labeling app): its ``order`` (best first) and ``ties`` as given; all
  its messages must be replies to one message;
- ``choice`` feedback: the kept version first, the other versions tied after it;
- thumbs: each sibling rated up above each unrated one above each rated down, when a user's
  ratings of one sibling set are mixed (all alike ranks nothing).

Signals overlap on one sibling set when a user both chose and rated, or ranked too. Per user and
sibling set the most explicit signal is the record - a ranking, else a choice, else thumbs - and
the others are not merged into it (a thumbs-down on the version kept later would contradict the
choice; the explicit act is the judgement): they are counted as superseded. Each user's signal
is its own record (as InstructGPT keeps each labeler's ranking), so two users' rankings of one
set are two records with one prompt, kept on one side of the split by the trainers.

A choice is a preference and a ranking at once: the preferences and rankings exports both hold
it (as K-1 pairs, or as one K-way ranking). Train on one of them, not both, or choices count twice.

``since`` keeps only judgements given at or after it (the vote's time; a feedback's latest
version, so an export since a date never holds a judgement that was changed before it).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rejoinder.datasets.rlhf import Demonstration, Preference, Ranking, Record, Turn
from rejoinder.datasets.rlhf_sources import is_cancelled, store_turns
from rejoinder.errors import ConfigError, ConversationNotFound

if TYPE_CHECKING:
    from rejoinder.dialogue import Message
    from rejoinder.store import FeedbackInfo, Store

EXPORT_KINDS = ("preferences", "sft", "rankings")
SOURCES = {
    "arena": "arena votes",
    "choice": "regenerate choices",
    "rating": "thumbs",
    "ranking": "rankings",
}
"""The ``source`` of the exported records, and what each means."""


@dataclass
class ExportSummary:
    """What one export wrote, by source, and what it skipped, by reason."""

    kind: str
    exported: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.exported.values())

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "exported": dict(self.exported), "skipped": dict(self.skipped)}


# --------------------------------------------------------------------------------------------
# The conversations, read once


class _Trees:
    """Each conversation's messages (all branches) and owner, read from the store once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_id: dict[str, dict[str, Message]] = {}
        self._children: dict[str, dict[str | None, list[Message]]] = {}
        self._owner: dict[str, str | None] = {}

    def _load(self, cid: str) -> bool:
        if cid not in self._by_id:
            try:
                messages = self.store.message_tree(cid)
                self._owner[cid] = self.store.get_conversation(cid).user_id
            except ConversationNotFound:
                messages = []
            self._by_id[cid] = {m.id: m for m in messages if m.id}
            children: dict[str | None, list[Message]] = defaultdict(list)
            for m in messages:
                children[m.parent_id].append(m)
            self._children[cid] = children
        return bool(self._by_id[cid])

    def message(self, cid: str, mid: str) -> Message | None:
        return self._by_id[cid].get(mid) if self._load(cid) else None

    def replies(self, cid: str, parent: str | None) -> list[Message]:
        """The messages that follow ``parent`` (siblings of one another), oldest first."""
        self._load(cid)
        return list(self._children[cid].get(parent, []))

    def branch(self, cid: str, leaf: str) -> list[Message]:
        """The messages from the first down to ``leaf``."""
        self._load(cid)
        by_id, out = self._by_id[cid], []
        cursor: str | None = leaf
        while cursor is not None and cursor in by_id:
            out.append(by_id[cursor])
            cursor = by_id[cursor].parent_id
        return out[::-1]

    def owner(self, cid: str) -> str | None:
        self._load(cid)
        return self._owner.get(cid)

    def prompt(self, cid: str, parent: str | None) -> tuple[Turn, ...] | None:
        """The branch up to ``parent`` as turns, or None when it does not end with a user message."""
        if parent is None:
            return None
        turns = store_turns(self.branch(cid, parent), Counter())
        return tuple(turns) if turns and turns[-1].role == "user" else None


def _usable(message: Message) -> bool:
    """A reply that can be a completion: from the bot, not empty, not cut short."""
    return message.role == "assistant" and bool(message.text.strip()) and not is_cancelled(message)


def _reply(message: Message) -> tuple[Turn, ...]:
    return (Turn("assistant", message.text),)


def _who(trees: _Trees, cid: str, judge: str | None) -> tuple[str, dict[str, Any]]:
    """The record's user id (the prompt's author) and the meta naming the judge when it is someone else."""
    user = trees.owner(cid) or judge or f"store:{cid}"
    return user, ({"judge": judge} if judge and judge != user else {})


def _latest(items: Iterable[FeedbackInfo], key: Callable[[FeedbackInfo], Any]) -> dict[Any, FeedbackInfo]:
    """The latest feedback for each key (the store lists feedback oldest first)."""
    out: dict[Any, FeedbackInfo] = {}
    for item in items:
        out[key(item)] = item
    return out


def _set_key(trees: _Trees, feedback: FeedbackInfo, message_id: str) -> tuple[str, str | None] | None:
    """(conversation, parent): the sibling set of ``message_id``, None when it is not stored."""
    message = trees.message(feedback.conversation_id, message_id)
    return (feedback.conversation_id, message.parent_id) if message is not None else None


def _too_old(created: datetime, since: datetime | None, summary: ExportSummary, what: str) -> bool:
    if since is not None and created < since:
        summary.skipped[f"{what} given before --since"] += 1
        return True
    return False


# --------------------------------------------------------------------------------------------
# Preferences


def read_preferences(
    store: Store, *, since: datetime | None = None, summary: ExportSummary | None = None
) -> Iterator[Preference]:
    """Arena votes, then regenerate choices, as preference pairs (see the module docstring)."""
    summary = summary if summary is not None else ExportSummary("preferences")
    trees = _Trees(store)
    yield from _arena_preferences(store, since, summary)
    yield from _choice_preferences(store, trees, since, summary)


def _arena_preferences(store: Store, since: datetime | None, summary: ExportSummary) -> Iterator[Preference]:
    skipped = summary.skipped
    for battle in store.battles(voted=True):
        if _too_old(battle.voted_at or battle.created_at, since, summary, "arena votes"):
            continue
        if battle.vote in ("tie", "bad"):
            skipped["arena ties" if battle.vote == "tie" else "arena votes 'both bad'"] += 1
            continue
        sides = [store.load_dialogue(cid).messages for cid in (battle.conversation_a, battle.conversation_b)]
        if any(is_cancelled(m) for side in sides for m in side):
            skipped["arena battles with a cancelled reply"] += 1
            continue
        a, b = (store_turns(side, Counter()) for side in sides)
        for turns in (a, b):
            while turns and turns[-1].role == "user":  # a message neither side answered
                turns.pop()
        if not a or not b:
            skipped["arena battles without a reply"] += 1
            continue
        if [t for t in a if t.role == "user"] != [t for t in b if t.role == "user"]:
            skipped["arena battles whose sides answered different messages"] += 1
            continue
        shared = 0
        while shared < min(len(a), len(b)) and a[shared] == b[shared]:
            shared += 1
        if shared == len(a) == len(b):
            skipped["arena battles whose sides replied alike"] += 1
            continue
        cut = max((i + 1 for i in range(shared) if a[i].role == "user"), default=0)  # after the last shared user turn
        won, lost = (a, b) if battle.vote == "a" else (b, a)
        if not cut or cut == len(a) or cut == len(b):
            skipped["arena battles whose sides share no prompt or one side has no reply after it"] += 1
            continue
        names = (battle.contestant_a, battle.contestant_b)[:: 1 if battle.vote == "a" else -1]
        turns = sum(t.role == "user" for t in a)
        summary.exported["arena"] += 1
        yield Preference(
            tuple(a[:cut]),
            tuple(won[cut:]),
            tuple(lost[cut:]),
            id=f"arena:{battle.id}",
            source="arena",
            user_id=battle.user_id or f"arena:{battle.id}",
            meta={"battle": battle.id, "chosen_bot": names[0], "rejected_bot": names[1], "turns": turns},
        )


def _choices(store: Store, trees: _Trees, summary: ExportSummary) -> dict[Any, FeedbackInfo]:
    """Each user's latest choice on each sibling set: ``(user, conversation, parent)`` -> the choice."""
    out: dict[Any, FeedbackInfo] = {}
    for item in store.feedback(kind="choice"):
        kept = item.value.get("kept", item.message_id)
        where = _set_key(trees, item, kept) if isinstance(kept, str) else None
        if where is None:
            summary.skipped["choices of a message no longer stored"] += 1
            continue
        out[(item.user_id, *where)] = item
    return out


def _choice_sides(
    trees: _Trees, item: FeedbackInfo, summary: ExportSummary
) -> tuple[Message, list[Message], tuple[Turn, ...]] | None:
    """The kept reply, the other versions it was kept over, and their prompt (None: skipped, counted)."""
    cid = item.conversation_id
    kept = trees.message(cid, item.value.get("kept", item.message_id))
    assert kept is not None  # _choices kept only stored ones
    if kept.role != "assistant":
        summary.skipped["choices between user messages (edited questions)"] += 1
        return None
    if not _usable(kept):
        summary.skipped["choices of a cancelled or empty reply"] += 1
        return None
    prompt = trees.prompt(cid, kept.parent_id)
    if prompt is None:
        summary.skipped["choices of a reply to no user message"] += 1
        return None
    listed = item.value.get("of")
    others = [
        m
        for m in trees.replies(cid, kept.parent_id)
        if m.id != kept.id and (not isinstance(listed, list) or m.id in listed) and m.role == "assistant"
    ]
    usable = []
    for other in others:
        if not _usable(other):
            summary.skipped["cancelled or empty versions"] += 1
        elif other.text.strip() == kept.text.strip():
            summary.skipped["versions identical to the kept one"] += 1
        else:
            usable.append(other)
    if not usable:
        summary.skipped["choices with no other version to compare"] += 1
        return None
    return kept, usable, prompt


def _choice_preferences(
    store: Store, trees: _Trees, since: datetime | None, summary: ExportSummary
) -> Iterator[Preference]:
    for item in _choices(store, trees, summary).values():
        if _too_old(item.created_at, since, summary, "choices"):
            continue
        sides = _choice_sides(trees, item, summary)
        if sides is None:
            continue
        kept, others, prompt = sides
        user, meta = _who(trees, item.conversation_id, item.user_id)
        for other in others:
            summary.exported["choice"] += 1
            yield Preference(
                prompt,
                _reply(kept),
                _reply(other),
                id=f"choice:{item.id}:{other.id}",
                source="choice",
                user_id=user,
                meta={"conversation": item.conversation_id, "chosen": kept.id, "rejected": other.id, **meta},
            )


# --------------------------------------------------------------------------------------------
# Demonstrations


def _score(item: FeedbackInfo) -> float:
    score = item.value.get("score")
    return float(score) if isinstance(score, int | float) and not isinstance(score, bool) else 0.0


def read_demonstrations(
    store: Store, *, since: datetime | None = None, summary: ExportSummary | None = None
) -> Iterator[Demonstration]:
    """Replies rated up, each with the branch it ends (see the module docstring)."""
    summary = summary if summary is not None else ExportSummary("sft")
    trees = _Trees(store)
    latest = _latest(store.feedback(kind="rating"), lambda f: (f.user_id, f.message_id))
    by_message: dict[str, list[FeedbackInfo]] = defaultdict(list)
    for item in latest.values():
        by_message[item.message_id].append(item)
    for message_id, ratings in by_message.items():
        ups = [r for r in ratings if _score(r) > 0]
        if not ups:
            summary.skipped["replies rated down (or neutral)"] += 1
            continue
        if any(_score(r) < 0 for r in ratings):
            summary.skipped["replies rated up by one user and down by another"] += 1
            continue
        newest = max(ups, key=lambda r: r.created_at)
        if _too_old(newest.created_at, since, summary, "ratings"):
            continue
        cid = newest.conversation_id
        message = trees.message(cid, message_id)
        if message is None or not _usable(message):
            summary.skipped["rated messages that are not a whole stored reply"] += 1
            continue
        turns = store_turns(trees.branch(cid, message_id), Counter())
        if not turns or turns[-1] != Turn("assistant", message.text) or not any(t.role == "user" for t in turns):
            summary.skipped["rated replies before the user spoke"] += 1
            continue
        user, meta = _who(trees, cid, newest.user_id)
        summary.exported["rating"] += 1
        yield Demonstration(
            tuple(turns),
            id=f"rating:{message_id}",
            source="rating",
            user_id=user,
            meta={"conversation": cid, "message": message_id, **({"bot": message.bot} if message.bot else {}), **meta},
        )


# --------------------------------------------------------------------------------------------
# Rankings


@dataclass
class _Signal:
    """One user's judgement of one sibling set: message ids with their ranks (0 = best)."""

    source: str
    id: str
    ranked: list[tuple[str, int]]
    created_at: datetime
    judge: str | None


def _from_ranking(trees: _Trees, item: FeedbackInfo) -> tuple[Any, _Signal] | str:
    """(sibling set, signal) of a ``ranking`` feedback, or why it is skipped."""
    order, ties = item.value.get("order"), item.value.get("ties") or []
    if not isinstance(order, list) or not all(isinstance(m, str) for m in order) or len(set(order)) != len(order):
        return "rankings without an order of distinct message ids"
    if not isinstance(ties, list) or not all(isinstance(t, list) and set(t) <= set(order) for t in ties):
        return "rankings whose ties name messages outside the order"
    keys = {_set_key(trees, item, m) for m in order}
    if None in keys:
        return "rankings naming a message no longer stored"
    if len(keys) != 1:
        return "rankings of messages that are not replies to one message"
    group = {m: i for i, tied in enumerate(ties) for m in tied}
    level: dict[Any, int] = {}
    ranked = []
    for m in order:
        tie = group.get(m, ("alone", m))
        level.setdefault(tie, len(level))
        ranked.append((m, level[tie]))
    return keys.pop(), _Signal("ranking", f"ranking:{item.id}", ranked, item.created_at, item.user_id)


def _from_choice(trees: _Trees, item: FeedbackInfo, summary: ExportSummary) -> _Signal | None:
    """The kept version first, the others tied after it."""
    sides = _choice_sides(trees, item, summary)
    if sides is None:
        return None
    kept, others, _ = sides
    ranked = [(str(kept.id), 0), *((str(m.id), 1) for m in others)]
    return _Signal("choice", f"choice:{item.id}", ranked, item.created_at, item.user_id)


def _thumb_level(rating: FeedbackInfo | None) -> int:
    """Up 0, unrated (or neutral) 1, down 2."""
    score = _score(rating) if rating is not None else 0.0
    return 0 if score > 0 else 2 if score < 0 else 1


def _from_thumbs(
    trees: _Trees, store: Store, summary: ExportSummary
) -> Iterator[tuple[tuple[Any, str | None], _Signal]]:
    """Each user's thumbs over a sibling set of two or more replies, when they are mixed."""
    latest = _latest(store.feedback(kind="rating"), lambda f: (f.user_id, f.message_id))
    sets: dict[tuple[Any, str | None], dict[str, FeedbackInfo]] = defaultdict(dict)
    for item in latest.values():
        message = trees.message(item.conversation_id, item.message_id)
        if message is not None and message.role == "assistant":
            sets[((item.conversation_id, message.parent_id), item.user_id)][item.message_id] = item
    for (where, judge), ratings in sets.items():
        siblings = [m for m in trees.replies(*where) if _usable(m)]
        if len(siblings) < 2:
            continue
        levels = {str(m.id): _thumb_level(ratings.get(str(m.id))) for m in siblings}
        if len(set(levels.values())) < 2:
            summary.skipped["sibling sets whose thumbs are all alike"] += 1
            continue
        dense = {v: i for i, v in enumerate(sorted(set(levels.values())))}
        newest = max(r.created_at for r in ratings.values())
        key = f"rating:{where[1]}:{judge}" if judge else f"rating:{where[1]}"
        yield (where, judge), _Signal("rating", key, [(m, dense[level]) for m, level in levels.items()], newest, judge)


def read_rankings(
    store: Store, *, since: datetime | None = None, summary: ExportSummary | None = None
) -> Iterator[Ranking]:
    """Sibling replies ranked by rankings, choices or thumbs (see the module docstring)."""
    summary = summary if summary is not None else ExportSummary("rankings")
    trees = _Trees(store)
    signals: dict[tuple[Any, str | None], dict[str, _Signal]] = defaultdict(dict)
    for item in store.feedback(kind="ranking"):
        found = _from_ranking(trees, item)
        if isinstance(found, str):
            summary.skipped[found] += 1
        else:
            signals[(found[0], item.user_id)]["ranking"] = found[1]  # the latest of a user's rankings of a set
    for (judge, *where), item in _choices(store, trees, summary).items():
        choice = _from_choice(trees, item, summary)
        if choice is not None:
            signals[(tuple(where), judge)]["choice"] = choice
    for key, thumbs in _from_thumbs(trees, store, summary):
        signals[key]["rating"] = thumbs
    for (where, _judge), found in signals.items():
        signal = next(found[s] for s in ("ranking", "choice", "rating") if s in found)
        if len(found) > 1:
            summary.skipped["signals superseded by a more explicit one on the same set"] += len(found) - 1
        if _too_old(signal.created_at, since, summary, SOURCES[signal.source]):
            continue
        ranking = _ranking(trees, where, signal, summary)
        if ranking is not None:
            summary.exported[signal.source] += 1
            yield ranking


def _ranking(trees: _Trees, where: tuple[str, str | None], signal: _Signal, summary: ExportSummary) -> Ranking | None:
    cid, parent = where
    prompt = trees.prompt(cid, parent)
    if prompt is None:
        summary.skipped[f"{SOURCES[signal.source]} of replies to no user message"] += 1
        return None
    members: list[tuple[Message, int]] = []
    for message_id, rank in sorted(signal.ranked, key=lambda pair: pair[1]):
        message = trees.message(cid, message_id)
        if message is None or not _usable(message):
            summary.skipped["ranked messages that are not whole replies (left out of their ranking)"] += 1
        elif any(m.text.strip() == message.text.strip() for m, _ in members):
            summary.skipped["ranked replies repeating a better one (left out of their ranking)"] += 1
        else:
            members.append((message, rank))
    ranks = [rank for _, rank in members]
    if len(members) < 2 or len(set(ranks)) < 2:
        summary.skipped[f"{SOURCES[signal.source]} left with fewer than two differently ranked replies"] += 1
        return None
    dense = {v: i for i, v in enumerate(sorted(set(ranks)))}
    ranks = [dense[r] for r in ranks]
    user, meta = _who(trees, cid, signal.judge)
    return Ranking(
        prompt,
        tuple(_reply(m) for m, _ in members),
        tuple(ranks) if ranks != list(range(len(ranks))) else None,
        id=signal.id,
        source=signal.source,
        user_id=user,
        meta={"conversation": cid, "messages": [m.id for m, _ in members], **meta},
    )


# --------------------------------------------------------------------------------------------
# Writing


def read_export(
    kind: str, store: Store, *, since: datetime | None = None, summary: ExportSummary | None = None
) -> Iterator[Record]:
    """The records of the export ``kind`` (one of :data:`EXPORT_KINDS`)."""
    readers: dict[str, Callable[..., Iterator[Record]]] = {
        "preferences": read_preferences,
        "sft": read_demonstrations,
        "rankings": read_rankings,
    }
    if kind not in readers:
        raise ConfigError(f"export {kind!r}: expected one of {', '.join(EXPORT_KINDS)}")
    return readers[kind](store, since=since, summary=summary)


def write_jsonl_atomically(records: Iterable[Record], path: str | Path) -> int:
    """Write records as JSON Lines to a file beside ``path`` that then replaces it: a killed export
    leaves the old file or none, never half of one. Returns how many were written."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with staging.open("x", encoding="utf-8") as file:
            for record in records:
                file.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                count += 1
            file.flush()
            os.fsync(file.fileno())
        os.replace(staging, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            staging.unlink(missing_ok=True)
    return count


def export(kind: str, store: Store, out: str | Path, *, since: datetime | None = None) -> ExportSummary:
    """Write the export ``kind`` of ``store`` to ``out`` (JSON Lines, atomically); what it holds."""
    if Path(out).suffix.lower() != ".jsonl":
        raise ConfigError(f"--out {out}: the export is JSON Lines; name it *.jsonl (readers go by the suffix)")
    summary = ExportSummary(kind)
    write_jsonl_atomically(read_export(kind, store, since=since, summary=summary), out)
    return summary


def parse_since(text: str | None) -> datetime | None:
    """``--since``: an ISO 8601 date or time, UTC unless it names its offset."""
    if text is None or not text.strip():
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: expected a date such as 2025-01-31 or a time such as 2025-01-31T12:00 (UTC)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
