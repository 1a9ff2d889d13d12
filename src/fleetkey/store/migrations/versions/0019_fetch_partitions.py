"""fetches: on PostgreSQL, partitioned by day

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30

Pruning a day of a 100,000-phone fleet (1.2 million records) by 5,000-record deletes takes
minutes on PostgreSQL, and autovacuum then reclaims the space; dropping the day's partition
takes milliseconds (bench/partitions.py, docs/store.md). The upgrade renames the table, makes
``fetches`` partitioned by range of ``day`` (one partition a UTC day that has records, today
and the next two, and a default partition), copies every record into it with its id, and
drops the old table; the id sequence is kept. A unique constraint on a partitioned table must
hold the partition key, so the primary key is (id, day), and ``day`` is NOT NULL (records
stored without one get the day of their time). The downgrade copies the records back into
one table keyed by id. SQLite keeps one table: nothing changes there.
"""

from __future__ import annotations

import time

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_SECONDS_A_DAY = 86_400


def _indexes(table: str) -> None:
    op.execute(f"CREATE INDEX ix_{table}_at ON {table} (at)")
    op.execute(f"CREATE INDEX ix_{table}_day_mac ON {table} (day, mac)")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "UPDATE fetches SET day = floor(extract(epoch FROM at) / 86400)::integer WHERE day IS NULL"
    )
    op.execute("ALTER TABLE fetches RENAME TO fetches_plain")
    op.execute("ALTER TABLE fetches_plain RENAME CONSTRAINT pk_fetches TO pk_fetches_plain")
    op.execute("ALTER INDEX ix_fetches_at RENAME TO ix_fetches_plain_at")
    op.execute("ALTER INDEX ix_fetches_day_mac RENAME TO ix_fetches_plain_day_mac")
    op.execute(
        "CREATE TABLE fetches (LIKE fetches_plain INCLUDING DEFAULTS) PARTITION BY RANGE (day)"
    )
    op.execute("ALTER TABLE fetches ADD CONSTRAINT pk_fetches PRIMARY KEY (id, day)")
    _indexes("fetches")
    op.execute("CREATE TABLE fetches_default PARTITION OF fetches DEFAULT")
    today = int(time.time()) // _SECONDS_A_DAY
    days = {d for (d,) in op.get_bind().exec_driver_sql("SELECT DISTINCT day FROM fetches_plain")}
    for day in sorted(days | set(range(today, today + 3))):
        op.execute(
            f"CREATE TABLE fetches_d{day} PARTITION OF fetches FOR VALUES FROM ({day}) TO "
            f"({day + 1})"
        )
    op.execute("INSERT INTO fetches SELECT * FROM fetches_plain")
    op.execute("ALTER SEQUENCE fetches_id_seq OWNED BY fetches.id")
    op.execute("DROP TABLE fetches_plain")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE fetches RENAME TO fetches_parted")
    op.execute("ALTER TABLE fetches_parted RENAME CONSTRAINT pk_fetches TO pk_fetches_parted")
    op.execute("ALTER INDEX ix_fetches_at RENAME TO ix_fetches_parted_at")
    op.execute("ALTER INDEX ix_fetches_day_mac RENAME TO ix_fetches_parted_day_mac")
    op.execute("CREATE TABLE fetches (LIKE fetches_parted INCLUDING DEFAULTS)")
    op.execute("ALTER TABLE fetches ALTER COLUMN day DROP NOT NULL")
    op.execute("INSERT INTO fetches SELECT * FROM fetches_parted")
    op.execute("ALTER TABLE fetches ADD CONSTRAINT pk_fetches PRIMARY KEY (id)")
    _indexes("fetches")
    op.execute("ALTER SEQUENCE fetches_id_seq OWNED BY fetches.id")
    op.execute("DROP TABLE fetches_parted")
