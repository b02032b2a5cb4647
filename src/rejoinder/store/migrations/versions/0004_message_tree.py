"""the message tree and feedback: message ids and parents, the state after each reply, the active
branch of a conversation, and a feedback table (ratings, comments, rankings, form answers)

Existing conversations become single branches: each message's parent is the one before it, the
last message is the active leaf, and the last message carries the conversation's current state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("message_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("state", sa.JSON(), nullable=True))
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("active_leaf", sa.String(36), nullable=True))

    connection = op.get_bind()
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("conversation_id", sa.String),
        sa.column("seq", sa.Integer),
        sa.column("message_id", sa.String),
        sa.column("parent_id", sa.String),
        sa.column("state", sa.JSON),
    )
    conversations = sa.table("conversations", sa.column("id", sa.String), sa.column("active_leaf", sa.String))
    states = sa.table("bot_states", sa.column("conversation_id", sa.String), sa.column("state", sa.JSON))
    current = dict(connection.execute(sa.select(states.c.conversation_id, states.c.state)).all())
    rows = connection.execute(
        sa.select(messages.c.id, messages.c.conversation_id).order_by(messages.c.conversation_id, messages.c.seq)
    ).all()
    previous: dict[str, str] = {}
    last_row: dict[str, int] = {}
    for row_id, conversation_id in rows:
        message_id = str(uuid.uuid4())
        connection.execute(
            sa.update(messages)
            .where(messages.c.id == row_id)
            .values(message_id=message_id, parent_id=previous.get(conversation_id))
        )
        previous[conversation_id] = message_id
        last_row[conversation_id] = row_id
    for conversation_id, leaf in previous.items():
        connection.execute(
            sa.update(conversations).where(conversations.c.id == conversation_id).values(active_leaf=leaf)
        )
        if conversation_id in current:
            connection.execute(
                sa.update(messages)
                .where(messages.c.id == last_row[conversation_id])
                .values(state=current[conversation_id])
            )

    with op.batch_alter_table("messages") as batch:
        batch.alter_column("message_id", existing_type=sa.String(36), nullable=False)
        batch.create_unique_constraint("uq_messages_message_id", ["message_id"])
        batch.create_index("ix_messages_parent_id", ["parent_id"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "conversation_id", sa.String(36), sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "message_id", sa.String(36), sa.ForeignKey("messages.message_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_message", "feedback", ["message_id"])
    op.create_index("ix_feedback_conversation", "feedback", ["conversation_id"])
    op.create_index("ix_feedback_user", "feedback", ["user_id", "created_at"])
    op.create_index("ix_feedback_kind", "feedback", ["kind", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_kind", table_name="feedback")
    op.drop_index("ix_feedback_user", table_name="feedback")
    op.drop_index("ix_feedback_conversation", table_name="feedback")
    op.drop_index("ix_feedback_message", table_name="feedback")
    op.drop_table("feedback")
    # Only the active branch of each conversation survives as the old, linear conversation.
    connection = op.get_bind()
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("conversation_id", sa.String),
        sa.column("message_id", sa.String),
        sa.column("parent_id", sa.String),
        sa.column("seq", sa.Integer),
    )
    conversations = sa.table("conversations", sa.column("id", sa.String), sa.column("active_leaf", sa.String))
    leaves = dict(connection.execute(sa.select(conversations.c.id, conversations.c.active_leaf)).all())
    rows = connection.execute(
        sa.select(messages.c.id, messages.c.conversation_id, messages.c.message_id, messages.c.parent_id)
    ).all()
    by_id = {message_id: (row_id, conversation_id, parent) for row_id, conversation_id, message_id, parent in rows}
    keep: set[int] = set()
    for leaf in leaves.values():
        cursor = leaf
        while cursor is not None and cursor in by_id:
            row_id, _, parent = by_id[cursor]
            keep.add(row_id)
            cursor = parent
    off_branch = [row_id for row_id, _, _ in by_id.values() if row_id not in keep]
    if off_branch:
        connection.execute(sa.delete(messages).where(messages.c.id.in_(off_branch)))
    # Natively (SQLite 3.35+): recreating the table would cascade the delete to its messages.
    with op.batch_alter_table("conversations", recreate="never") as batch:
        batch.drop_column("active_leaf")
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_parent_id")
        batch.drop_constraint("uq_messages_message_id", type_="unique")
        batch.drop_column("state")
        batch.drop_column("parent_id")
        batch.drop_column("message_id")
