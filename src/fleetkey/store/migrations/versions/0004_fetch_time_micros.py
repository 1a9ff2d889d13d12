"""fetches: on SQLite the time as integer microseconds since the epoch, not 26 characters

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

PostgreSQL keeps timestamptz (8 bytes already): nothing changes there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# SQLAlchemy's SQLite DATETIME text, 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC), to microseconds
_TO_MICROS = (
    "UPDATE fetches SET at = "
    "CAST(strftime('%s', substr(at, 1, 19)) AS INTEGER) * 1000000 "
    "+ CAST(substr(substr(at, 21) || '000000', 1, 6) AS INTEGER) "
    "WHERE typeof(at) = 'text'"
)
# and back; the fraction counts from the floor of the second (SQLite's / and % truncate)
_TO_TEXT = (
    "UPDATE fetches SET at = "
    "strftime('%Y-%m-%d %H:%M:%S', (at - ((at % 1000000) + 1000000) % 1000000) / 1000000, "
    "'unixepoch') || printf('.%06d', ((at % 1000000) + 1000000) % 1000000) "
    "WHERE typeof(at) = 'integer'"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(_TO_MICROS)
    with op.batch_alter_table("fetches", schema=None) as batch_op:
        batch_op.alter_column(
            "at", type_=sa.Integer(), existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("fetches", schema=None) as batch_op:
        batch_op.alter_column(
            "at", type_=sa.DateTime(timezone=True), existing_type=sa.Integer(), nullable=False
        )
    op.execute(_TO_TEXT)
