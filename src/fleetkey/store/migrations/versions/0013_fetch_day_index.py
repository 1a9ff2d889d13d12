"""fetches: a day column and an index on (day, mac) in place of the one on (mac, at)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30

Each record inserted into the (mac, at) index dirtied a leaf page anywhere in it: once the
index outgrew the writer's cache, what a record cost grew with the table. On (day, mac), a
batch's entries all go into today's part of the index, as small on day 365 as on day 1. A
phone's records are found with one look-up per day (store/fetches.py). The upgrade fills the
day of the records already stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fetches", sa.Column("day", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE fetches SET day = at / 86400000000")  # integer microseconds
    else:
        op.execute("UPDATE fetches SET day = floor(extract(epoch FROM at) / 86400)::integer")
    op.create_index("ix_fetches_day_mac", "fetches", ["day", "mac"])
    op.drop_index("ix_fetches_mac_at", table_name="fetches")


def downgrade() -> None:
    op.create_index("ix_fetches_mac_at", "fetches", ["mac", "at"])
    op.drop_index("ix_fetches_day_mac", table_name="fetches")
    with op.batch_alter_table("fetches", schema=None) as batch_op:
        batch_op.drop_column("day")
