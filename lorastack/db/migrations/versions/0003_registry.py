"""The adapter registry's index in the database: domains and their versions.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_domains",
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("index", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("domain", name="pk_registry_domains"),
    )
    op.create_table(
        "registry_versions",
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("adapter_sha256", sa.String(64), nullable=False),
        sa.Column("config_sha256", sa.String(64), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain"],
            ["registry_domains.domain"],
            name="fk_registry_versions_domain_registry_domains",
        ),
        sa.PrimaryKeyConstraint("domain", "version", name="pk_registry_versions"),
    )


def downgrade() -> None:
    op.drop_table("registry_versions")
    op.drop_table("registry_domains")
