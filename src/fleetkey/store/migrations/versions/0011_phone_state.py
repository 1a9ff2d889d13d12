"""per-phone state: each phone's newest fetch and, per license file, newest request and served

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

The fetch-record writer keeps ``phone_seen`` and ``phone_files`` in each batch's transaction
(store/phonestate.py), so alerts, ``phones show`` and rollout confirmation read them instead of
scanning the fetch history, which can then age out. The upgrade fills them from the records
already stored (one pass over the fetches in (mac, at) order).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleetkey.store.phonestate import rebuild
from fleetkey.store.schema import Micros

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "phone_seen",
        sa.Column("mac", sa.String(length=12), nullable=False),
        sa.Column("at", Micros(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("mac", name=op.f("pk_phone_seen")),
    )
    op.create_table(
        "phone_files",
        sa.Column("mac", sa.String(length=12), nullable=False),
        sa.Column("file_name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=7), nullable=False),
        sa.Column("at", Micros(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("mac", "file_name", "kind", name=op.f("pk_phone_files")),
    )
    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("phone_files")
    op.drop_table("phone_seen")
