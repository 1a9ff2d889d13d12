"""phones: one index on (site_serial, mac) in place of the one on site_serial

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

`phones list --site S` reads a page with `site_serial = S AND mac > :after ORDER BY mac LIMIT
n`. With the index on site_serial alone, SQLite and PostgreSQL found the site's phones and
sorted all of them for every page (40 ms for a site of 33,000, growing with the site); on
(site_serial, mac) the page is read in order and stops after n rows. The new index also
serves every lookup by site the old one did (its first column), so the old one goes.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_phones_site_serial_mac", "phones", ["site_serial", "mac"])
    op.drop_index("ix_phones_site_serial", table_name="phones")


def downgrade() -> None:
    op.create_index("ix_phones_site_serial", "phones", ["site_serial"])
    op.drop_index("ix_phones_site_serial_mac", table_name="phones")
