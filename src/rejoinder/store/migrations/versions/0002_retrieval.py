"""the retrieval bot's memory: exchanges, their teachers, and the change log indexes replay

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retrieval_exchanges",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("collection", sa.String(100), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("conversation", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("toxicity", sa.Float(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection", "key", name="uq_retrieval_exchanges_collection_key"),
    )
    op.create_index("ix_retrieval_exchanges_status", "retrieval_exchanges", ["collection", "status"])
    op.create_table(
        "retrieval_teachers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "exchange_id",
            sa.Integer(),
            sa.ForeignKey("retrieval_exchanges.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("conversation_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_retrieval_teachers_exchange", "retrieval_teachers", ["exchange_id"])
    op.create_index("ix_retrieval_teachers_user", "retrieval_teachers", ["user_id", "created_at"])
    op.create_table(
        "retrieval_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("collection", sa.String(100), nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_retrieval_changes_collection", "retrieval_changes", ["collection", "id"])


def downgrade() -> None:
    op.drop_index("ix_retrieval_changes_collection", table_name="retrieval_changes")
    op.drop_table("retrieval_changes")
    op.drop_index("ix_retrieval_teachers_user", table_name="retrieval_teachers")
    op.drop_index("ix_retrieval_teachers_exchange", table_name="retrieval_teachers")
    op.drop_table("retrieval_teachers")
    op.drop_index("ix_retrieval_exchanges_status", table_name="retrieval_exchanges")
    op.drop_table("retrieval_exchanges")
