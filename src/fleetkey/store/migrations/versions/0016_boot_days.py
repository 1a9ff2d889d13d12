"""boot_days: each day's boots tallied once, for the boot-cost measure

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

The alerts and the rollout planner measured what a boot costs from the newest 200,000 fetch
records (1-4 s at 5,000 phones); they now read a tally per day, made from the day's records
once it is over (store/bootdays.py). The table starts empty: the days still in the raw records
are tallied when first needed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "boot_days",
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("boots", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("spans_ms", sa.Text(), nullable=False),
        sa.Column("firmware", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_boot_days")),
    )


def downgrade() -> None:
    op.drop_table("boot_days")
