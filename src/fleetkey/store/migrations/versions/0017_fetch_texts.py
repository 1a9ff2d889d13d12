"""fetches: the path and User-Agent kept once each in fetch_texts, records holding their ids

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30

Measured on bench/history.py's traffic (docs/store.md): a raw record took ~205 bytes with its
indexes, ~63 of them the User-Agent and ~18 the path, the same few strings over and over; 90
days of 100,000 phones would have been ~23 GB on SQLite. The upgrade stores each distinct path
and User-Agent once and gives every record the ids (SQLite rebuilds the table without the two
columns; PostgreSQL drops them, and VACUUM FULL gives the space back); the downgrade writes the
texts back into the records.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fetch_texts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("text", sa.String(length=1024), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fetch_texts")),
        sa.UniqueConstraint("text", name=op.f("uq_fetch_texts_text")),
    )
    op.execute(
        "INSERT INTO fetch_texts (text) SELECT text FROM (SELECT path AS text FROM fetches "
        "UNION SELECT user_agent FROM fetches WHERE user_agent IS NOT NULL) AS found "
        "ORDER BY text"
    )
    op.add_column("fetches", sa.Column("path_id", sa.Integer(), nullable=True))
    op.add_column("fetches", sa.Column("agent_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE fetches SET "
        "path_id = (SELECT id FROM fetch_texts WHERE fetch_texts.text = fetches.path), "
        "agent_id = (SELECT id FROM fetch_texts WHERE fetch_texts.text = fetches.user_agent)"
    )
    with op.batch_alter_table("fetches", schema=None) as batch_op:
        batch_op.alter_column("path_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("path")
        batch_op.drop_column("user_agent")


def downgrade() -> None:
    op.add_column("fetches", sa.Column("path", sa.String(length=1024), nullable=True))
    op.add_column("fetches", sa.Column("user_agent", sa.String(length=255), nullable=True))
    op.execute(
        "UPDATE fetches SET "
        "path = (SELECT text FROM fetch_texts WHERE fetch_texts.id = fetches.path_id), "
        "user_agent = (SELECT text FROM fetch_texts WHERE fetch_texts.id = fetches.agent_id)"
    )
    with op.batch_alter_table("fetches", schema=None) as batch_op:
        batch_op.alter_column("path", existing_type=sa.String(length=1024), nullable=False)
        batch_op.drop_column("agent_id")
        batch_op.drop_column("path_id")
    op.drop_table("fetch_texts")
