"""The store: conversations, messages and bot state, through SQLAlchemy.

Default: a SQLite file (WAL journal, full sync) in the user data directory. ``REJOINDER_DB_URL``
(or the ``url`` argument) selects any SQLAlchemy URL, PostgreSQL included
(``postgresql+psycopg://user:pass@host/db``). The schema is migrated to the newest revision with
Alembic when the store opens.

Every turn (the user's message, the bot's reply and the bot's new state) is written in one
transaction that is committed before the reply is returned, so a process killed at any moment
loses no answered message, and a state saved by another process in the meantime is detected
(``ConcurrentUpdate``) instead of silently overwritten.

A conversation is a tree of messages: each message has a stable id and a parent, so several
replies can answer one prefix (a regenerated reply, candidates to rank, an edited question).
One branch is active (the conversation's ``active_leaf``); the bot's state after every reply is
kept with the reply, so any branch can be continued from where it was. Feedback (ratings,
comments, rankings among siblings, choices, form answers) is recorded against messages with
who gave it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from rejoinder.dialogue import ROOT_DIGEST, Dialogue, Effect, Message, chain_digest, storable, utcnow
from rejoinder.errors import (
    BattleNotFound,
    ConcurrentUpdate,
    ConversationNotFound,
    InvalidMessage,
    MessageNotFound,
    StoreError,
)
from rejoinder.store.models import ApiKey, ArenaBattle, BotState, Conversation, FeedbackRow, MessageRow

ENV_URL = "REJOINDER_DB_URL"
FEEDBACK_KINDS = ("rating", "comment", "ranking", "choice", "form")
"""rating: ``{"score": -1..1}`` (thumbs down/up, or a scale); comment: ``{"text"}``; ranking: ``{"order":
[message ids, best first], "ties": [[ids], ...]}`` over sibling replies; choice: ``{"kept": id}``
(which of the siblings a user kept); form: ``{question: answer}`` (the labeling form)."""
MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 7_364_201_966
"""The PostgreSQL advisory lock key that serialises migrations."""


def data_dir() -> Path:
    """Where Rejoinder keeps its files (``REJOINDER_HOME`` overrides the platform's user data dir)."""
    override = os.environ.get("REJOINDER_HOME")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("rejoinder", appauthor=False))


def default_url() -> str:
    return os.environ.get(ENV_URL) or f"sqlite:///{data_dir() / 'rejoinder.db'}"


@dataclass(frozen=True)
class ConversationInfo:
    id: str
    bot: str
    bot_options: dict[str, Any]
    user_id: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int
    active_leaf: str | None = None


ARENA_VOTES = ("a", "b", "tie", "bad")
"""An arena vote: the left contestant (``a``) won, the right one (``b``), a tie, or both were bad."""


@dataclass(frozen=True)
class BattleInfo:
    id: str
    user_id: str | None
    created_at: datetime
    contestant_a: str
    contestant_b: str
    conversation_a: str
    conversation_b: str
    vote: str | None = None
    voted_at: datetime | None = None


@dataclass(frozen=True)
class FeedbackInfo:
    id: str
    conversation_id: str
    message_id: str
    user_id: str | None
    kind: str
    value: dict[str, Any]
    created_at: datetime


def _aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything the store writes is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Store:
    """Conversations and their state in a SQL database."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = url or default_url()
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise StoreError(f"{self.url!r} is not a database URL (expected e.g. sqlite:///path.db)") from None
        self.display_url = parsed.render_as_string(hide_password=True)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder {folder} for {self.display_url}: {exc.strerror}") from None
        try:
            self.engine: Engine = create_engine(self.url, pool_pre_ping=not self.is_sqlite)
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"the database driver {exc.name!r} for {self.display_url} is not installed "
                "(for PostgreSQL: pip install 'rejoinder[postgres]')"
            ) from None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _set_sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    # -- schema ----------------------------------------------------------------------------------
    def _alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def migrate(self) -> None:
        """Bring the schema to the newest revision this version of Rejoinder knows."""
        from alembic import command
        from alembic.script import ScriptDirectory

        config = self._alembic_config()
        heads = set(ScriptDirectory.from_config(config).get_heads())
        try:
            with self._migration_lock(), self.engine.begin() as connection:
                if self.engine.dialect.name == "postgresql":  # one migrator at a time: servers start together
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                current = self._current_revision(connection)
                known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
                if current is not None and current not in known:
                    raise StoreError(
                        f"the database {self.display_url} is at schema revision {current}, which this "
                        f"version of Rejoinder does not know (newest known: {', '.join(sorted(heads))}); "
                        "upgrade Rejoinder"
                    )
                if current not in heads:
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the database {self.display_url}: {getattr(exc, 'orig', exc)}") from None

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """For a SQLite file, an exclusive lock on ``<file>.migrate.lock`` while the schema is checked and
        migrated, so that processes opening a new database at once do not create its tables twice
        (PostgreSQL takes an advisory lock in the migration's own transaction instead)."""
        database = make_url(self.url).database if self.is_sqlite else None
        if not database or database == ":memory:":
            yield
            return
        import fcntl

        with open(Path(database).expanduser().with_name(Path(database).name + ".migrate.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _current_revision(connection: Any) -> str | None:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()

    def head(self) -> str:
        """The newest schema revision this version of Rejoinder knows."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic_config()).get_current_head() or ""

    def revision(self) -> str | None:
        with self.engine.connect() as connection:
            return self._current_revision(connection)

    # -- sessions --------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(f"database error on {self.display_url}: {exc}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()

    # -- conversations -------------------------------------------------------------------------------
    def create_conversation(
        self,
        bot: str,
        *,
        bot_options: dict[str, Any] | None = None,
        user_id: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> str:
        now = utcnow()
        conversation_id = str(uuid.uuid4())
        with self.session() as s:
            s.add(
                Conversation(
                    id=conversation_id,
                    bot=bot,
                    bot_options=storable(dict(bot_options or {})),
                    user_id=user_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            s.add(
                BotState(
                    conversation_id=conversation_id,
                    bot=bot,
                    state=storable(dict(state or {})),
                    version=0,
                    updated_at=now,
                )
            )
        return conversation_id

    def _info(self, s: Session, row: Conversation) -> ConversationInfo:
        count = s.scalar(select(func.count()).select_from(MessageRow).where(MessageRow.conversation_id == row.id))
        return ConversationInfo(
            row.id,
            row.bot,
            dict(row.bot_options or {}),
            row.user_id,
            _aware(row.created_at),
            _aware(row.updated_at),
            count or 0,
            row.active_leaf,
        )

    def resolve_id(self, text: str) -> str:
        """The id of the one conversation whose id starts with ``text`` (ids are long: any unique
        prefix, of four characters or more, names a conversation)."""
        prefix = text.strip().rstrip("…").rstrip(".")
        if len(prefix) < 4:
            raise ConversationNotFound(text)
        with self.session() as s:
            if s.get(Conversation, prefix) is not None:
                return prefix
            pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            found = list(s.scalars(select(Conversation.id).where(Conversation.id.like(pattern, escape="\\")).limit(6)))
        if not found:
            raise ConversationNotFound(text)
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise ConversationNotFound(text, f"{prefix!r} starts several conversation ids ({shown}); give more of it")
        return found[0]

    def get_conversation(self, conversation_id: str) -> ConversationInfo:
        with self.session() as s:
            row = s.get(Conversation, conversation_id)
            if row is None:
                raise ConversationNotFound(conversation_id)
            return self._info(s, row)

    def list_conversations(
        self,
        *,
        limit: int = 20,
        user_id: str | None = None,
        before: datetime | None = None,
        anonymous: bool = False,
        arena: bool = False,
    ) -> list[ConversationInfo]:
        """Newest first; ``before`` pages on (conversations last updated before it); ``anonymous``
        lists only those without a user. The sides of arena battles are left out unless ``arena``."""
        with self.session() as s:
            query = select(Conversation).order_by(Conversation.updated_at.desc(), Conversation.id).limit(limit)
            if not arena:
                sides = select(ArenaBattle.conversation_a).union(select(ArenaBattle.conversation_b))
                query = query.where(Conversation.id.not_in(sides))
            if user_id is not None:
                query = query.where(Conversation.user_id == user_id)
            elif anonymous:
                query = query.where(Conversation.user_id.is_(None))
            if before is not None:
                query = query.where(Conversation.updated_at < before)
            return [self._info(s, row) for row in s.scalars(query)]

    def delete_conversation(self, conversation_id: str) -> None:
        with self.session() as s:
            row = s.get(Conversation, conversation_id)
            if row is None:
                raise ConversationNotFound(conversation_id)
            s.delete(row)

    @staticmethod
    def _message(m: MessageRow) -> Message:
        return Message(
            role=m.role,  # type: ignore[arg-type]
            text=m.text,
            bot=m.bot,
            user_id=m.user_id,
            created_at=_aware(m.created_at),
            meta=dict(m.meta or {}),
            id=m.message_id,
            parent_id=m.parent_id,
        )

    def _branch(self, s: Session, conversation_id: str, leaf: str | None) -> list[MessageRow]:
        """The messages from the first one down to ``leaf``, in order."""
        rows = {
            m.message_id: m for m in s.scalars(select(MessageRow).where(MessageRow.conversation_id == conversation_id))
        }
        if leaf is not None and leaf not in rows:
            raise MessageNotFound(leaf, conversation_id)
        branch = []
        cursor = leaf
        while cursor is not None:
            row = rows[cursor]
            branch.append(row)
            cursor = row.parent_id
        branch.reverse()
        return branch

    def load_dialogue(self, conversation_id: str, *, leaf: str | None = None) -> Dialogue:
        """The conversation's active branch (or the branch ending at ``leaf``) and the bot's state there."""
        with self.session() as s:
            row = s.get(Conversation, conversation_id)
            if row is None:
                raise ConversationNotFound(conversation_id)
            state_row = s.get(BotState, conversation_id)
            active = leaf is None or leaf == row.active_leaf
            branch = self._branch(s, conversation_id, row.active_leaf if leaf is None else leaf)
            if active:
                state = dict(state_row.state) if state_row else {}
            else:
                state = self._state_after(branch, conversation_id)
            return Dialogue(
                bot=row.bot,
                messages=[self._message(m) for m in branch],
                state=state,
                conversation_id=conversation_id,
                user_id=row.user_id,
                version=state_row.version if state_row else 0,
            )

    @staticmethod
    def _state_after(branch: Sequence[MessageRow], conversation_id: str) -> dict[str, Any]:
        """The bot's state right after the last message of ``branch`` (a user message: after the one before)."""
        for m in reversed(branch):
            if m.role == "user":
                continue
            if m.state is None:
                raise InvalidMessage(
                    f"conversation {conversation_id}: the bot's state after message {m.message_id} was not kept "
                    "(it was stored before branches existed); only the latest reply can be continued"
                )
            return dict(m.state)
        return {}

    def message_tree(self, conversation_id: str) -> list[Message]:
        """Every message of the conversation, all branches, in the order they were written."""
        with self.session() as s:
            if s.get(Conversation, conversation_id) is None:
                raise ConversationNotFound(conversation_id)
            return [
                self._message(m)
                for m in s.scalars(
                    select(MessageRow).where(MessageRow.conversation_id == conversation_id).order_by(MessageRow.seq)
                )
            ]

    def append_turn(
        self,
        conversation_id: str,
        messages: Sequence[Message],
        state: dict[str, Any],
        *,
        expected_version: int,
        effects: Sequence[Effect] = (),
        parent_id: str | Literal["active"] | None = "active",
    ) -> int:
        """Write messages, the bot's new state and the turn's ``effects`` in one transaction; return
        the new state version.

        The messages form a chain below ``parent_id`` (default: the active branch's leaf; ``None``:
        a new root); messages without an id get one. The last message becomes the active leaf and
        keeps ``state`` as the state after it.

        Raises :class:`ConcurrentUpdate` (and writes nothing) when the stored state is no longer
        at ``expected_version`` because another process answered in this conversation meanwhile.
        """
        now = utcnow()
        state = storable(state)
        with self.session() as s:
            conversation = s.get(Conversation, conversation_id)
            if conversation is None:
                raise ConversationNotFound(conversation_id)
            parent = conversation.active_leaf if parent_id == "active" else parent_id
            if (
                parent is not None
                and s.scalar(
                    select(func.count())
                    .select_from(MessageRow)
                    .where(MessageRow.conversation_id == conversation_id, MessageRow.message_id == parent)
                )
                == 0
            ):
                raise MessageNotFound(parent, conversation_id)
            self._bump(s, conversation_id, state, expected_version, now)
            last = s.scalar(select(func.max(MessageRow.seq)).where(MessageRow.conversation_id == conversation_id))
            seq = (last or 0) + 1
            digest = (
                s.scalar(select(MessageRow.chain_digest).where(MessageRow.message_id == parent))
                if parent is not None
                else None
            )
            for offset, message in enumerate(messages):
                message_id = message.id or str(uuid.uuid4())
                digest = chain_digest(digest, message.role, storable(message.text))
                s.add(
                    MessageRow(
                        conversation_id=conversation_id,
                        seq=seq + offset,
                        message_id=message_id,
                        parent_id=parent,
                        state=state if offset == len(messages) - 1 else None,
                        role=message.role,
                        text=storable(message.text),
                        bot=message.bot,
                        user_id=message.user_id,
                        created_at=message.created_at,
                        meta=storable(message.meta),
                        chain_digest=digest,
                    )
                )
                parent = message_id
            s.flush()
            for effect in effects:
                effect(s)
            conversation.active_leaf = parent
            conversation.updated_at = now
        return expected_version + 1

    @staticmethod
    def _bump(s: Session, conversation_id: str, state: dict[str, Any], expected_version: int, now: datetime) -> None:
        result = s.execute(
            update(BotState)
            .where(BotState.conversation_id == conversation_id, BotState.version == expected_version)
            .values(state=storable(state), version=expected_version + 1, updated_at=now)
        )
        if result.rowcount != 1:
            raise ConcurrentUpdate(
                f"conversation {conversation_id} was answered elsewhere (state is no longer at version "
                f"{expected_version}); reload it and try again"
            )

    def switch_branch(self, conversation_id: str, message_id: str, *, expected_version: int) -> int:
        """Make the branch ending at ``message_id`` the active one (its state becomes the bot's state)."""
        now = utcnow()
        with self.session() as s:
            conversation = s.get(Conversation, conversation_id)
            if conversation is None:
                raise ConversationNotFound(conversation_id)
            branch = self._branch(s, conversation_id, message_id)
            state = self._state_after(branch, conversation_id)
            self._bump(s, conversation_id, state, expected_version, now)
            conversation.active_leaf = message_id
            conversation.updated_at = now
        return expected_version + 1

    def find_history(self, digests: Sequence[str], *, bot: str, user_id: str | None) -> tuple[str, str, str] | None:
        """The stored message that ends the longest of the histories ``digests`` (longest first, each a
        :func:`~rejoinder.dialogue.chain_digest`), among ``user_id``'s conversations with ``bot``:
        ``(conversation_id, message_id, digest)``, the most recent when several match; None when none does."""
        wanted = [d for d in dict.fromkeys(digests) if d != ROOT_DIGEST]
        if not wanted:
            return None
        rank = {d: i for i, d in enumerate(wanted)}
        with self.session() as s:
            query = (
                select(MessageRow.conversation_id, MessageRow.message_id, MessageRow.chain_digest)
                .join(Conversation, Conversation.id == MessageRow.conversation_id)
                .where(MessageRow.chain_digest.in_(wanted), Conversation.bot == bot)
                .where(Conversation.user_id.is_(None) if user_id is None else Conversation.user_id == user_id)
                .order_by(MessageRow.created_at.desc(), MessageRow.seq.desc())
            )
            found = list(s.execute(query).all())
        if not found:
            return None
        best = min(found, key=lambda row: rank[row[2]])  # the longest history; the newest among equals
        return best[0], best[1], best[2]

    def message_conversation(self, message_id: str) -> str:
        """The id of the conversation ``message_id`` belongs to."""
        with self.session() as s:
            found = s.scalar(select(MessageRow.conversation_id).where(MessageRow.message_id == message_id))
            if found is None:
                raise MessageNotFound(message_id)
            return found

    def siblings(self, message_id: str) -> list[Message]:
        """The messages that share ``message_id``'s parent (itself included), oldest first."""
        with self.session() as s:
            row = s.scalar(select(MessageRow).where(MessageRow.message_id == message_id))
            if row is None:
                raise MessageNotFound(message_id)
            query = select(MessageRow).where(MessageRow.conversation_id == row.conversation_id)
            query = query.where(
                MessageRow.parent_id.is_(None) if row.parent_id is None else MessageRow.parent_id == row.parent_id
            )
            return [self._message(m) for m in s.scalars(query.order_by(MessageRow.seq))]

    # -- feedback --------------------------------------------------------------------------------------
    def add_feedback(
        self, message_id: str, kind: str, value: dict[str, Any], *, user_id: str | None = None
    ) -> FeedbackInfo:
        """Record feedback on a message; ``kind`` is one of :data:`FEEDBACK_KINDS`."""
        if kind not in FEEDBACK_KINDS:
            raise InvalidMessage(f"feedback kind {kind!r}: expected one of {', '.join(FEEDBACK_KINDS)}")
        if not isinstance(value, dict):
            raise InvalidMessage(f"feedback value: expected a JSON object, not {type(value).__name__}")
        now = utcnow()
        with self.session() as s:
            row = s.scalar(select(MessageRow).where(MessageRow.message_id == message_id))
            if row is None:
                raise MessageNotFound(message_id)
            feedback = FeedbackRow(
                id=str(uuid.uuid4()),
                conversation_id=row.conversation_id,
                message_id=message_id,
                user_id=user_id,
                kind=kind,
                value=storable(dict(value)),
                created_at=now,
            )
            s.add(feedback)
            return self._feedback(feedback)

    @staticmethod
    def _feedback(row: FeedbackRow) -> FeedbackInfo:
        return FeedbackInfo(
            row.id, row.conversation_id, row.message_id, row.user_id, row.kind, dict(row.value), _aware(row.created_at)
        )

    def feedback(
        self,
        *,
        conversation_id: str | None = None,
        message_id: str | None = None,
        kind: str | None = None,
        user_id: str | None = None,
    ) -> list[FeedbackInfo]:
        """Recorded feedback, oldest first, filtered by conversation, message, kind and user."""
        with self.session() as s:
            query = select(FeedbackRow).order_by(FeedbackRow.created_at, FeedbackRow.id)
            for column, wanted in (
                (FeedbackRow.conversation_id, conversation_id),
                (FeedbackRow.message_id, message_id),
                (FeedbackRow.kind, kind),
                (FeedbackRow.user_id, user_id),
            ):
                if wanted is not None:
                    query = query.where(column == wanted)
            return [self._feedback(row) for row in s.scalars(query)]

    # -- the arena -------------------------------------------------------------------------------------
    def create_battle(
        self, contestant_a: str, contestant_b: str, conversation_a: str, conversation_b: str, *, user_id: str | None
    ) -> BattleInfo:
        """Record a battle between two conversations already created (``a`` is shown on the left)."""
        with self.session() as s:
            for cid in (conversation_a, conversation_b):
                if s.get(Conversation, cid) is None:
                    raise ConversationNotFound(cid)
            row = ArenaBattle(
                id=str(uuid.uuid4()),
                user_id=user_id,
                created_at=utcnow(),
                contestant_a=contestant_a,
                contestant_b=contestant_b,
                conversation_a=conversation_a,
                conversation_b=conversation_b,
            )
            s.add(row)
            return self._battle(row)

    @staticmethod
    def _battle(row: ArenaBattle) -> BattleInfo:
        return BattleInfo(
            row.id,
            row.user_id,
            _aware(row.created_at),
            row.contestant_a,
            row.contestant_b,
            row.conversation_a,
            row.conversation_b,
            row.vote,
            _aware(row.voted_at) if row.voted_at is not None else None,
        )

    def battle(self, battle_id: str) -> BattleInfo:
        with self.session() as s:
            row = s.get(ArenaBattle, battle_id)
            if row is None:
                raise BattleNotFound(battle_id)
            return self._battle(row)

    def vote_battle(self, battle_id: str, vote: str) -> BattleInfo:
        """Cast the battle's one vote (``a``, ``b``, ``tie`` or ``bad``); a second vote is refused."""
        if vote not in ARENA_VOTES:
            raise InvalidMessage(f"arena vote {vote!r}: expected one of {', '.join(ARENA_VOTES)}")
        with self.session() as s:
            changed = s.execute(
                update(ArenaBattle)
                .where(ArenaBattle.id == battle_id, ArenaBattle.vote.is_(None))
                .values(vote=vote, voted_at=utcnow())
            ).rowcount
            row = s.get(ArenaBattle, battle_id)
            if row is None:
                raise BattleNotFound(battle_id)
            if not changed:
                raise ConcurrentUpdate(f"arena battle {battle_id} already has a vote ({row.vote})")
            s.refresh(row)
            return self._battle(row)

    def battles(self, *, voted: bool | None = None, user_id: str | None = None) -> list[BattleInfo]:
        """Arena battles, oldest first: all, only voted ones (``voted=True``) or only open ones."""
        with self.session() as s:
            query = select(ArenaBattle).order_by(ArenaBattle.created_at, ArenaBattle.id)
            if voted is not None:
                query = query.where(ArenaBattle.vote.is_not(None) if voted else ArenaBattle.vote.is_(None))
            if user_id is not None:
                query = query.where(ArenaBattle.user_id == user_id)
            return [self._battle(row) for row in s.scalars(query)]

    def votes_so_far(self) -> tuple[int, datetime | None]:
        """How many battles have a vote and when the last was cast: what a leaderboard depends on
        (votes are never changed), without loading the battles."""
        with self.session() as s:
            count, last = s.execute(
                select(func.count(), func.max(ArenaBattle.voted_at)).where(ArenaBattle.vote.is_not(None))
            ).one()
            return count, _aware(last) if last is not None else None

    def battle_of(self, conversation_id: str) -> BattleInfo | None:
        """The battle a conversation is a side of, if any."""
        with self.session() as s:
            row = s.scalar(
                select(ArenaBattle).where(
                    (ArenaBattle.conversation_a == conversation_id) | (ArenaBattle.conversation_b == conversation_id)
                )
            )
            return self._battle(row) if row is not None else None

    def left_counts(self) -> dict[str, tuple[int, int]]:
        """How often each contestant was shown on the left and on the right (to balance positions)."""
        with self.session() as s:
            counts: dict[str, list[int]] = {}
            for column, side in ((ArenaBattle.contestant_a, 0), (ArenaBattle.contestant_b, 1)):
                for name, n in s.execute(select(column, func.count()).group_by(column)):
                    counts.setdefault(name, [0, 0])[side] = n
            return {name: (left, right) for name, (left, right) in counts.items()}

    # -- API keys --------------------------------------------------------------------------------------
    def create_key(self, name: str, role: str = "user") -> tuple[KeyInfo, str]:
        """A new API key: its record and the secret, which is shown once and stored only as a hash."""
        if role not in KEY_ROLES:
            raise InvalidMessage(f"key role {role!r}: expected one of {', '.join(KEY_ROLES)}")
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidMessage("a key needs a name of 1 to 100 characters")
        secret = "rj-" + secrets.token_urlsafe(32)
        now = utcnow()
        with self.session() as s:
            if s.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
                raise InvalidMessage(f"a key named {name!r} exists already; revoke it or choose another name")
            row = ApiKey(
                id=str(uuid.uuid4()),
                name=name,
                role=role,
                secret_hash=_secret_hash(secret),
                prefix=secret[:10],
                created_at=now,
                revoked_at=None,
                last_used_at=None,
            )
            s.add(row)
            return self._key(row), secret

    @staticmethod
    def _key(row: ApiKey) -> KeyInfo:
        return KeyInfo(
            row.id,
            row.name,
            row.role,
            row.prefix,
            _aware(row.created_at),
            _aware(row.revoked_at) if row.revoked_at else None,
            _aware(row.last_used_at) if row.last_used_at else None,
        )

    def list_keys(self) -> list[KeyInfo]:
        with self.session() as s:
            return [self._key(row) for row in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    def revoke_key(self, name_or_id: str) -> KeyInfo:
        with self.session() as s:
            row = s.scalar(select(ApiKey).where((ApiKey.name == name_or_id) | (ApiKey.id == name_or_id)))
            if row is None:
                raise InvalidMessage(f"no API key named {name_or_id!r} (see rejoinder keys list)")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return self._key(row)

    def check_key(self, secret: str) -> KeyInfo | None:
        """The live key whose secret is ``secret``, or None (unknown or revoked)."""
        with self.session() as s:
            row = s.scalar(select(ApiKey).where(ApiKey.secret_hash == _secret_hash(secret)))
            if row is None or row.revoked_at is not None:
                return None
            now = utcnow()
            if row.last_used_at is None or (now - _aware(row.last_used_at)).total_seconds() > 60:
                row.last_used_at = now  # at most once a minute: a busy key does not write on every request
            return self._key(row)


KEY_ROLES = ("user", "admin")


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def user_id(self) -> str:
        """Whose conversations this key sees."""
        return f"key:{self.name}"


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
