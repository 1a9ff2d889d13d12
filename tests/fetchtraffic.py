"""A small fleet's fetch history, for the store's tests of history that ages out (retention,
partitions): three phones at two sites, and records of every phone and of no phone on the days
asked for, with varied paths, answers, sizes and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from fleetkey.clock import FixedClock
from fleetkey.core.rollout.windows import Window
from fleetkey.store import inventory, phone_import
from fleetkey.store.records import FetchRecord, Site
from fleetkey.store.schema import FetchDayRow, FetchRow
from fleetkey.store.store import Store

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
SITES = ("100000000001", "100000000002")
PHONES = {"0004f2000001": SITES[0], "0004f2000002": SITES[0], "0004f2000003": SITES[1]}
PATHS = ("/000000000000-license.cfg", "/0004f2000001.cfg", "/sip.ld")


def with_phones(store: Store) -> Store:
    """``store`` with the two sites and the three phones in its inventory."""
    clock = FixedClock(NOW)
    with store.transaction() as session:
        for serial in SITES:
            inventory.add_site(
                session, clock, "t", Site(serial, serial, "UTC", Window.parse("22:00-05:00"))
            )
        rows = "".join(f"{mac},{site},VVX_500\n" for mac, site in PHONES.items())
        phone_import.import_phones(
            session, clock, "t", f"mac,site,model\n{rows}".encode(), source="t"
        )
    return store


def traffic(days_back: range, per_day: int = 9) -> list[FetchRecord]:
    """``per_day`` records a day for each of ``days_back`` days before NOW (at its time of day
    and before, 7 minutes apart), of every phone and of no phone in turn."""
    macs = [*PHONES, None]
    return [
        FetchRecord(
            path=PATHS[n % 3],
            protocol=("http", "tftp")[n % 2],
            status=(200, 404, 304)[n % 3],
            bytes=100 * (n + 1),
            duration_ms=float(n + 1),
            at=NOW - timedelta(days=back, minutes=7 * n),
            mac=macs[n % 4],
        )
        for back in days_back
        for n in range(per_day)
    ]


def counts(store: Store) -> tuple[int, int]:
    """The raw records, and the requests the roll-ups count."""
    with store.transaction() as session:
        rows = int(session.scalar(select(func.count()).select_from(FetchRow)) or 0)
        rolled = int(session.scalar(select(func.sum(FetchDayRow.requests))) or 0)
    return rows, rolled
