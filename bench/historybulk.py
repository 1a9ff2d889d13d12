"""bench/history.py --bulk: the store a year of day-by-day writing and pruning leaves, in a
fraction of its time, on SQLite or PostgreSQL.

A retention of K days keeps the last K days' raw records; the days before it are only their
roll-ups (``fetch_days``) and boot tallies (``boot_days``) once pruned. Every day of
bench/history.py's traffic is the same but for its date, so this writes:
  - the K newest days as raw records: the first through the driver as insert_records writes
    them (the same columns, texts as fetch_texts ids, each 50,000-record batch sorted by
    (MAC, time); on PostgreSQL with COPY), every later one copied from it inside the database
    with its times and day moved, in the same order (on PostgreSQL into the day's partition,
    made first as the writer makes it); the per-phone state is day zero's newest rows (folded
    batch by batch and merged as the writer's upserts do) moved to the newest day written,
    written at each checkpoint and at the end;
  - the older days as the roll-ups and tallies the store's own code computes
    (``retention.day_rollups``, ``bootdays.tally_day``) from a raw day of the same traffic: the
    first day's from the first raw day before anything else is written (it has no records of
    a day before it), every later day's from the second newest day.
The raw days are copied on a connection of their own without waiting for the disk (SQLite's
``synchronous=OFF``, PostgreSQL's ``synchronous_commit=off`` for that session only: a bench
store, never fleetkey's own), and a run of days between two measurements is copied with
the fetch table's secondary indexes dropped, made again before the next measurement: a copied
day cost half the CPU time without them (SQLite: 1.2 s against 2.6 s for 1.2 million records).
On PostgreSQL the fetch table is vacuumed and analyzed before each measurement, as autovacuum
would have after a day's inserts (a server's store has its statistics and visibility map).
tests/integration/store/test_bench_history.py proves the two modes leave equal stores.
"""

from __future__ import annotations

import operator
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select
from sqlalchemy.pool import NullPool

from fleetkey.core.rollout.cost import BootTally
from fleetkey.store import bootdays, historytables, phonestate, retention, texts
from fleetkey.store.fetches import MICROS_A_DAY
from fleetkey.store.records import FetchRecord
from fleetkey.store.schema import EPOCH, FetchDayRow, FetchRow, epoch_micros

# a run of at least this many raw days between two measurements is copied without the fetch
# table's secondary indexes (made again before the measurement): at 1.2 million records a day
# the copy costs half without them; a short run does not repay making them again
UNINDEXED_RUN: Final = 10

BATCH: Final = 50_000  # the writer's batch (bench/history.py)
CACHE_KIB: Final = 256 * 1024  # SQLite page cache while writing a day in one transaction
SORT_MEMORY: Final = "512MB"  # PostgreSQL's maintenance_work_mem making the indexes again
_TABLE_COLUMNS: Final = tuple(
    {"path": "path_id", "user_agent": "agent_id"}.get(name, name) for name in phonestate.ROW_COLUMNS
)
_INSERT: Final = (
    f"INSERT INTO fetches ({', '.join(_TABLE_COLUMNS)}) "  # noqa: S608  # constant column names
    f"VALUES ({', '.join('?' * len(_TABLE_COLUMNS))})"
)
# a day copied from the first, its times and day moved (named parameters: micros, low, high)
_COPY: Final = (
    f"INSERT INTO fetches ({', '.join(_TABLE_COLUMNS)}) "  # noqa: S608  # constant column names
    "SELECT mac, at + :micros, path_id, protocol, method, status, bytes, digest, remote_addr, "
    "agent_id, duration_ms, identified_by, (at + :micros) / 86400000000 FROM fetches "
    "WHERE id BETWEEN :low AND :high"
)
# the same on PostgreSQL: whole days of seconds (an interval of days follows the session's
# time zone), the day moved with them; the first day's partitions named, so the others are
# pruned from the plan
_COPY_PG: Final = (
    f"INSERT INTO fetches ({', '.join(_TABLE_COLUMNS)}) "  # noqa: S608  # constant column names
    "SELECT mac, at + make_interval(secs => %(seconds)s), path_id, protocol, method, status, "
    "bytes, digest, remote_addr, agent_id, duration_ms, identified_by, day + %(days)s "
    "FROM fetches WHERE day BETWEEN %(first)s AND %(last)s AND id BETWEEN %(low)s AND %(high)s"
)
_COPY_IN: Final = f"COPY fetches ({', '.join(_TABLE_COLUMNS)}) FROM STDIN"
_MAC_AND_TIME: Final = operator.itemgetter(0, 1)
Row = tuple[Any, ...]


def writer_batches(records: list[FetchRecord]) -> list[list[Row]]:
    """``records`` as insert_records makes its rows (RECORD_COLUMNS, SQLite's microseconds),
    in its batches of 50,000, each sorted by (MAC, time). Every record names a phone here."""
    batches = []
    for offset in range(0, len(records), BATCH):
        rows = [
            (r.mac, epoch_micros(r.at), r.path, r.protocol, r.method, r.status, r.bytes,
             r.digest, r.remote_addr, r.user_agent, r.duration_ms, r.identified_by)
            for r in records[offset : offset + BATCH]
        ]  # fmt: skip
        rows.sort(key=_MAC_AND_TIME)
        batches.append(rows)
    return batches


def _merge(into: phonestate.Newest, batch: phonestate.Newest) -> None:
    """A batch's newest rows over the state so far, as the upserts do (time at least as new)."""
    for mine, theirs in ((into.seen, batch.seen), (into.files, batch.files)):
        for key, row in theirs.items():
            old = mine.get(key)
            if old is None or row[1] >= old[1]:
                mine[key] = row  # type: ignore[index]  # the key types of each pair agree


class BulkWriter:
    """Writes whole days of one day's traffic shifted by whole days: the first through the
    driver, every later one copied from it inside the database (its times and day moved), in
    the order it was written."""

    def __init__(self, engine: Engine, day_zero: list[FetchRecord]) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(
                f"the bulk mode writes SQLite's or PostgreSQL's rows, not {engine.url}"
            )
        self.engine = engine
        self.postgresql = engine.dialect.name == "postgresql"
        self.template = writer_batches(day_zero)
        # the UTC days day zero's records fall on (its boots may run past midnight)
        self.days = sorted({row[1] // MICROS_A_DAY for rows in self.template for row in rows})
        wanted = {row[2] for rows in self.template for row in rows}
        wanted |= {row[9] for rows in self.template for row in rows}
        self.ids = texts.texts_of(engine).ids(engine, wanted)
        # every day's newest rows are day zero's moved: the newest day's are the state
        self.newest = phonestate.Newest({}, {})
        for rows in self.template:
            _merge(self.newest, phonestate.fold(rows))
        self.written: tuple[int, int, int] | None = None  # the first day's: shift, ids
        self.last = 0
        self.indexed = True
        # the copies' own connections: no waiting for the disk, a large cache or sort memory (a
        # bench store only); the store's engine, which the measurements use, keeps its settings
        self.copying = create_engine(engine.url, poolclass=NullPool)
        event.listen(self.copying, "connect", _pg_session if self.postgresql else _bulk_pragmas)

    def close(self) -> None:
        self.copying.dispose()

    def drop_indexes(self) -> None:
        """Copy the next days without the fetch table's secondary indexes."""
        if self.indexed:
            with self.copying.begin() as connection:
                for index in FetchRow.__table__.indexes:
                    index.drop(connection)
            self.indexed = False

    def make_indexes(self) -> None:
        """The indexes :meth:`drop_indexes` dropped, made again over every record."""
        if not self.indexed:
            with self.copying.begin() as connection:
                for index in sorted(FetchRow.__table__.indexes, key=lambda i: str(i.name)):
                    index.create(connection)
            self.indexed = True

    def write_day(self, shift: int, since: int | None = None) -> None:
        """Day zero's traffic ``shift`` days later (with ``since``, its records from that
        moment, in microseconds, on)."""
        if self.postgresql:  # each day its partition first, as the writer makes them
            days = {d + shift for d in self.days}
            historytables.make_ahead(
                self.engine, {d for d in days if since is None or d >= since // MICROS_A_DAY}
            )
        with self.copying.begin() as connection:
            if self.written is None:
                before = connection.exec_driver_sql("SELECT max(id) FROM fetches").scalar()
                self._first(connection, shift)
                after = connection.exec_driver_sql("SELECT max(id) FROM fetches").scalar()
                self.written = (shift, int(before or 0) + 1, int(after or 0))
            elif self.postgresql:
                self._copy_pg(connection, shift, since)
            else:
                moved, low, high = self.written
                micros = (shift - moved) * MICROS_A_DAY
                connection.exec_driver_sql(
                    _COPY + ("" if since is None else f" AND at + {micros} >= {since}")
                    + " ORDER BY id",
                    {"micros": micros, "low": low, "high": high},
                )  # fmt: skip
        if since is None:
            self.last = max(self.last, shift)

    def _copy_pg(self, connection: Connection, shift: int, since: int | None) -> None:
        assert self.written is not None
        moved, low, high = self.written
        days = shift - moved
        where = ""
        params: dict[str, Any] = {
            "seconds": days * 86_400, "days": days, "low": low, "high": high,
            "first": self.days[0] + moved, "last": self.days[-1] + moved,
        }  # fmt: skip
        if since is not None:  # the records moved to ``since`` or later: at + shift >= since
            where = " AND at >= %(since)s"
            params["since"] = EPOCH + timedelta(microseconds=since - days * MICROS_A_DAY)
        connection.exec_driver_sql(_COPY_PG + where + " ORDER BY id", params)

    def _first(self, connection: Connection, shift: int) -> None:
        ids, micros = self.ids, shift * MICROS_A_DAY
        if self.postgresql:
            self._first_pg(connection, micros)
            return
        for template in self.template:
            connection.exec_driver_sql(
                _INSERT,
                [(r[0], r[1] + micros, ids[r[2]], r[3], r[4], r[5], r[6], r[7], r[8], ids[r[9]],
                  r[10], r[11], (r[1] + micros) // MICROS_A_DAY) for r in template],
            )  # fmt: skip

    def _first_pg(self, connection: Connection, micros: int) -> None:
        """Day zero's rows through COPY, batch by batch in the writer's order (its ids)."""
        ids = self.ids
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(_COPY_IN) as copy:
            for template in self.template:
                for r in template:
                    at = r[1] + micros
                    copy.write_row(
                        (r[0], EPOCH + timedelta(microseconds=at), ids[r[2]], r[3], r[4], r[5],
                         r[6], r[7], r[8], ids[r[9]], r[10], r[11], at // MICROS_A_DAY)
                    )  # fmt: skip

    def settle(self) -> None:
        """PostgreSQL: the fetch table vacuumed and analyzed, as autovacuum leaves a server's
        store after a day's inserts (statistics for the planner, the visibility map for
        index-only scans); SQLite plans without statistics: nothing."""
        if self.postgresql:
            with self.copying.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM (ANALYZE) fetches"
                )

    def write_state(self) -> None:
        """The per-phone state the writer would have folded: day zero's newest rows, moved to
        the newest day written."""
        micros = self.last * MICROS_A_DAY
        state = phonestate.Newest(
            {k: (r[0], r[1] + micros, *r[2:]) for k, r in self.newest.seen.items()},
            {k: (r[0], r[1] + micros, *r[2:]) for k, r in self.newest.files.items()},
        )
        with self.engine.begin() as connection:
            phonestate.write(connection, state)


def _bulk_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _pg_session(connection: Any, _record: Any) -> None:
    """The copies' PostgreSQL session: commits without waiting for the disk (this session
    only, a bench store) and memory to sort the indexes made again."""
    cursor = connection.cursor()
    cursor.execute("SET synchronous_commit = off")
    cursor.execute(f"SET maintenance_work_mem = '{SORT_MEMORY}'")
    cursor.close()
    connection.commit()


def day_number(moment: datetime) -> int:
    return epoch_micros(moment) // MICROS_A_DAY


def summaries(engine: Engine, day: date) -> tuple[list[dict[str, Any]], BootTally]:
    """A raw day's roll-ups and boot tally, as the prune and the tallies make them."""
    with engine.connect() as connection:
        return retention.day_rollups(connection, day), bootdays.tally_day(
            connection, day_number(datetime.combine(day, datetime.min.time()))
        )


def write_summaries(
    engine: Engine,
    rollups: dict[date, list[dict[str, Any]]],
    tallies: dict[date, BootTally],
) -> None:
    """Roll-ups and boot tallies taken from another day, filed under ``day``."""
    epoch = date(1970, 1, 1)
    with engine.begin() as connection:
        rows = [{**r, "day": day} for day, found in rollups.items() for r in found]
        if rows:
            connection.execute(insert(FetchDayRow), rows)
        for day, tally in tallies.items():
            bootdays.keep(connection, (day - epoch).days, tally)


def newest_day(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.max(FetchRow.day))) or 0)


def shifted(day: date, by: int) -> date:
    return day + timedelta(days=by)
