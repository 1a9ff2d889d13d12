"""audit_rows, audit_rows_sum: the chain covers the licenses, sites and phones tables

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Each row of those tables gets its audited state (store/rowstate.py). Rows already in the
database are taken as they are, in one ``audit.baseline`` event that records their state: from
there on, a row changed outside fleetkey's audited store functions no longer verifies. The
columns covered are written out here, as they were at this revision.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from fleetkey.clock import SystemClock
from fleetkey.store.audit import ROWS, canonical, event_hash
from fleetkey.store.rowstate import MODULUS_BITS, entry_hash, row_digest, state_of

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

KEYS = {"licenses": "id", "sites": "serial", "phones": "mac"}
COVERED = {
    "licenses": (
        "id", "serial", "type", "options", "terms", "expires_on", "signing_key", "signature",
        "digest", "content", "file_name", "origin", "state", "issued_at", "posted_at",
        "succeeds_id",
    ),
    "sites": ("serial", "name", "timezone", "window_start", "window_end", "contact", "created_at"),
    "phones": (
        "mac", "site_serial", "model", "prov_user", "password_hash", "digest_ha1", "sip_contact",
        "created_at",
    ),
}  # fmt: skip
TYPES: dict[str, Any] = {  # how the covered columns read back (as the models type them)
    "expires_on": sa.Date(),
    "content": sa.LargeBinary(),
    "issued_at": sa.DateTime(timezone=True),
    "posted_at": sa.DateTime(timezone=True),
    "created_at": sa.DateTime(timezone=True),
    "id": sa.Integer(),
    "succeeds_id": sa.Integer(),
}


def upgrade() -> None:
    op.create_table(
        "audit_rows",
        sa.Column("table_name", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "key", name=op.f("pk_audit_rows")),
    )
    op.create_table(
        "audit_rows_sum",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("total", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_rows_sum")),
    )
    _baseline(op.get_bind())


def downgrade() -> None:
    op.drop_table("audit_rows_sum")
    op.drop_table("audit_rows")


def _baseline(connection: sa.Connection) -> None:
    """Every existing row as it is, vouched for by one new event."""
    head = sa.table("audit_head", sa.column("id"), sa.column("seq"), sa.column("hash"))
    seq, previous = connection.execute(
        sa.select(head.c.seq, head.c.hash).where(head.c.id == 1)
    ).one()
    seq += 1
    entries, counts, total = [], {}, 0
    for name, columns in COVERED.items():
        table = sa.table(name, *(sa.column(c, TYPES.get(c, sa.String())) for c in columns))
        rows = connection.execute(sa.select(*table.c).order_by(table.c[KEYS[name]])).all()
        counts[name] = len(rows)
        for values in rows:
            key, digest = str(values[0]), row_digest(name, values)
            entries.append({"table_name": name, "key": key, "digest": digest, "seq": seq})
            total += entry_hash(name, key, digest, seq)
    if not entries:
        return  # an empty inventory: the first audited change starts the state
    rows_table = sa.table(
        "audit_rows", *(sa.column(c) for c in ("table_name", "key", "digest", "seq"))
    )
    connection.execute(sa.insert(rows_table), entries)
    total_text = f"{total % (1 << MODULUS_BITS):0{MODULUS_BITS // 4}x}"
    sums = sa.table("audit_rows_sum", sa.column("id"), sa.column("total"))
    connection.execute(sa.insert(sums).values(id=1, total=total_text))
    details = canonical(counts | {ROWS: {"changed": len(entries), "state": state_of(total)}})
    at = SystemClock().now()
    actor, action, subject = "fleetkey db upgrade", "audit.baseline", "migration 0007"
    stamp = at.isoformat(timespec="microseconds")
    digest = event_hash(previous, seq, stamp, actor, action, subject, details)
    events = sa.table(
        "audit_events",
        *(sa.column(c) for c in ("seq", "actor", "action", "subject", "details")),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("prev_hash"),
        sa.column("hash"),
    )
    connection.execute(
        sa.insert(events).values(
            seq=seq, at=at, actor=actor, action=action, subject=subject, details=details,
            prev_hash=previous, hash=digest,
        )
    )  # fmt: skip
    connection.execute(sa.update(head).where(head.c.id == 1).values(seq=seq, hash=digest))
