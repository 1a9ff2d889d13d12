"""Fetch records: a writer built for boot storms, and queries over what phones fetched.

The writer takes records from request handlers into a bounded in-memory queue and one thread
drains it a whole batch at a time (an executemany per transaction): as soon as a batch is full,
at least every second, and at shutdown.
When the queue is full, ``submit`` blocks (back-pressure) or, with a timeout, raises
QueueFullError for the caller to answer "busy"; records are never dropped silently. Records the
database refuses after retries are appended to a JSON Lines fallback file and counted as
dropped, and the error is logged.
"""

from __future__ import annotations

import json
import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fleetkey.core.naming import normalize_mac
from fleetkey.errors import FleetkeyError
from fleetkey.errors import (
    QueueFullError as QueueFullError,  # re-exported for serve/, which moves to fleetkey.errors
)
from fleetkey.store.database import PARAM_MARKERS
from fleetkey.store.records import FetchRecord, utc
from fleetkey.store.schema import FetchRow, epoch_micros

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S: Final = 1.0  # issue 3: flushed at least every second
BATCH_SIZE: Final = 50_000  # under load the flush interval, not the size, ends a batch
CAPACITY: Final = 100_000
RETRIES: Final = 3
WRITER_CACHE_KIB: Final = 64 * 1024  # SQLite page cache of the connection writing records
HEALTH_SAMPLE: Final = 5000  # newest records a health reading looks at


_COLUMNS: Final = (
    "mac",
    "at",
    "path",
    "protocol",
    "method",
    "status",
    "bytes",
    "digest",
    "remote_addr",
    "user_agent",
    "duration_ms",
    "identified_by",
)
# sort keys made in C: a Python key function cost 0.25 µs a row more
_MAC_AND_TIME: Final = operator.itemgetter(0, 1)
_TIME: Final = operator.itemgetter(1)


def insert_records(engine: Engine, records: Sequence[FetchRecord]) -> None:
    """Write records in one transaction: one executemany of plain tuples.

    The statement goes to the driver directly (SQLAlchemy's per-row parameter processing costs
    more than the insert); on SQLite the time is written as the schema's ``Micros`` stores it.
    Rows go in sorted by (MAC, time): inserts into the (mac, at) index then walk it in order,
    touching each page once per batch. Unsorted, every row dirtied a random index page and
    the insert cost 3x as much (docs/store.md).
    """
    if not records:
        return
    marker = PARAM_MARKERS[engine.dialect.paramstyle]
    placeholders = ", ".join(marker.format(n + 1) for n in range(len(_COLUMNS)))
    sql = f"INSERT INTO fetches ({', '.join(_COLUMNS)}) VALUES ({placeholders})"  # noqa: S608  # constant column names, values bound
    stamp = epoch_micros if engine.dialect.name == "sqlite" else utc
    named: list[tuple[Any, ...]] = []
    unnamed: list[tuple[Any, ...]] = []  # no MAC: NULL, which comes first in the index
    for r in records:
        (unnamed if r.mac is None else named).append(
            (
                r.mac,
                stamp(r.at),
                r.path,
                r.protocol,
                r.method,
                r.status,
                r.bytes,
                r.digest,
                r.remote_addr,
                r.user_agent,
                r.duration_ms,
                r.identified_by,
            )
        )
    # within a batch every time is an int (SQLite) or every one a datetime: (mac, at) compares;
    # a key of those two only (the rest may hold None), and MAC-less rows apart (None and str
    # do not compare)
    named.sort(key=_MAC_AND_TIME)
    unnamed.sort(key=_TIME)
    rows = unnamed + named if unnamed else named
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            # the (mac, at) index is walked at one page per distinct MAC per batch: with the
            # default 2 MiB cache most of those pages are read again for every batch
            connection.exec_driver_sql(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        if engine.dialect.name == "postgresql":
            # a plain INSERT plans the same for every row: let PostgreSQL reuse the plan
            # (the engine forces custom plans for lookups, see store/database.py)
            connection.exec_driver_sql("SET LOCAL plan_cache_mode = auto")
        connection.exec_driver_sql(sql, rows)


class FetchWriter:
    """Queue → batched inserts on a background thread. Use as a context manager or start/close."""

    def __init__(
        self,
        engine: Engine,
        *,
        capacity: int = CAPACITY,
        batch_size: int = BATCH_SIZE,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        fallback: Path | None = None,
        retry_delay_s: float = 0.1,
    ) -> None:
        self._engine = engine
        self._pending: deque[FetchRecord] = deque()
        self._capacity = capacity
        self._mutex = threading.Lock()
        self._batch_ready = threading.Condition(self._mutex)  # wakes the writer thread
        self._room = threading.Condition(self._mutex)  # wakes producers waiting for space
        self._stopping = False
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._fallback = fallback
        self._retry_delay = retry_delay_s
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.written = 0
        self.dropped = 0
        self.batches = 0

    @property
    def depth(self) -> int:
        """Records waiting to be written."""
        return len(self._pending)

    def start(self) -> FetchWriter:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="fleetkey-fetch-writer", daemon=True
            )
            self._thread.start()
        return self

    def submit(self, record: FetchRecord, timeout: float | None = None) -> None:
        """Queue a record; blocks while the queue is full (at most ``timeout`` seconds)."""
        with self._mutex:
            if self._thread is None or self._stopping:
                raise FleetkeyError("the fetch writer is not running")
            if len(self._pending) >= self._capacity and not self._room.wait_for(
                lambda: len(self._pending) < self._capacity, timeout
            ):
                raise QueueFullError(
                    f"fetch-record queue full ({self._capacity} waiting) for {timeout}s"
                )
            self._pending.append(record)
            if len(self._pending) >= self._batch_size:
                self._batch_ready.notify()

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, then stop the thread."""
        if self._thread is None:
            return
        with self._mutex:
            self._stopping = True
            self._batch_ready.notify()
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> FetchWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch:
                self._write(batch)
            elif self._stopping:
                return

    def _take(self) -> list[FetchRecord]:
        """Up to a batch: as soon as one is full, at the flush interval, or when stopping."""
        deadline = time.monotonic() + self._interval
        with self._mutex:
            while len(self._pending) < self._batch_size and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._batch_ready.wait(remaining)
            pending = self._pending
            if len(pending) <= self._batch_size:
                batch = list(pending)
                pending.clear()
            else:
                batch = [pending.popleft() for _ in range(self._batch_size)]
            self._room.notify_all()
            return batch

    def _write(self, batch: list[FetchRecord]) -> None:
        delay = self._retry_delay
        for attempt in range(1, RETRIES + 1):
            try:
                insert_records(self._engine, batch)
            except SQLAlchemyError as exc:
                log.warning(
                    "writing %d fetch records failed (attempt %d/%d): %s",
                    len(batch),
                    attempt,
                    RETRIES,
                    exc,
                )
                time.sleep(delay)
                delay *= 4
                continue
            with self._lock:
                self.written += len(batch)
                self.batches += 1
            return
        self._spill(batch)

    def _spill(self, batch: list[FetchRecord]) -> None:
        with self._lock:
            self.dropped += len(batch)
        if self._fallback is None:
            log.error(
                "lost %d fetch records: the database refused them and no fallback file "
                "is configured",
                len(batch),
            )
            return
        with self._fallback.open("a", encoding="utf-8") as handle:
            for record in batch:
                handle.write(json.dumps(record._asdict(), default=_json_default) + "\n")
        log.error(
            "the database refused %d fetch records; they were appended to %s",
            len(batch),
            self._fallback,
        )


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def query(
    session: Session,
    *,
    mac: str | None = None,
    since: datetime | None = None,
    limit: int | None = 1000,
) -> list[FetchRecord]:
    """Fetch records, oldest first, optionally for one MAC and from a moment on."""
    statement = select(FetchRow).order_by(FetchRow.at, FetchRow.id)
    if mac is not None:
        statement = statement.where(FetchRow.mac == normalize_mac(mac))
    if since is not None:
        statement = statement.where(FetchRow.at >= utc(since))
    if limit is not None:
        statement = statement.limit(limit)
    return [
        FetchRecord(
            path=row.path,
            protocol=row.protocol,
            status=row.status,
            bytes=row.bytes,
            duration_ms=row.duration_ms,
            at=utc(row.at),
            method=row.method,
            mac=row.mac,
            digest=row.digest,
            remote_addr=row.remote_addr,
            user_agent=row.user_agent,
            identified_by=row.identified_by,
        )
        for row in session.scalars(statement)
    ]


def recent_requests(session: Session, limit: int = 200_000) -> list[tuple[str, datetime, str, int]]:
    """The newest ``limit`` phone requests as (mac, at, path, bytes), in (mac, at) order."""
    newest = (
        select(FetchRow.mac, FetchRow.at, FetchRow.path, FetchRow.bytes)
        .where(FetchRow.mac.is_not(None))
        .order_by(FetchRow.id.desc())
        .limit(limit)
        .subquery()
    )
    rows = session.execute(select(newest).order_by(newest.c.mac, newest.c.at)).all()
    return [(mac, utc(at), path, size) for mac, at, path, size in rows]


@dataclass(frozen=True, slots=True)
class Health:
    """The servers' answers over a recent stretch, as the fetch records tell it."""

    requests: int
    rejected: int  # 503: admission control said no
    p95_ms: float

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.requests if self.requests else 0.0


def health(session: Session, since: datetime, sample: int = HEALTH_SAMPLE) -> Health:
    """From the newest ``sample`` records since ``since``: bounded work on a busy server."""
    rows = session.execute(
        select(FetchRow.status, FetchRow.duration_ms)
        .where(FetchRow.at >= utc(since))
        .order_by(FetchRow.at.desc())
        .limit(sample)
    ).all()
    if not rows:
        return Health(0, 0, 0.0)
    durations = sorted(duration for _, duration in rows)
    rejected = sum(1 for status, _ in rows if status == 503)
    return Health(len(rows), rejected, durations[int(0.95 * (len(durations) - 1))])


def last_site_license_fetches(session: Session) -> list[tuple[str, datetime, int, str | None]]:
    """Each phone's newest request for the site license: (mac, at, status, digest)."""
    newest = (
        select(func.max(FetchRow.id).label("id"))
        .where(FetchRow.mac.is_not(None), FetchRow.path.like("%000000000000-license.cfg"))
        .group_by(FetchRow.mac)
        .subquery()
    )
    rows = session.execute(
        select(FetchRow.mac, FetchRow.at, FetchRow.status, FetchRow.digest).join(
            newest, newest.c.id == FetchRow.id
        )
    ).all()
    return [(mac or "", utc(at), status, digest) for mac, at, status, digest in rows]
