"""Captured exchanges and their ratings.

Revision ID: 0001
Revises: none (the first)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("response_id", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=True),
        sa.Column("prompt_hash", sa.String(64), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("response_id", name="pk_exchanges"),
    )
    op.create_index("ix_exchanges_prompt_hash", "exchanges", ["prompt_hash"])
    op.create_index("ix_exchanges_domain_created_at", "exchanges", ["domain", "created_at"])
    op.create_table(
        "ratings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("response_id", sa.String(255), nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ratings"),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["exchanges.response_id"],
            name="fk_ratings_response_id_exchanges",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("rating IN (1, -1)", name="ck_ratings_vote"),
    )
    op.create_index("ix_ratings_response_id", "ratings", ["response_id"])


def downgrade() -> None:
    op.drop_index("ix_ratings_response_id", table_name="ratings")
    op.drop_table("ratings")
    op.drop_index("ix_exchanges_domain_created_at", table_name="exchanges")
    op.drop_index("ix_exchanges_prompt_hash", table_name="exchanges")
    op.drop_table("exchanges")
