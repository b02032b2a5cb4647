"""Tables of the store. Every schema change comes with an Alembic migration in ``migrations/``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    role: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    bot: Mapped[str | None] = mapped_column(String(100))
    user_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")

    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        Index("ix_messages_user_id", "user_id"),
    )


class BotState(Base):
    __tablename__ = "bot_states"

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True)
    bot: Mapped[str] = mapped_column(String(100))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]

    conversation: Mapped[Conversation] = relationship(back_populates="state")
