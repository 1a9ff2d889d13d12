"""fetch_batches: which batches of fetch records a writer has committed

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

A batch retried after an error that may have come after its commit (a connection lost during
COMMIT, a crash while replaying held records) is skipped when its mark is here: records are
written once, never twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fetch_batches",
        sa.Column("writer", sa.String(length=80), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("writer", "seq"),
    )


def downgrade() -> None:
    op.drop_table("fetch_batches")
