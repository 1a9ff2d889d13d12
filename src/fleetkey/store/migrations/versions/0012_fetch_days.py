"""fetch_days: daily roll-ups of fetch records per site, kept when the raw records age out

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fetch_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("site_serial", sa.String(length=12), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("by_answer", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("boots", sa.BigInteger(), nullable=False),
        sa.Column("phones", sa.Integer(), nullable=False),
        sa.Column("p50_ms", sa.Float(), nullable=False),
        sa.Column("p95_ms", sa.Float(), nullable=False),
        sa.Column("p99_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("day", "site_serial", name=op.f("pk_fetch_days")),
    )


def downgrade() -> None:
    op.drop_table("fetch_days")
