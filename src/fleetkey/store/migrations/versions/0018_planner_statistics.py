"""PostgreSQL: keep the planner's statistics and visibility map current for the dashboard

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30

Measured with bench/ui.py on PostgreSQL (100,000 phones, 1,000,000 fetch records), the count
of phones that fetched their site's posted license ran ~1.1-1.6 s (EXPLAIN ANALYZE) because
the ``licenses`` table had never been analyzed: autovacuum analyzes a table once 50 rows plus
10 % of it changed, which a store's few licenses, sites and rollouts may never reach, and
without statistics the planner took the posted keys for one row and probed ``phone_files``
once per phone. Counting by each posted key's digest reads the (digest, file_name, kind, mac)
index in MAC order against the (site_serial, mac) index of its site's phones, both
index-only, only while the visibility map of ``phone_files`` and ``phones`` is current, which
the writer's per-phone upserts keep clearing (the default vacuums a table at 20 % dead rows).

So, on PostgreSQL only (SQLite plans without statistics):

- the small tables are analyzed after any change (threshold 0, scale factor 0): licenses,
  sites, rollouts;
- ``phone_files`` and ``phones`` are vacuumed and analyzed at 2 % changed rows (inserted or
  updated), which keeps their visibility map current at a cost of a few thousand pages;
- the whole database is analyzed once, now, so a store upgraded or just created plans with
  statistics from its first query (ANALYZE samples: seconds on 10 million records).

It also adds, on PostgreSQL, indexes on ``phones (lower(model), model)`` and ``(lower(firmware),
firmware)`` in the database's ordering: the phones page's filter lists step through them value
by value (``pages.distinct``), which the ``text_pattern_ops`` indexes of 0014 (for the prefix
search) cannot order; SQLite's indexes of 0014 already do.

SQLite: nothing (its planner reads no statistics the dashboard's queries depend on).
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

SMALL = ("licenses", "sites", "rollouts")
CHURNED = ("phone_files", "phones")
ORDERED = {"ix_phones_model_order": "model", "ix_phones_firmware_order": "firmware"}
_SMALL_SETTINGS = ("autovacuum_analyze_threshold = 0", "autovacuum_analyze_scale_factor = 0")
_CHURNED_SETTINGS = (
    "autovacuum_vacuum_scale_factor = 0.02",
    "autovacuum_vacuum_insert_scale_factor = 0.02",
    "autovacuum_analyze_scale_factor = 0.02",
)


def _names(settings: tuple[str, ...]) -> str:
    return ", ".join(setting.split(" = ", 1)[0] for setting in settings)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in SMALL:
        op.execute(f"ALTER TABLE {table} SET ({', '.join(_SMALL_SETTINGS)})")
    for table in CHURNED:
        op.execute(f"ALTER TABLE {table} SET ({', '.join(_CHURNED_SETTINGS)})")
    for name, column in ORDERED.items():
        op.execute(f"CREATE INDEX {name} ON phones (lower({column}), {column})")
    op.execute("ANALYZE")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in ORDERED:
        op.drop_index(name, table_name="phones")
    for table in SMALL:
        op.execute(f"ALTER TABLE {table} RESET ({_names(_SMALL_SETTINGS)})")
    for table in CHURNED:
        op.execute(f"ALTER TABLE {table} RESET ({_names(_CHURNED_SETTINGS)})")
