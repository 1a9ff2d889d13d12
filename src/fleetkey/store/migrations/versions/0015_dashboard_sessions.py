"""dashboard_secrets and dashboard_signouts: the dashboard's session key and sign-outs in the
store

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

The key the dashboard signs session cookies with was a file made by the first server that
needed it; two servers starting together could each make one and refuse each other's cookies.
In the store it is inserted if absent and read back, so every server uses the one that won.
Signing out records the session until it would have expired, so a copied cookie is refused
too. Sessions signed with the old file's key end at this upgrade (sign in again).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_secrets",
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "dashboard_signouts",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index("ix_dashboard_signouts_expires_at", "dashboard_signouts", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_signouts_expires_at", table_name="dashboard_signouts")
    op.drop_table("dashboard_signouts")
    op.drop_table("dashboard_secrets")
