"""Fetch history that ages out: raw records kept for a retention period, daily roll-ups for ever.

:func:`prune` takes each whole UTC day older than the retention, rolls it up per site
(``fetch_days``: requests by protocol and status, bytes, boots, distinct phones, p50/p95/p99
latency) in one transaction, then deletes that day's rolled-up records in small batches, each
its own short transaction, pausing between them: on SQLite the fetch-record writer takes the
database's write lock between two batches, so a prune never holds it off for more than one
batch. What a phone fetched last stays in the per-phone state (``store/phonestate.py``).

Each delete batch adds the counts of the records it deletes to the roll-ups in the same
transaction: the roll-ups' totals are exactly the records removed, and records of an old day
that reach the store later (a spill file written back after an outage) are added by the next
prune. A day's distinct phones and latency percentiles are those of the records there when it
was first rolled up.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session

from fleetkey.core.naming import SITE_LICENSE_FILE
from fleetkey.errors import InputError
from fleetkey.store import bootdays, historytables
from fleetkey.store.fetches import forget_batches
from fleetkey.store.inventory import LOOKUP_CHUNK
from fleetkey.store.records import utc
from fleetkey.store.schema import FetchDayRow, FetchRow, PhoneRow
from fleetkey.store.texts import path_of

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS: Final = 90
DELETE_BATCH: Final = 5000  # records per delete transaction (~10-30 ms on SQLite)
PAUSE_S: Final = 0.02  # between two delete batches: the writer's turn at SQLite's lock
NO_SITE: Final = "-"  # records of no phone in the inventory
_DAY: Final = timedelta(days=1)
_EPOCH: Final = date(1970, 1, 1)


def check_retention(days: int) -> int:
    """``days`` if it is a retention (0 keeps every record), InputError otherwise."""
    if days < 0:
        raise InputError(
            f"fetch retention {days} days is negative: expected 0 (keep every record) or a "
            "number of days",
            field="retention",
        )
    return days


def cutoff(now: datetime, days: int) -> datetime | None:
    """The moment records older than ``days`` end: a UTC midnight, so only whole days go."""
    if check_retention(days) == 0:
        return None
    start = datetime.combine(utc(now).date(), datetime.min.time(), UTC)
    return start - days * _DAY


@dataclass(slots=True)
class PruneResult:
    cutoff: datetime | None  # records before it went (None: the retention keeps all)
    days: list[date] = field(default_factory=list)  # days rolled up and pruned
    deleted: int = 0
    batches: int = 0
    partitions: int = 0  # PostgreSQL: whole days' partitions dropped

    def to_json(self) -> dict[str, Any]:
        return {
            "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
            "days": [d.isoformat() for d in self.days],
            "deleted": self.deleted,
            "batches": self.batches,
            "partitions": self.partitions,
        }


def prune(
    engine: Engine,
    now: datetime,
    days: int,
    *,
    batch: int = DELETE_BATCH,
    pause_s: float = PAUSE_S,
    sleep: Callable[[float], None] = time.sleep,
    stopping: Callable[[], bool] = lambda: False,
) -> PruneResult:
    """Roll up, then delete, every whole day of records older than ``days`` days; between
    two batches, ``stopping()`` true ends it (a server stopping), the rest for next time.
    First the boots of the newest whole days are tallied (``store/bootdays.py``), so the
    alerts and the planner find them ready."""
    with Session(engine) as session, session.begin():
        bootdays.day_tallies(session)
    result = PruneResult(cutoff(now, days))
    if result.cutoff is None:
        return result
    today = _day_number(utc(now).date())
    historytables.make_ahead(engine, range(today, today + historytables.AHEAD_DAYS + 1))
    with engine.connect() as connection:
        oldest = connection.scalar(select(func.min(FetchRow.at)))
        parts = historytables.partition_days(connection)
    found = [utc(oldest).date()] if oldest is not None else []
    found += [_EPOCH + d * _DAY for d in parts]
    if not found or min(found) >= result.cutoff.date():
        return result
    day = min(found)
    while day < result.cutoff.date() and not stopping():
        dropped = _day_number(day) in parts and _drop_day(engine, day, result)
        if _prune_day(engine, day, (batch, pause_s), sleep, stopping, result) or dropped:
            result.days.append(day)
        day += _DAY
    forget_batches(engine, result.cutoff)
    return result


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), UTC)
    return start, start + _DAY


def _day_number(day: date) -> int:
    return (day - _EPOCH).days


def _drop_day(engine: Engine, day: date, result: PruneResult) -> bool:
    """PostgreSQL: roll up a day's partition and drop it in one transaction, so the roll-ups'
    counts are exactly the records dropped; whether it held any. The day is read first,
    without locks; then the whole table is locked (before the partition, as readers lock
    them: the other order deadlocks with a reader), the day's records counted, read again
    only if some came meanwhile, added to the roll-ups, and the partition dropped."""
    number = _day_number(day)
    with engine.connect() as connection:
        taken = _read_day(connection, day, None, number)
    with engine.begin() as connection:
        if not historytables.lock_table(connection, number):
            return False  # another server's prune dropped it
        count = select(func.count()).select_from(FetchRow).where(FetchRow.day == number)
        if connection.scalar(count) != sum(acc.requests for acc in taken.values()):
            taken = _read_day(connection, day, None, number)
        for site, acc in taken.items():
            _add_counts(connection, day, site, acc)
        historytables.drop_partition(connection, number)
    result.deleted += sum(acc.requests for acc in taken.values())
    result.partitions += 1
    return bool(taken)


def _prune_day(
    engine: Engine,
    day: date,
    pace: tuple[int, float],  # records per batch, pause between batches
    sleep: Callable[[float], None],
    stopping: Callable[[], bool],
    result: PruneResult,
) -> bool:
    """Roll up and delete a day's records; whether it had any.

    Its distinct phones and latency percentiles are read first, from the whole day, without
    a write lock; then each batch adds its records' counts to the roll-ups and deletes them in
    one short transaction, so a count never misses or repeats a record (SQLite reuses the ids
    of deleted rows: nothing here relies on ids growing).
    """
    batch, pause_s = pace
    with engine.connect() as connection:
        known = set(
            connection.scalars(select(FetchDayRow.site_serial).where(FetchDayRow.day == day))
        )
        first = None if known else _read_day(connection, day, None)
    if first is not None:
        if not first:
            return False
        with engine.begin() as connection:
            for site, acc in first.items():
                _insert_day(connection, day, site, acc)
    while True:
        with engine.begin() as connection:
            taken = _read_day(connection, day, batch)
            ids = [i for acc in taken.values() for i in acc.ids]
            for site, acc in taken.items():
                _add_counts(connection, day, site, acc)
            for start in range(0, len(ids), LOOKUP_CHUNK):
                connection.execute(
                    delete(FetchRow).where(FetchRow.id.in_(ids[start : start + LOOKUP_CHUNK]))
                )
        result.deleted += len(ids)
        result.batches += 1
        if len(ids) < batch or stopping():
            return True
        sleep(pause_s)


@dataclass(slots=True)
class _Day:
    requests: int = 0
    by_answer: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    boots: int = 0
    macs: set[str] = field(default_factory=set)
    durations: list[float] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)


def _read_day(
    connection: Connection, day: date, limit: int | None, partition: int | None = None
) -> dict[str, _Day]:
    """The day's records (the first ``limit``, or all) summed up per site; with
    ``partition``, those of the day's partition only (its ``day`` column: the default
    partition holds no record of a day that has a partition)."""
    start, end = _bounds(day)
    statement = (
        select(
            FetchRow.id,
            FetchRow.mac,
            PhoneRow.site_serial,
            FetchRow.protocol,
            FetchRow.status,
            FetchRow.bytes,
            FetchRow.duration_ms,
            path_of.text,
        )
        .join(path_of, path_of.id == FetchRow.path_id)
        .outerjoin(PhoneRow, PhoneRow.mac == FetchRow.mac)
    )
    if partition is None:
        statement = statement.where(FetchRow.at >= start, FetchRow.at < end)
    else:
        statement = statement.where(FetchRow.day == partition)
    if limit is not None:
        statement = statement.limit(limit)
    sites: dict[str, _Day] = {}
    for record_id, mac, site, protocol, status, size, duration, path in connection.execute(
        statement
    ):
        acc = sites.setdefault(site or NO_SITE, _Day())
        acc.ids.append(record_id)
        acc.requests += 1
        acc.by_answer[f"{protocol} {status}"] += 1
        acc.bytes += size
        acc.boots += path.lower().endswith(SITE_LICENSE_FILE)
        if mac is not None:
            acc.macs.add(mac)
        acc.durations.append(duration)
    return sites


def _values(day: date, site: str, acc: _Day, *, counted: bool) -> dict[str, Any]:
    """A site's roll-up of a day: its counts those of ``acc`` if ``counted``, else zero."""
    durations = sorted(acc.durations)
    return {
        "day": day,
        "site_serial": site,
        "requests": acc.requests if counted else 0,
        "by_answer": json.dumps(dict(sorted(acc.by_answer.items())) if counted else {}),
        "bytes": acc.bytes if counted else 0,
        "boots": acc.boots if counted else 0,
        "phones": len(acc.macs),
        "p50_ms": _percentile(durations, 0.50),
        "p95_ms": _percentile(durations, 0.95),
        "p99_ms": _percentile(durations, 0.99),
    }


def _insert_day(connection: Connection, day: date, site: str, acc: _Day) -> None:
    """A site's roll-up of a day, its counts zero until its records are deleted."""
    connection.execute(insert(FetchDayRow).values(_values(day, site, acc, counted=False)))


def day_rollups(connection: Connection, day: date) -> list[dict[str, Any]]:
    """The ``fetch_days`` rows (values, by site) a prune leaves for ``day`` once it deleted
    every record the day holds now, without deleting any: ``bench/history.py --bulk`` writes
    the days a retention has already removed as these."""
    found = _read_day(connection, day, None)
    return [_values(day, site, acc, counted=True) for site, acc in sorted(found.items())]


def _add_counts(connection: Connection, day: date, site: str, acc: _Day) -> None:
    """Add ``acc``'s counts to a site's roll-up of a day (made with them if it has none)."""
    row = connection.execute(
        select(
            FetchDayRow.requests, FetchDayRow.by_answer, FetchDayRow.bytes, FetchDayRow.boots
        ).where(FetchDayRow.day == day, FetchDayRow.site_serial == site)
    ).first()
    if row is None:  # a site whose records came after the day was first rolled up
        connection.execute(insert(FetchDayRow).values(_values(day, site, acc, counted=True)))
        return
    answers = Counter(json.loads(row.by_answer)) + acc.by_answer
    connection.execute(
        update(FetchDayRow)
        .where(FetchDayRow.day == day, FetchDayRow.site_serial == site)
        .values(
            requests=row.requests + acc.requests,
            by_answer=json.dumps(dict(sorted(answers.items()))),
            bytes=row.bytes + acc.bytes,
            boots=row.boots + acc.boots,
        )
    )


def _percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class FetchDay:
    day: date
    site: str
    requests: int
    by_answer: dict[str, int]
    bytes: int
    boots: int
    phones: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "site": self.site,
            "requests": self.requests,
            "by_answer": self.by_answer,
            "bytes": self.bytes,
            "boots": self.boots,
            "phones": self.phones,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


def fetch_days(
    session: Session, since: date | None = None, until: date | None = None
) -> list[FetchDay]:
    """The daily roll-ups from ``since`` up to (not including) ``until``, by day and site."""
    statement = select(FetchDayRow).order_by(FetchDayRow.day, FetchDayRow.site_serial)
    if since is not None:
        statement = statement.where(FetchDayRow.day >= since)
    if until is not None:
        statement = statement.where(FetchDayRow.day < until)
    return [
        FetchDay(
            row.day,
            row.site_serial,
            row.requests,
            json.loads(row.by_answer),
            row.bytes,
            row.boots,
            row.phones,
            row.p50_ms,
            row.p95_ms,
            row.p99_ms,
        )
        for row in session.scalars(statement)
    ]
