"""Tables of the store. Every schema change comes with an Alembic migration in ``migrations/``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    bot: Mapped[str] = mapped_column(String(100))
    bot_options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """How the bot was built (script path, modes), so that a resumed conversation gets the same bot."""
    user_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    active_leaf: Mapped[str | None] = mapped_column(String(36))
    """The last message of the active branch (the message tree's leaf that the conversation continues from)."""

    messages: Mapped[list[MessageRow]] = relationship(
        back_populates="conversation", order_by="MessageRow.seq", cascade="all, delete-orphan"
    )
    state: Mapped[BotState | None] = relationship(back_populates="conversation", cascade="all, delete-orphan")

    __table_args__ = (Index("ix_conversations_updated_at", "updated_at"),)


class MessageRow(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int]
    """Order of insertion in the conversation (over all branches)."""
    message_id: Mapped[str] = mapped_column(String(36))
    """The message's stable id (what front ends and feedback refer to)."""
    parent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    """The message this one follows; None for a conversation's first message."""
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The bot's state right after this message (on replies), so a branch can start from any reply."""
    role: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    bot: Mapped[str | None] = mapped_column(String(100))
    user_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    chain_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    """The digest of the history up to this message, as a client of a stateless API sees it
    (:func:`rejoinder.dialogue.chain_digest`): how a request's history finds its conversation."""

    conversation: Mapped[Conversation] = relationship(back_populates="messages")

    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        UniqueConstraint("message_id", name="uq_messages_message_id"),
        Index("ix_messages_user_id", "user_id"),
    )


class FeedbackRow(Base):
    """Who said what about a message: a rating, a comment, a ranking among siblings, form answers."""

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.message_id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    """``rating``, ``comment``, ``ranking``, ``choice`` or ``form`` (see :data:`rejoinder.store.FEEDBACK_KINDS`)."""
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_feedback_message", "message_id"),
        Index("ix_feedback_conversation", "conversation_id"),
        Index("ix_feedback_user", "user_id", "created_at"),
        Index("ix_feedback_kind", "kind", "created_at"),
    )


class BotState(Base):
    __tablename__ = "bot_states"

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True)
    bot: Mapped[str] = mapped_column(String(100))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]

    conversation: Mapped[Conversation] = relationship(back_populates="state")


# --- the retrieval bot's memory -----------------------------------------------------------------


class RetrievalExchange(Base):
    """A human reply with the context it answered, in one collection (one retrieval bot's memory)."""

    __tablename__ = "retrieval_exchanges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(64))
    """Digest of the normalised last context utterance and reply: one row per distinct pair."""
    context: Mapped[list[str]] = mapped_column(JSON)
    reply: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200))
    conversation: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    """``approved`` (served), ``quarantined`` (learned, waiting for more teachers or an admin) or ``rejected``."""
    toxicity: Mapped[float] = mapped_column(default=0.0)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The context embedding (float16), so that the index can be rebuilt without re-embedding."""
    reply_vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The reply's own embedding (float16), to rank candidate replies against the live context."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("collection", "key", name="uq_retrieval_exchanges_collection_key"),
        Index("ix_retrieval_exchanges_status", "collection", "status"),
    )


class RetrievalTeacher(Base):
    """Who taught an exchange, in which conversation: the basis of quarantine and of forgetting."""

    __tablename__ = "retrieval_teachers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("retrieval_exchanges.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_retrieval_teachers_exchange", "exchange_id"),
        Index("ix_retrieval_teachers_user", "user_id", "created_at"),
    )


class RetrievalChange(Base):
    """Append-only log of what entered or left the served set; indexes replay it to catch up."""

    __tablename__ = "retrieval_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(100))
    exchange_id: Mapped[int]
    op: Mapped[str] = mapped_column(String(10))
    """``add`` or ``remove``."""
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_retrieval_changes_collection", "collection", "id"),)


class RetrievalImport(Base):
    """How far the import of one corpus into one collection has come, so that it resumes there.

    ``position`` counts the corpus's exchanges dealt with (stored, skipped as duplicates or refused
    by the screen); it moves in the same transaction as the exchanges it covers, so a process
    killed at any moment resumes exactly after the last committed batch.
    """

    __tablename__ = "retrieval_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(100))
    corpus: Mapped[str] = mapped_column(String(1000))
    """The corpus spec (``chitchat``, ``self-dialogue``) or the absolute path of a corpus file."""
    window: Mapped[int]
    position: Mapped[int] = mapped_column(default=0)
    total: Mapped[int | None]
    """How many exchanges the corpus holds, once counted."""
    imported: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    refused: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("collection", "corpus", "window", name="uq_retrieval_imports_collection_corpus_window"),
    )


class ApiKey(Base):
    """An API key of the server: only the SHA-256 of the secret is kept, with a prefix to recognise it."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
        UniqueConstraint("name", name="uq_api_keys_name"),
    )


# --- the arena -----------------------------------------------------------------------------------
class ArenaBattle(Base):
    """Two anonymous contestants answering one user side by side, and the user's vote.

    Each side is an ordinary conversation (kept out of the chat sidebar); ``contestant_a`` is the
    one shown on the left. The vote is None until the user votes, then ``a``, ``b``, ``tie`` or
    ``bad`` (both bad), with when it was cast.
    """

    __tablename__ = "arena_battles"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    contestant_a: Mapped[str] = mapped_column(String(100))
    contestant_b: Mapped[str] = mapped_column(String(100))
    conversation_a: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    conversation_b: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    vote: Mapped[str | None] = mapped_column(String(10))
    voted_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_arena_battles_voted", "voted_at"),
        Index("ix_arena_battles_user", "user_id", "created_at"),
        Index("ix_arena_battles_conversation_a", "conversation_a"),
        Index("ix_arena_battles_conversation_b", "conversation_b"),
    )
