"""phones and phone_files: the indexes the dashboard's counts and its phone search read

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30

The dashboard (bench/ui.py, 100,000 phones) spent its time on three things:

- who fetched each site's posted license: one probe per phone into ``phone_files`` and the
  licenses (~160 ms). On ``phone_files (digest, file_name, kind, mac)`` one grouped join
  reads the rows of each posted digest in MAC order and checks each phone's site in the
  (site_serial, mac) index;
- phones by site and last seen: a scan of the wide phones table; ``phones (site_serial,
  last_seen_at)`` covers it;
- the search, a ``LIKE '%text%'`` over five columns of every phone (~130 ms), and the
  filter lists (``DISTINCT model``, ``DISTINCT firmware``: ~55 ms): the search is now by
  prefix of the MAC, model, firmware or address, each an index range (the model and the
  firmware case-insensitively, on ``lower(…)``; PostgreSQL's with ``text_pattern_ops`` so a
  ``LIKE 'prefix%'`` uses them whatever the database's collation), and the lists read the
  same indexes.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_PATTERN = {"postgresql": " text_pattern_ops", "sqlite": ""}


def upgrade() -> None:
    ops = _PATTERN.get(op.get_bind().dialect.name, "")
    op.create_index("ix_phones_site_serial_seen", "phones", ["site_serial", "last_seen_at"])
    op.create_index("ix_phone_files_digest", "phone_files", ["digest", "file_name", "kind", "mac"])
    op.execute(f"CREATE INDEX ix_phones_model_lower ON phones (lower(model){ops}, model)")
    op.execute(f"CREATE INDEX ix_phones_firmware_lower ON phones (lower(firmware){ops}, firmware)")
    op.execute(f"CREATE INDEX ix_phones_last_address ON phones (last_address{ops})")
    if ops:  # the primary key's index answers a prefix of the MAC only in the C collation
        op.execute(f"CREATE INDEX ix_phones_mac_pattern ON phones (mac{ops})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_phones_mac_pattern", table_name="phones")
    for name in ("ix_phones_last_address", "ix_phones_firmware_lower", "ix_phones_model_lower"):
        op.drop_index(name, table_name="phones")
    op.drop_index("ix_phone_files_digest", table_name="phone_files")
    op.drop_index("ix_phones_site_serial_seen", table_name="phones")
