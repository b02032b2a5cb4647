"""arena battles: two anonymous contestants, their two conversations and the user's vote

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "arena_battles",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contestant_a", sa.String(100), nullable=False),
        sa.Column("contestant_b", sa.String(100), nullable=False),
        sa.Column(
            "conversation_a", sa.String(36), sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "conversation_b", sa.String(36), sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("vote", sa.String(10), nullable=True),
        sa.Column("voted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_arena_battles_voted", "arena_battles", ["voted_at"])
    op.create_index("ix_arena_battles_user", "arena_battles", ["user_id", "created_at"])
    op.create_index("ix_arena_battles_conversation_a", "arena_battles", ["conversation_a"])
    op.create_index("ix_arena_battles_conversation_b", "arena_battles", ["conversation_b"])


def downgrade() -> None:
    op.drop_table("arena_battles")
