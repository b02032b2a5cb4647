"""history digests on messages (a stateless API's history finds its conversation) and API keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from rejoinder.dialogue import chain_digest

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("chain_digest", sa.String(64), nullable=True))
    op.create_index("ix_messages_chain_digest", "messages", ["chain_digest"])
    connection = op.get_bind()
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("conversation_id", sa.String),
        sa.column("seq", sa.Integer),
        sa.column("message_id", sa.String),
        sa.column("parent_id", sa.String),
        sa.column("role", sa.String),
        sa.column("text", sa.Text),
        sa.column("chain_digest", sa.String),
    )
    rows = connection.execute(
        sa.select(
            messages.c.id, messages.c.message_id, messages.c.parent_id, messages.c.role, messages.c.text
        ).order_by(messages.c.conversation_id, messages.c.seq)
    ).all()
    digests: dict[str, str] = {}
    for row in rows:  # parents are written before their children
        digest = chain_digest(digests.get(row.parent_id) if row.parent_id else None, row.role, row.text)
        digests[row.message_id] = digest
        connection.execute(sa.update(messages).where(messages.c.id == row.id).values(chain_digest=digest))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_chain_digest")
        batch.drop_column("chain_digest")
