"""What a boot costs, from a tally per day instead of the newest fetch records.

The boot-cost measure (``core/rollout/cost.py``) read the newest 200,000 records into Python
for every ``fleetkey alerts`` and ``rollout plan`` (1-4 s at 5,000 phones). Here each UTC day's
records are tallied once the day is over (the fetch writer has moved on to a newer day):
boots, their requests and bytes, and how many lasted each number of milliseconds, in
``boot_days``, one row a day, kept for ever. :func:`boot_cost` adds up the newest days'
tallies until they hold :data:`ENOUGH_BOOTS` boots, making the tallies it lacks (a day's
records read once, by (day, mac) then time); the same records give the same cost as the
measure over the raw records (tests/integration/store/test_bootdays.py).

A boot is counted in the day of its records: one that runs across midnight UTC counts as two
runs, the second without its license request unless it made one. A day is tallied from the
records there when it is first needed; records of that day written later (a spill file written
back after an outage) are not added.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Final

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fleetkey.core.rollout.cost import DEFAULT, MIN_BOOTS, BootTally, cost_of, measure, tally
from fleetkey.core.rollout.plan import BootCost
from fleetkey.store.records import utc
from fleetkey.store.schema import BootDayRow, FetchRow
from fleetkey.store.texts import path_of

ENOUGH_BOOTS: Final = 20_000  # about what the newest 200,000 records held (12 requests a boot)
LOOKBACK_DAYS: Final = 7  # days before the newest a measure may reach back to
# a first day's measure: ~4,000 boots of bench/history.py's traffic (12 requests a phone a
# day); the newest 200,000 records by id took 1.2-1.6 s at day 1 on a loaded machine
FIRST_DAY_RECORDS: Final = 50_000
_EPOCH_DAY: Final = date(1970, 1, 1)


def as_date(day: int) -> date:
    """A ``fetches.day`` (UTC days since the epoch) as a date."""
    return _EPOCH_DAY + timedelta(days=day)


def tally_day(connection: Connection, day: int) -> BootTally:
    """The boots of one day's raw records (phones' only), read by the (day, mac) index."""
    rows = connection.execute(
        select(FetchRow.mac, FetchRow.at, path_of.text, FetchRow.bytes)
        .join(path_of, path_of.id == FetchRow.path_id)
        .where(FetchRow.day == day, FetchRow.mac.is_not(None))
        .order_by(FetchRow.mac, FetchRow.at, FetchRow.id)
    )
    return tally((mac or "", utc(at), path, size) for mac, at, path, size in rows)


def _stored(row: BootDayRow) -> BootTally:
    spans = Counter({int(ms): count for ms, count in json.loads(row.spans_ms).items()})
    return BootTally(row.boots, row.requests, row.bytes, spans, row.firmware)


def keep(connection: Connection, day: int, found: BootTally) -> None:
    """Store a day's tally; a tally another command stored first stays (the same records);
    bench/history.py --bulk stores those of the days it writes as roll-ups only."""
    insert = (postgresql if connection.dialect.name == "postgresql" else sqlite).insert
    connection.execute(
        insert(BootDayRow)
        .values(
            day=day,
            boots=found.boots,
            requests=found.requests,
            bytes=found.bytes,
            spans_ms=json.dumps({str(ms): n for ms, n in sorted(found.spans_ms.items())}),
            firmware=found.firmware,
        )
        .on_conflict_do_nothing(index_elements=["day"])
    )


def day_tallies(session: Session, lookback: int = LOOKBACK_DAYS) -> dict[int, BootTally]:
    """The tallies of the ``lookback`` days before the newest day of raw records, newest first,
    until they hold :data:`ENOUGH_BOOTS` boots; those not kept yet are made and kept. Days
    with no records have none."""
    newest = session.scalar(select(func.max(FetchRow.day)))
    if newest is None:
        return {}
    days = range(newest - 1, newest - 1 - lookback, -1)
    kept = {
        row.day: _stored(row)
        for row in session.scalars(select(BootDayRow).where(BootDayRow.day.in_(list(days))))
    }
    found: dict[int, BootTally] = {}
    boots = 0
    for day in days:
        if day not in kept:
            has_records = session.scalar(select(FetchRow.id).where(FetchRow.day == day).limit(1))
            if has_records is None:
                continue
            kept[day] = tally_day(session.connection(), day)
            keep(session.connection(), day, kept[day])
        found[day] = kept[day]
        boots += kept[day].boots
        if boots >= ENOUGH_BOOTS:
            break
    return found


def first_phones(
    session: Session, limit: int = FIRST_DAY_RECORDS
) -> list[tuple[str, datetime, str, int]]:
    """The newest day's phone requests as (mac, at, path, bytes) in (mac, at) order, of its
    first phones by MAC up to ``limit`` records: whole phones (the one the limit cuts is left
    out, unless it is the only one), read in the (day, mac) index's order."""
    newest = session.scalar(select(func.max(FetchRow.day)))
    if newest is None:
        return []
    rows = session.execute(
        select(FetchRow.mac, FetchRow.at, path_of.text, FetchRow.bytes)
        .join(path_of, path_of.id == FetchRow.path_id)
        .where(FetchRow.day == newest, FetchRow.mac.is_not(None))
        .order_by(FetchRow.mac, FetchRow.at, FetchRow.id)
        .limit(limit + 1)
    ).all()
    if len(rows) > limit:
        cut = rows[-1][0]
        whole = [row for row in rows if row[0] != cut]
        rows = whole or rows[:limit]
    return [(mac or "", utc(at), path, size) for mac, at, path, size in rows]


def boot_cost(session: Session, fallback: BootCost = DEFAULT) -> BootCost:
    """What a boot costs, from the newest whole days' tallies (:func:`day_tallies`); on a
    store with too few boots in them (its first day), from the records of the newest day's
    first phones (:func:`first_phones`)."""
    found = day_tallies(session)
    total = BootTally()
    for one in found.values():
        total.add(one)
    if total.boots < MIN_BOOTS:
        return measure(first_phones(session), fallback)
    first, last = as_date(min(found)), as_date(max(found))
    span = f"{first}" if first == last else f"{first} to {last}"
    return cost_of(total, f"the fetch records of {span} (UTC)", fallback)
