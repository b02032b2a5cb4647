"""What the retrieval bot knows, kept in the store: exchanges, who taught them, and a change log.

An exchange is served only while its status is ``approved``. Imported corpora are approved once
they pass the moderation screen. Replies learned from users start ``quarantined`` and are
approved when enough distinct users have taught the same reply to the same context, or when an
admin approves them. Every change to the served set is appended to ``retrieval_changes`` (``add``,
``remove``, and ``embed`` when a served exchange gets its embeddings); the index replays that
log, so every process (and every restart) converges on the same served set.

A corpus is imported in two passes: first its exchanges are stored and served without embeddings
(the index answers from their words at once), then the embeddings are computed and stored. How
far the first pass has come is recorded in ``retrieval_imports``, in the same transaction as the
exchanges it covers, so an interrupted import resumes exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rejoinder.dialogue import utcnow
from rejoinder.errors import RejoinderError, StoreError
from rejoinder.store import Store
from rejoinder.store.models import RetrievalChange, RetrievalExchange, RetrievalImport, RetrievalTeacher

APPROVED, QUARANTINED, REJECTED = "approved", "quarantined", "rejected"
LEARNED = "learned"

_SPACES = re.compile(r"\s+")
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)


def normalise(text: str) -> str:
    """Case-, space- and edge-punctuation-insensitive form used to recognise the same utterance."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _EDGE_PUNCTUATION.sub("", _SPACES.sub(" ", text).strip())


def exchange_key(context_last: str, reply: str) -> str:
    return hashlib.sha256(f"{normalise(context_last)}\x1f{normalise(reply)}".encode()).hexdigest()


def pack_vector(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float16).tobytes()


def unpack_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), dim).astype(np.float32)


def _insert_ignoring_duplicates(session: Session, model: type, values: dict[str, Any]) -> Any:
    """INSERT that does nothing when a unique key is already taken (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return session.execute(dialect_insert(model).values(**values).on_conflict_do_nothing())


@dataclass(frozen=True)
class NewExchange:
    """An exchange to store as served; ``vector`` None until its embeddings are computed."""

    context: tuple[str, ...]
    reply: str
    source: str
    conversation: str | None
    vector: np.ndarray | None = None
    toxicity: float = 0.0
    reply_vector: np.ndarray | None = None


@dataclass(frozen=True)
class ImportRecord:
    """How far the import of one corpus (read with one context window) has come."""

    id: int
    corpus: str
    window: int
    position: int
    total: int | None
    imported: int
    duplicates: int
    refused: int
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @property
    def complete(self) -> bool:
        return self.completed_at is not None


@dataclass(frozen=True)
class Unembedded:
    """A served exchange still without embeddings."""

    id: int
    context: list[str]
    reply: str


@dataclass(frozen=True)
class ServedReply:
    """What the bot may say: a served exchange's reply, where it came from, and its embedding."""

    reply: str
    context: list[str]
    source: str
    vector: np.ndarray | None
    toxicity: float = 0.0
    """The screen's score when the reply was stored."""


@dataclass(frozen=True)
class Taught:
    """What became of one thing a user taught."""

    exchange_id: int
    status: str
    teachers: int
    created: bool


@dataclass(frozen=True)
class ExchangeInfo:
    id: int
    context: list[str]
    reply: str
    source: str
    status: str
    teachers: int
    toxicity: float


class RetrievalMemory:
    """The exchanges of one collection (one retrieval bot's memory) in a store."""

    def __init__(self, store: Store, collection: str = "default") -> None:
        self.store = store
        self.collection = collection

    # -- import -------------------------------------------------------------------------------------
    def add_approved(self, rows: Sequence[NewExchange]) -> int:
        """Insert corpus exchanges as served; those already known are skipped. Returns how many were new."""
        if not rows:
            return 0
        with self.store.session() as s:
            return self._add_approved(s, rows)

    def _add_approved(self, s: Session, rows: Sequence[NewExchange]) -> int:
        now = utcnow()
        keyed = {exchange_key(r.context[-1], r.reply): r for r in rows}
        known = set(
            s.scalars(
                select(RetrievalExchange.key).where(
                    RetrievalExchange.collection == self.collection, RetrievalExchange.key.in_(list(keyed))
                )
            )
        )
        fresh = [(key, row) for key, row in keyed.items() if key not in known]
        if not fresh:
            return 0
        s.execute(
            insert(RetrievalExchange.__table__),  # Core, not the ORM's bulk path: a third of the time
            [
                {
                    "collection": self.collection,
                    "key": key,
                    "context": list(row.context),
                    "reply": row.reply,
                    "source": row.source,
                    "conversation": row.conversation,
                    "status": APPROVED,
                    "toxicity": row.toxicity,
                    "vector": pack_vector(row.vector) if row.vector is not None else None,
                    "reply_vector": pack_vector(row.reply_vector) if row.reply_vector is not None else None,
                    "created_at": now,
                    "updated_at": now,
                }
                for key, row in fresh
            ],
        )
        ids = s.execute(
            select(RetrievalExchange.id).where(
                RetrievalExchange.collection == self.collection,
                RetrievalExchange.key.in_([key for key, _ in fresh]),
            )
        ).scalars()
        self._log(s, [(i, "add") for i in ids], now)
        return len(fresh)

    def import_record(self, corpus: str, window: int) -> ImportRecord:
        """The progress record of importing ``corpus`` with ``window``, created (at position 0) if new."""
        now = utcnow()
        with self.store.session() as s:
            _insert_ignoring_duplicates(
                s,
                RetrievalImport,
                {
                    "collection": self.collection,
                    "corpus": corpus,
                    "window": window,
                    "position": 0,
                    "imported": 0,
                    "duplicates": 0,
                    "refused": 0,
                    "started_at": now,
                    "updated_at": now,
                },
            )
            row = s.scalars(
                select(RetrievalImport).where(
                    RetrievalImport.collection == self.collection,
                    RetrievalImport.corpus == corpus,
                    RetrievalImport.window == window,
                )
            ).one()
            return _record(row)

    def find_import(self, corpus: str, window: int) -> ImportRecord | None:
        with self.store.session() as s:
            row = s.scalars(
                select(RetrievalImport).where(
                    RetrievalImport.collection == self.collection,
                    RetrievalImport.corpus == corpus,
                    RetrievalImport.window == window,
                )
            ).first()
            return _record(row) if row is not None else None

    def imports(self) -> list[ImportRecord]:
        """Every corpus import of this collection, oldest first."""
        with self.store.session() as s:
            return [
                _record(row)
                for row in s.scalars(
                    select(RetrievalImport)
                    .where(RetrievalImport.collection == self.collection)
                    .order_by(RetrievalImport.id)
                )
            ]

    def get_import(self, record_id: int) -> ImportRecord:
        with self.store.session() as s:
            row = s.get(RetrievalImport, record_id)
            if row is None:
                raise RejoinderError(f"no import record {record_id}")
            return _record(row)

    def import_batch(
        self, record_id: int, start: int, end: int, rows: Sequence[NewExchange], refused: int
    ) -> int | None:
        """Store one batch of an import and move its record from ``start`` to ``end``, in one transaction.

        Returns how many exchanges were new, or None (and writes nothing) when the record is no
        longer at ``start``: another process imported this batch meanwhile.
        """
        now = utcnow()
        with self.store.session() as s:
            # Claiming the batch first also takes SQLite's write lock before anything is read.
            claimed = s.execute(
                update(RetrievalImport)
                .where(RetrievalImport.id == record_id, RetrievalImport.position == start)
                .values(position=end, updated_at=now)
            )
            if claimed.rowcount != 1:
                s.rollback()
                return None
            added = self._add_approved(s, rows) if rows else 0
            s.execute(
                update(RetrievalImport)
                .where(RetrievalImport.id == record_id)
                .values(
                    imported=RetrievalImport.imported + added,
                    duplicates=RetrievalImport.duplicates + (len(rows) - added),
                    refused=RetrievalImport.refused + refused,
                )
            )
            return added

    def set_import_total(self, record_id: int, total: int) -> None:
        with self.store.session() as s:
            s.execute(update(RetrievalImport).where(RetrievalImport.id == record_id).values(total=total))

    def finish_import(self, record_id: int, total: int) -> None:
        """Mark an import complete: its corpus (``total`` exchanges) has been read to the end."""
        now = utcnow()
        with self.store.session() as s:
            s.execute(
                update(RetrievalImport)
                .where(RetrievalImport.id == record_id)
                .values(total=total, completed_at=now, updated_at=now)
            )

    # -- embeddings -----------------------------------------------------------------------------------
    def _unembedded_query(self) -> Any:
        return select(RetrievalExchange.id).where(
            RetrievalExchange.collection == self.collection,
            RetrievalExchange.status == APPROVED,
            RetrievalExchange.vector.is_(None),
        )

    def count_unembedded(self) -> int:
        """How many served exchanges have no embeddings yet (they are found by their words only)."""
        with self.store.session() as s:
            return s.scalar(select(func.count()).select_from(self._unembedded_query().subquery())) or 0

    def unembedded(self, after: int = 0, limit: int = 256) -> list[Unembedded]:
        """Served exchanges without embeddings, by id, after ``after``."""
        with self.store.session() as s:
            rows = s.execute(
                select(RetrievalExchange.id, RetrievalExchange.context, RetrievalExchange.reply)
                .where(
                    RetrievalExchange.collection == self.collection,
                    RetrievalExchange.status == APPROVED,
                    RetrievalExchange.vector.is_(None),
                    RetrievalExchange.id > after,
                )
                .order_by(RetrievalExchange.id)
                .limit(limit)
            ).all()
        return [Unembedded(i, list(c), r) for i, c, r in rows]

    def set_vectors(self, rows: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """Store (id, context vector, reply vector) of exchanges that had none, and log them for the index."""
        if not rows:
            return
        now = utcnow()
        table = RetrievalExchange.__table__
        with self.store.session() as s:
            s.execute(
                update(table)
                .where(table.c.id == bindparam("row_id"), table.c.vector.is_(None))
                .values(vector=bindparam("v"), reply_vector=bindparam("rv"), updated_at=now),
                [{"row_id": i, "v": pack_vector(v), "rv": pack_vector(rv)} for i, v, rv in rows],
            )
            self._log(s, [(i, "embed") for i, _, _ in rows], now)

    def _log(self, s: Any, entries: Iterable[tuple[int, str]], now: datetime) -> None:
        rows = [{"collection": self.collection, "exchange_id": i, "op": op, "created_at": now} for i, op in entries]
        if rows:
            s.execute(insert(RetrievalChange), rows)

    # -- learning -------------------------------------------------------------------------------------
    def teachings_since(self, user_id: str, since: datetime) -> int:
        with self.store.session() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(RetrievalTeacher)
                    .where(RetrievalTeacher.user_id == user_id, RetrievalTeacher.created_at >= since)
                )
                or 0
            )

    def lesson(self, context_last: str, reply: str, user_id: str) -> tuple[int | None, str | None, int]:
        """What teaching ``reply`` to ``context_last`` would find, read only: (exchange id, status,
        distinct teachers counting ``user_id``); None, None, 1 for a reply nobody taught yet."""
        key = exchange_key(context_last, reply)
        with self.store.session() as s:
            row = s.execute(
                select(RetrievalExchange.id, RetrievalExchange.status).where(
                    RetrievalExchange.collection == self.collection, RetrievalExchange.key == key
                )
            ).first()
            if row is None:
                return None, None, 1
            teachers = set(
                s.scalars(select(RetrievalTeacher.user_id).where(RetrievalTeacher.exchange_id == row.id).distinct())
            )
            return row.id, row.status, len(teachers | {user_id})

    def teach(
        self,
        context: Sequence[str],
        reply: str,
        *,
        user_id: str,
        conversation_id: str | None,
        vector: np.ndarray | None,
        toxicity: float,
        min_teachers: int,
        reply_vector: np.ndarray | None = None,
    ) -> Taught:
        """Record that ``user_id`` answered ``context`` with ``reply``, in a transaction of its own."""
        for _attempt in range(3):
            try:
                with self.store.session() as s:
                    return self.teach_in(
                        s,
                        context,
                        reply,
                        user_id=user_id,
                        conversation_id=conversation_id,
                        vector=vector,
                        toxicity=toxicity,
                        min_teachers=min_teachers,
                        reply_vector=reply_vector,
                    )
            except StoreError as exc:
                if not isinstance(exc.__cause__, IntegrityError):
                    raise
        raise RejoinderError(f"could not record what {user_id} taught (conflicting writers)")

    def teach_in(
        self,
        s: Session,
        context: Sequence[str],
        reply: str,
        *,
        user_id: str,
        conversation_id: str | None,
        vector: np.ndarray | None,
        toxicity: float,
        min_teachers: int,
        reply_vector: np.ndarray | None = None,
    ) -> Taught:
        """:meth:`teach` inside the caller's transaction ``s`` (a turn's), so it is undone with it.

        Approves the exchange once ``min_teachers`` distinct users have taught it. Another process
        creating the same exchange meanwhile is no conflict: the insert yields to it.
        """
        key = exchange_key(context[-1], reply)
        now = utcnow()
        inserted = _insert_ignoring_duplicates(
            s,
            RetrievalExchange,
            {
                "collection": self.collection,
                "key": key,
                "context": list(context),
                "reply": reply,
                "source": LEARNED,
                "conversation": conversation_id,
                "status": QUARANTINED,
                "toxicity": toxicity,
                "vector": pack_vector(vector) if vector is not None else None,
                "reply_vector": pack_vector(reply_vector) if reply_vector is not None else None,
                "created_at": now,
                "updated_at": now,
            },
        )
        row = s.scalars(
            select(RetrievalExchange).where(
                RetrievalExchange.collection == self.collection, RetrievalExchange.key == key
            )
        ).one()
        s.add(RetrievalTeacher(exchange_id=row.id, user_id=user_id, conversation_id=conversation_id, created_at=now))
        s.flush()
        teachers = (
            s.scalar(
                select(func.count(func.distinct(RetrievalTeacher.user_id))).where(
                    RetrievalTeacher.exchange_id == row.id
                )
            )
            or 0
        )
        if row.status == QUARANTINED and teachers >= min_teachers and row.vector is not None:
            row.status = APPROVED
            row.updated_at = now
            self._log(s, [(row.id, "add")], now)
        s.flush()
        return Taught(row.id, row.status, teachers, bool(inserted.rowcount))

    # -- administration ---------------------------------------------------------------------------------
    def review(self, *, status: str = QUARANTINED, limit: int = 50) -> list[ExchangeInfo]:
        """Exchanges with ``status``, the most taught first."""
        with self.store.session() as s:
            teachers = (
                select(RetrievalTeacher.exchange_id, func.count(func.distinct(RetrievalTeacher.user_id)).label("n"))
                .group_by(RetrievalTeacher.exchange_id)
                .subquery()
            )
            query = (
                select(RetrievalExchange, func.coalesce(teachers.c.n, 0))
                .outerjoin(teachers, teachers.c.exchange_id == RetrievalExchange.id)
                .where(RetrievalExchange.collection == self.collection, RetrievalExchange.status == status)
                .order_by(func.coalesce(teachers.c.n, 0).desc(), RetrievalExchange.id)
                .limit(limit)
            )
            return [
                ExchangeInfo(e.id, list(e.context), e.reply, e.source, e.status, n, e.toxicity)
                for e, n in s.execute(query)
            ]

    def set_status(self, ids: Sequence[int], status: str) -> int:
        """Approve or reject exchanges by id; returns how many changed."""
        if status not in (APPROVED, REJECTED, QUARANTINED):
            raise RejoinderError(f"unknown status {status!r}")
        now = utcnow()
        with self.store.session() as s:
            rows = s.scalars(
                select(RetrievalExchange).where(
                    RetrievalExchange.collection == self.collection, RetrievalExchange.id.in_(list(ids))
                )
            ).all()
            missing = sorted(set(ids) - {r.id for r in rows})
            if missing:
                raise RejoinderError(
                    f"no exchange with id {', '.join(map(str, missing))} in collection {self.collection}"
                )
            changed = []
            for row in rows:
                if row.status == status:
                    continue
                if status == APPROVED and row.vector is None:
                    raise RejoinderError(f"exchange {row.id} has no embedding and cannot be served")
                if row.status == APPROVED:
                    changed.append((row.id, "remove"))
                elif status == APPROVED:
                    changed.append((row.id, "add"))
                row.status = status
                row.updated_at = now
            self._log(s, changed, now)
            return sum(1 for row in rows if row.status == status)

    def forget(self, ids: Sequence[int]) -> int:
        """Delete exchanges (and their teachers) by id."""
        now = utcnow()
        with self.store.session() as s:
            served = s.scalars(
                select(RetrievalExchange.id).where(
                    RetrievalExchange.collection == self.collection,
                    RetrievalExchange.id.in_(list(ids)),
                    RetrievalExchange.status == APPROVED,
                )
            ).all()
            result = s.execute(
                delete(RetrievalExchange).where(
                    RetrievalExchange.collection == self.collection, RetrievalExchange.id.in_(list(ids))
                )
            )
            s.execute(delete(RetrievalTeacher).where(RetrievalTeacher.exchange_id.in_(list(ids))))
            self._log(s, [(i, "remove") for i in served], now)
            return result.rowcount or 0

    def forget_user(self, user_id: str) -> tuple[int, int]:
        """Remove everything ``user_id`` taught: their teachings, and learned exchanges nobody else taught.

        Learned exchanges that other users also taught stay, but lose this user's vote: if that
        leaves them with fewer teachers than they needed, an admin can review them again.
        Returns (teachings removed, exchanges removed).
        """
        with self.store.session() as s:
            taught = s.scalars(
                select(RetrievalTeacher.exchange_id)
                .join(RetrievalExchange, RetrievalExchange.id == RetrievalTeacher.exchange_id)
                .where(RetrievalTeacher.user_id == user_id, RetrievalExchange.collection == self.collection)
            ).all()
            removed_teachings = s.execute(
                delete(RetrievalTeacher).where(
                    RetrievalTeacher.user_id == user_id, RetrievalTeacher.exchange_id.in_(list(set(taught)))
                )
            ).rowcount
            orphans = s.scalars(
                select(RetrievalExchange.id).where(
                    RetrievalExchange.id.in_(list(set(taught))),
                    RetrievalExchange.source == LEARNED,
                    ~select(RetrievalTeacher.id).where(RetrievalTeacher.exchange_id == RetrievalExchange.id).exists(),
                )
            ).all()
        return removed_teachings or 0, self.forget(orphans) if orphans else 0

    def stats(self) -> dict[str, int]:
        with self.store.session() as s:
            rows = s.execute(
                select(RetrievalExchange.status, func.count())
                .where(RetrievalExchange.collection == self.collection)
                .group_by(RetrievalExchange.status)
            ).all()
        return {status: count for status, count in rows}

    # -- what the index replays -------------------------------------------------------------------
    def last_change(self) -> int:
        with self.store.session() as s:
            return (
                s.scalar(select(func.max(RetrievalChange.id)).where(RetrievalChange.collection == self.collection)) or 0
            )

    def changes_after(self, change_id: int, limit: int = 20_000) -> list[tuple[int, int, str]]:
        with self.store.session() as s:
            return [
                (c.id, c.exchange_id, c.op)
                for c in s.scalars(
                    select(RetrievalChange)
                    .where(RetrievalChange.collection == self.collection, RetrievalChange.id > change_id)
                    .order_by(RetrievalChange.id)
                    .limit(limit)
                )
            ]

    def served(self, ids: Sequence[int]) -> list[tuple[int, list[str], bytes | None]]:
        """(id, context, context vector or None) of the given exchanges that are currently served."""
        out = []
        with self.store.session() as s:
            for start in range(0, len(ids), 5000):
                chunk = list(ids[start : start + 5000])
                out.extend(
                    s.execute(
                        select(RetrievalExchange.id, RetrievalExchange.context, RetrievalExchange.vector).where(
                            RetrievalExchange.id.in_(chunk), RetrievalExchange.status == APPROVED
                        )
                    ).all()
                )
        return [(i, list(c), v) for i, c, v in out]

    def replies(self, ids: Sequence[int]) -> dict[int, ServedReply]:
        """The served ones among the given exchanges, by id."""
        with self.store.session() as s:
            rows = s.execute(
                select(
                    RetrievalExchange.id,
                    RetrievalExchange.reply,
                    RetrievalExchange.context,
                    RetrievalExchange.source,
                    RetrievalExchange.reply_vector,
                    RetrievalExchange.toxicity,
                ).where(RetrievalExchange.id.in_(list(ids)), RetrievalExchange.status == APPROVED)
            ).all()
        return {
            i: ServedReply(
                reply,
                list(context),
                source,
                np.frombuffer(blob, dtype=np.float16).astype(np.float32) if blob else None,
                float(toxicity or 0.0),
            )
            for i, reply, context, source, blob, toxicity in rows
        }


def _record(row: RetrievalImport) -> ImportRecord:
    return ImportRecord(
        row.id,
        row.corpus,
        row.window,
        row.position,
        row.total,
        row.imported,
        row.duplicates,
        row.refused,
        row.started_at,
        row.updated_at,
        row.completed_at,
    )
