"""Fetch records in the store: the batched insert the writer uses, and queries over what
phones fetched.

``store.writer`` takes records from servers and hands them, a batch at a time, to a
:class:`RecordSink`: the store's is :class:`StoreSink` (``insert_records`` and
``batch_written`` below); ``fleetkey.testing`` has one in memory and one that refuses.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol, TypeVarTuple

from sqlalchemy import (
    Connection,
    Engine,
    FromClause,
    Select,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    true,
)
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from fleetkey.store import phonestate, texts
from fleetkey.store.database import execute_rows
from fleetkey.store.fetchfilter import MICROS_A_DAY, FetchFilter, by_day
from fleetkey.store.historytables import ensure_partitions
from fleetkey.store.records import FetchRecord, utc
from fleetkey.store.schema import FetchBatchRow, FetchRow, epoch_micros
from fleetkey.store.texts import agent_of, path_of

WRITER_CACHE_KIB: Final = 64 * 1024  # SQLite page cache of the connection writing records
HEALTH_SAMPLE: Final = 5000  # newest records a health reading looks at
COUNT_CAP: Final = 100_000  # older records a listing counts exactly; past it, "more than"


# the writer's tuples hold the path and User-Agent (phonestate reads them); the table their ids
_COLUMNS: Final = tuple(
    {"path": "path_id", "user_agent": "agent_id"}.get(name, name) for name in phonestate.ROW_COLUMNS
)
_INSERT: Final = f"INSERT INTO fetches ({', '.join(_COLUMNS)})"
_PATH: Final = phonestate.ROW_COLUMNS.index("path")
_AGENT: Final = phonestate.ROW_COLUMNS.index("user_agent")
# sort keys made in C: a Python key function cost 0.25 µs a row more
_MAC_AND_TIME: Final = operator.itemgetter(0, 1)
_TIME: Final = operator.itemgetter(1)
Ts = TypeVarTuple("Ts")
_Rows = list[tuple[Any, ...]]


class RecordSink(Protocol):
    """Where the fetch-record writer puts its batches (``store.writer``'s port).

    ``insert_batch`` writes ``records`` and marks ``batch`` (writer name, sequence number)
    committed in one transaction, or raises: ``OSError`` or a SQLAlchemy error is the store
    refusing (held and tried again), ``DataError``/``IntegrityError`` the store refusing what
    a row holds. ``batch_written`` says whether a batch was committed (after an ambiguous
    failure, or when a spill file is read back).
    """

    def insert_batch(self, records: Sequence[FetchRecord], batch: tuple[str, int]) -> None: ...

    def batch_written(self, writer: str, seq: int) -> bool: ...


class StoreSink:
    """The store's fetches table as a :class:`RecordSink`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert_batch(self, records: Sequence[FetchRecord], batch: tuple[str, int]) -> None:
        insert_records(self.engine, records, batch)

    def batch_written(self, writer: str, seq: int) -> bool:
        return batch_written(self.engine, writer, seq)


def insert_records(
    engine: Engine, records: Sequence[FetchRecord], batch: tuple[str, int] | None = None
) -> None:
    """Write records in one transaction: plain tuples in multi-row statements on SQLite
    (``database.execute_rows``), one executemany on PostgreSQL.

    ``batch`` (writer, sequence number) is marked committed in the same transaction
    (``fetch_batches``), so a batch retried after an ambiguous failure can be checked with
    :func:`batch_written` and is never written twice.

    The statement goes to the driver directly (SQLAlchemy's per-row parameter processing costs
    more than the insert); on SQLite the time is written as the schema's ``Micros`` stores it.
    Rows go in sorted by (MAC, time): inserts into the (day, mac) index then walk today's part
    of it in order, touching each page once per batch (on the earlier (mac, at) index,
    unsorted rows cost 3x as much, docs/store.md). The per-phone state (``store/phonestate.py``)
    and new path and User-Agent texts (``store/texts.py``) go in the same transaction.
    """
    if not records:
        return
    sqlite = engine.dialect.name == "sqlite"
    named: list[tuple[Any, ...]] = []
    unnamed: list[tuple[Any, ...]] = []  # no MAC: NULL, which comes first in the index
    for r in records:
        micros = epoch_micros(r.at)
        (unnamed if r.mac is None else named).append(
            (
                r.mac,
                micros if sqlite else utc(r.at),
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
                micros // MICROS_A_DAY,
            )
        )
    # within a batch every time is an int (SQLite) or every one a datetime: (mac, at) compares;
    # a key of those two only (the rest may hold None), and MAC-less rows apart (None and str
    # do not compare)
    named.sort(key=_MAC_AND_TIME)
    unnamed.sort(key=_TIME)
    rows = unnamed + named if unnamed else named
    ensure_partitions(engine, {row[-1] for row in rows})  # PostgreSQL: a partition a day
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            # today's part of the (day, mac) index is walked at one page per distinct MAC per
            # batch: with the default 2 MiB cache most of those pages are read again each batch
            connection.exec_driver_sql(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        if engine.dialect.name == "postgresql":
            # a plain INSERT plans the same for every row: let PostgreSQL reuse the plan
            # (the engine forces custom plans for lookups, see store/database.py)
            connection.exec_driver_sql("SET LOCAL plan_cache_mode = auto")
        stored, new = _with_text_ids(connection, rows)
        execute_rows(connection, _INSERT, len(_COLUMNS), stored)  # multi-row on SQLite
        phonestate.apply(connection, named)  # what the fleet is now, in the same transaction
        if batch is not None:
            connection.execute(
                insert(FetchBatchRow),
                {
                    "writer": batch[0],
                    "seq": batch[1],
                    "records": len(rows),
                    "at": utc(records[-1].at),  # about the newest: records come in time order
                },
            )
    texts.texts_of(engine).remember(new)  # committed: their ids name stored rows


def _with_text_ids(connection: Connection, rows: _Rows) -> tuple[_Rows, dict[str, int]]:
    """``rows`` as the table holds them: the path and User-Agent as their fetch_texts ids (a
    row without a path keeps None, which the table refuses, so the row is set aside), and
    the texts new to the cache, stored in ``connection``'s transaction (``texts.Texts``)."""
    wanted = {row[_PATH] for row in rows} | {row[_AGENT] for row in rows}
    found, new = texts.texts_of(connection.engine).ids_within(connection, wanted - {None})
    ids: dict[Any, int | None] = {None: None, **found}
    return [
        (*row[:_PATH], ids[row[_PATH]], *row[_PATH + 1 : _AGENT], ids[row[_AGENT]],
         *row[_AGENT + 1 :])
        for row in rows
    ], new  # fmt: skip


def batch_written(engine: Engine, writer: str, seq: int) -> bool:
    """Whether batch ``seq`` of ``writer`` was committed."""
    with engine.connect() as connection:
        found = connection.execute(
            select(FetchBatchRow.seq).where(
                FetchBatchRow.writer == writer, FetchBatchRow.seq == seq
            )
        ).first()
    return found is not None


def forget_batches(engine: Engine, before: datetime) -> int:
    """Drop batch marks older than ``before`` (no retry reaches back that far)."""
    with engine.begin() as connection:
        result = connection.execute(delete(FetchBatchRow).where(FetchBatchRow.at < utc(before)))
    return int(result.rowcount)


def query(
    session: Session,
    *,
    mac: str | None = None,
    since: datetime | None = None,
    limit: int | None = 1000,
) -> list[FetchRecord]:
    """Fetch records, oldest first, optionally for one MAC and from a moment on."""
    where = by_day(session, FetchFilter(mac, since))
    rows, days = where.source()
    statement = where.where(_records(rows, days), rows).order_by(rows.at, rows.id)
    if limit is not None:
        statement = statement.limit(limit)
    return [_record(row, path, agent) for row, path, agent in session.execute(statement)]


def newest(
    session: Session, where: FetchFilter, limit: int | None, count_up_to: int = COUNT_CAP
) -> tuple[list[FetchRecord], int]:
    """The newest ``limit`` records ``where`` keeps (all when None), newest first, and how many
    older ones it keeps besides (counted up to ``count_up_to``: past it, that number)."""
    where = by_day(session, where)
    rows, days = where.source()
    statement = where.where(_records(rows, days), rows).order_by(rows.at.desc(), rows.id.desc())
    found = session.execute(statement if limit is None else statement.limit(limit)).all()
    left = 0
    if limit is not None and len(found) == limit and found:
        last = found[-1][0]
        older = where.where(_from(select(rows.id), rows, days), rows).where(
            or_(rows.at < last.at, and_(rows.at == last.at, rows.id < last.id))
        )
        capped = older.limit(count_up_to).subquery()
        left = int(session.scalar(select(func.count()).select_from(capped)) or 0)
    return [_record(row, path, agent) for row, path, agent in found], left


def last_id(session: Session) -> int:
    """The id of the newest fetch record (0 when there is none): where following starts."""
    return int(session.scalar(select(func.max(FetchRow.id))) or 0)


def written_after(
    session: Session, where: FetchFilter, after_id: int, limit: int = 1000
) -> tuple[list[FetchRecord], int]:
    """Records ``where`` keeps written after record ``after_id``, in the order they were
    written, and the id to continue from (``fetches --follow``)."""
    where = by_day(session, where)
    rows, days = where.source()
    found = session.execute(
        where.where(_records(rows, days), rows)
        .where(rows.id > after_id)
        .order_by(rows.id)
        .limit(limit)
    ).all()
    if not found:
        return [], after_id
    return [_record(row, path, agent) for row, path, agent in found], found[-1][0].id


def _records(rows: Any = FetchRow, days: FromClause | None = None) -> Select[Any, str, str | None]:
    """Records (of ``rows``: the table, or a phone's day by day) with their path and
    User-Agent (kept in fetch_texts)."""
    return (
        _from(select(rows, path_of.text, agent_of.text), rows, days)
        .join(path_of, path_of.id == rows.path_id)
        .outerjoin(agent_of, agent_of.id == rows.agent_id)
    )


def _from(statement: Select[*Ts], rows: Any, days: FromClause | None) -> Select[*Ts]:
    """``statement`` from the days and each day's rows (``FetchFilter.source``), if given."""
    if days is None:
        return statement
    return statement.select_from(days).join(rows, true())


def _record(row: FetchRow, path: str, user_agent: str | None) -> FetchRecord:
    return FetchRecord(
        path=path,
        protocol=row.protocol,
        status=row.status,
        bytes=row.bytes,
        duration_ms=row.duration_ms,
        at=utc(row.at),
        method=row.method,
        mac=row.mac,
        digest=row.digest,
        remote_addr=row.remote_addr,
        user_agent=user_agent,
        identified_by=row.identified_by,
    )


def recent_requests(session: Session, limit: int = 200_000) -> list[tuple[str, datetime, str, int]]:
    """The newest ``limit`` phone requests as (mac, at, path, bytes), in (mac, at) order."""
    newest = (
        select(FetchRow.mac, FetchRow.at, path_of.text.label("path"), FetchRow.bytes)
        .join(path_of, path_of.id == FetchRow.path_id)
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


def refused_for_content(exc: BaseException) -> bool:
    """The database refused what the rows hold (a value too long, a constraint), not the
    connection: retrying the same rows would be refused for ever."""
    if isinstance(exc, (DataError, IntegrityError)):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def between(
    connection: Connection, since: datetime, until: datetime, chunk: int = 10_000
) -> Iterator[FetchRecord]:
    """Every record from ``since`` up to ``until``, oldest first (``fetches export``), read a
    chunk at a time from the time index."""
    statement = (
        _records()
        .where(FetchRow.at >= utc(since), FetchRow.at < utc(until))
        .order_by(FetchRow.at, FetchRow.id)
        .execution_options(yield_per=chunk)
    )
    with Session(connection) as session:
        for row, path, agent in session.execute(statement):
            yield _record(row, path, agent)
