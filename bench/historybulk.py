"""bench/history.py --bulk: the store a year of day-by-day writing and pruning leaves, in a
fraction of its time.

A retention of K days keeps the last K days' raw records; the days before it are only their
roll-ups (``fetch_days``) and boot tallies (``boot_days``) once pruned. Every day of
bench/history.py's traffic is the same but for its date, so this writes:
  - the K newest days as raw records: the first through the driver as insert_records writes
    them (the same columns, texts as fetch_texts ids, each 50,000-record batch sorted by
    (MAC, time)), every later one copied from it inside SQLite with its times and day moved,
    in the same order; the per-phone state is day zero's newest rows (folded batch by batch
    and merged as the writer's upserts do) moved to the newest day written, written at each
    checkpoint and at the end;
  - the older days as the roll-ups and tallies the store's own code computes
    (``retention.day_rollups``, ``bootdays.tally_day``) from a raw day of the same traffic: the
    first day's from the first raw day before anything else is written (it has no records of
    a day before it), every later day's from the second newest day.
The raw days are copied on a connection of their own without fsyncs (``synchronous=OFF``: a
bench store, never fleetkey's own), and a run of days between two measurements is copied with
the fetch table's secondary indexes dropped, made again before the next measurement: a copied
day cost half the CPU time without them (1.2 s against 2.6 s for 1.2 million records).
tests/integration/store/test_bench_history.py proves the two modes leave equal stores.
"""

from __future__ import annotations

import operator
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select
from sqlalchemy.pool import NullPool

from fleetkey.core.rollout.cost import BootTally
from fleetkey.store import bootdays, phonestate, retention, texts
from fleetkey.store.fetches import MICROS_A_DAY
from fleetkey.store.records import FetchRecord
from fleetkey.store.schema import FetchDayRow, FetchRow, epoch_micros

# a run of at least this many raw days between two measurements is copied without the fetch
# table's secondary indexes (made again before the measurement): at 1.2 million records a day
# the copy costs half without them; a short run does not repay making them again
UNINDEXED_RUN: Final = 10

BATCH: Final = 50_000  # the writer's batch (bench/history.py)
CACHE_KIB: Final = 256 * 1024  # SQLite page cache while writing a day in one transaction
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
    """Writes whole days of one day's traffic shifted by whole days, on SQLite: the first
    through the driver, every later one copied from it inside SQLite (its times and day moved),
    in the order it was written."""

    def __init__(self, engine: Engine, day_zero: list[FetchRecord]) -> None:
        if engine.dialect.name != "sqlite":
            raise ValueError("the bulk mode writes SQLite's rows (times as microseconds)")
        self.engine = engine
        self.template = writer_batches(day_zero)
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
        # the copies' own connections: no fsync, a large cache (a bench store only); the
        # store's engine, which the measurements use, keeps the store's settings
        self.copying = create_engine(engine.url, poolclass=NullPool)
        event.listen(self.copying, "connect", _bulk_pragmas)

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
        with self.copying.begin() as connection:
            if self.written is None:
                before = connection.exec_driver_sql("SELECT max(id) FROM fetches").scalar()
                self._first(connection, shift)
                after = connection.exec_driver_sql("SELECT max(id) FROM fetches").scalar()
                self.written = (shift, int(before or 0) + 1, int(after or 0))
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

    def _first(self, connection: Connection, shift: int) -> None:
        ids, micros = self.ids, shift * MICROS_A_DAY
        for template in self.template:
            connection.exec_driver_sql(
                _INSERT,
                [(r[0], r[1] + micros, ids[r[2]], r[3], r[4], r[5], r[6], r[7], r[8], ids[r[9]],
                  r[10], r[11], (r[1] + micros) // MICROS_A_DAY) for r in template],
            )  # fmt: skip

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
