"""What servers learn about phones as they fetch: last seen, address, firmware; new phones.

Servers collect sightings in memory (one per phone, the newest wins) and hand them over in
batches, so a boot storm costs one UPDATE per phone per flush rather than one per request.
Phones a server registers on first sight (the ``register`` unknown-MAC policy) are added in
one audited event per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, cast

from sqlalchemy import String, Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.store import audit
from fleetkey.store.inventory import LOOKUP_CHUNK
from fleetkey.store.records import utc
from fleetkey.store.schema import PhoneRow, SiteRow

UNKNOWN_MODEL: Final = "unknown"


@dataclass(frozen=True, slots=True)
class Sighting:
    """A phone's newest request as a server saw it."""

    mac: str
    at: datetime
    address: str | None
    user_agent: str | None
    model: str | None = None  # from a phone User-Agent, when it was one
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class NewPhone:
    mac: str
    site: str
    model: str | None
    firmware: str | None


def record(session: Session, sightings: Sequence[Sighting]) -> int:
    """Update last seen (and firmware, when the User-Agent said) of inventory phones.

    One executemany of one UPDATE (SQLAlchemy Core: the ORM's bulk update cost ~3x as much per
    phone, and a boot storm sees thousands of phones a second). Sightings of MACs not in the
    inventory match no row and change nothing. Returns how many phones changed.
    """
    if not sightings:
        return 0
    table = cast(Table, PhoneRow.__table__)
    statement = (
        update(table)
        .where(table.c.mac == bindparam("b_mac"))
        .values(
            last_seen_at=bindparam("b_at"),
            last_address=bindparam("b_address"),
            last_user_agent=bindparam("b_agent"),
            firmware=func.coalesce(bindparam("b_firmware", type_=String), table.c.firmware),
        )
    )
    rows = [
        {
            "b_mac": s.mac,
            "b_at": utc(s.at),
            "b_address": s.address,
            "b_agent": s.user_agent[:255] if s.user_agent else None,
            "b_firmware": s.firmware[:64] if s.firmware else None,
        }
        for s in sightings
    ]
    result = session.connection().execute(statement, rows)
    return int(result.rowcount)


def register(session: Session, clock: Clock, actor: str, phones: Sequence[NewPhone]) -> list[str]:
    """Add phones first seen by a server; returns the MACs added (known ones are skipped)."""
    if not phones:
        return []
    sites = set(session.scalars(select(SiteRow.serial)))
    wanted = {p.mac: p for p in phones if p.site in sites}
    existing: set[str] = set()
    macs = list(wanted)
    for start in range(0, len(macs), LOOKUP_CHUNK):
        existing.update(
            session.scalars(
                select(PhoneRow.mac).where(PhoneRow.mac.in_(macs[start : start + LOOKUP_CHUNK]))
            )
        )
    now = utc(clock.now())
    added = [p for mac, p in wanted.items() if mac not in existing]
    for phone in added:
        session.add(
            PhoneRow(
                mac=phone.mac,
                site_serial=phone.site,
                model=(phone.model or UNKNOWN_MODEL)[:64],
                firmware=phone.firmware[:64] if phone.firmware else None,
                created_at=now,
            )
        )
    if added:
        audit.append(
            session,
            clock,
            actor=actor,
            action="phones.register",
            subject=f"{len(added)} phones",
            details={"macs": sorted(p.mac for p in added)[:1000], "count": len(added)},
        )
    return [p.mac for p in added]
