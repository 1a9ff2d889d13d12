"""The fetch table by day on PostgreSQL (migration 0019, store/historytables.py), one table on
SQLite: every record is stored whatever its day (across midnight, long past, far ahead, a day
the default partition already holds), and a prune rolls whole days up and drops their
partitions, deleting only records that sit in the default partition; the roll-ups and the
records left are the same on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from fleetkey.store import fetches, historytables, retention
from fleetkey.store.fetches import MICROS_A_DAY
from fleetkey.store.records import FetchRecord
from fleetkey.store.schema import epoch_micros
from fleetkey.store.store import Store

from tests.fetchtraffic import NOW, counts, traffic, with_phones

MIDNIGHT = NOW - timedelta(hours=12)


def day_of(moment: datetime) -> int:
    return epoch_micros(moment) // MICROS_A_DAY


def record(at: datetime, n: int = 0) -> FetchRecord:
    return FetchRecord(f"/p{n}.cfg", "http", 200, 10 + n, 1.0, at, mac="0004f2000001")


def where_stored(engine: Engine) -> dict[int, str]:
    """Each record's bytes (a record's mark here) and the table holding it."""
    table = "tableoid::regclass::text" if engine.dialect.name == "postgresql" else "'fetches'"
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT bytes, {table} FROM fetches")).all()  # noqa: S608  # constant
    return {size: where for size, where in rows}


def test_postgresql_partitions_the_fetch_table_by_day_and_sqlite_keeps_one(store: Store) -> None:
    with store.engine.connect() as connection:
        partitioned = historytables.partitioned(connection)
        days = historytables.partition_days(connection)
    assert partitioned == (store.engine.dialect.name == "postgresql")
    if partitioned:  # today and the next two days are made ahead by the migration
        today = day_of(datetime.now(UTC))
        assert {today, today + 1, today + 2} <= days
    else:
        assert days == set()


def test_records_across_midnight_long_past_and_far_ahead_are_all_stored(store: Store) -> None:
    moments = [
        MIDNIGHT - timedelta(microseconds=1),  # the last moment of a day
        MIDNIGHT,  # the first of the next
        MIDNIGHT + timedelta(hours=23, minutes=59, seconds=59),
        datetime(2001, 2, 3, 4, 5, tzinfo=UTC),  # a spill file written back years later
        datetime(2099, 12, 31, 23, 0, tzinfo=UTC),  # a clock far ahead
    ]
    for n, at in enumerate(moments):  # batch by batch: the writer meets each day anew
        fetches.insert_records(store.engine, [record(at, n)])
    fetches.insert_records(  # and all in one batch again
        store.engine, [record(at + timedelta(seconds=1), 10 + n) for n, at in enumerate(moments)]
    )
    stored = where_stored(store.engine)
    assert sorted(stored) == [10, 11, 12, 13, 14, 20, 21, 22, 23, 24]
    if store.engine.dialect.name == "postgresql":  # each in its day's partition
        assert stored == {
            10 + n + batch: historytables.partition_name(day_of(at + timedelta(seconds=batch)))
            for n, at in enumerate(moments)
            for batch in (0, 10)
        }
    else:
        assert set(stored.values()) == {"fetches"}


def test_a_day_the_default_partition_holds_keeps_going_there(store: Store) -> None:
    day = day_of(MIDNIGHT)
    with store.engine.begin() as connection:  # written before the day had a partition
        connection.execute(
            text(
                "INSERT INTO fetches (at, mac, path_id, protocol, method, status, bytes, "
                "duration_ms, day) VALUES (:at, '0004f2000001', :path, 'http', 'GET', 200, 1, "
                "1.0, :day)"
            ),
            {
                "at": epoch_micros(MIDNIGHT) if store.engine.dialect.name == "sqlite" else MIDNIGHT,
                "path": 1,
                "day": day,
            },
        )
    fetches.insert_records(store.engine, [record(MIDNIGHT + timedelta(hours=1), 2)])
    stored = where_stored(store.engine)
    assert sorted(stored) == [1, 12]
    if store.engine.dialect.name == "postgresql":
        assert set(stored.values()) == {historytables.DEFAULT_PARTITION}
        with store.engine.connect() as connection:
            assert day not in historytables.partition_days(connection)


def test_a_prune_drops_whole_days_after_rolling_them_up_and_deletes_the_rest(
    store: Store,
) -> None:
    with_phones(store)
    records = traffic(range(95, -1, -1), per_day=9)
    for offset in range(0, len(records), 100):
        fetches.insert_records(store.engine, records[offset : offset + 100])
    postgresql = store.engine.dialect.name == "postgresql"
    gone = (NOW - timedelta(days=93)).date()
    if postgresql:  # a day whose partition went (its records with it): records written back
        with store.engine.begin() as connection:  # later go to the default partition
            historytables.drop_partition(connection, day_of(NOW - timedelta(days=93)))
        records = [r for r in records if r.at.date() != gone]
    late = traffic(range(93, 92, -1), per_day=4)
    fetches.insert_records(store.engine, late)
    before = counts(store)
    cutoff = retention.cutoff(NOW, 90)
    assert cutoff is not None
    old = [r for r in records + late if r.at < cutoff]
    done = retention.prune(store.engine, NOW, 90, pause_s=0.0)
    rows, rolled = counts(store)
    assert done.deleted == len(old)
    assert (rows, rolled) == (before[0] - len(old), len(old))
    with store.engine.connect() as connection:
        days = historytables.partition_days(connection)
        left = set(connection.scalars(text("SELECT DISTINCT day FROM fetches")))
    assert min(left) == day_of(cutoff)
    if postgresql:
        # the four days before the cutoff that had a partition went whole; the late records
        # of the day that had none were deleted from the default partition
        assert done.partitions == 4
        assert min(days) == day_of(cutoff)
    else:
        assert (done.partitions, days) == (0, set())
    assert len(done.days) == len({r.at.date() for r in old})


@pytest.mark.postgres
def test_a_prune_makes_the_next_days_partitions_ahead(postgres_server: object) -> None:
    from tests.pg import PostgresServer

    assert isinstance(postgres_server, PostgresServer)
    store = Store(postgres_server.create_database())
    store.upgrade()
    with store.engine.begin() as connection:
        for day in historytables.partition_days(connection):
            historytables.drop_partition(connection, day)
    retention.prune(store.engine, NOW, 90)
    with store.engine.connect() as connection:
        days = historytables.partition_days(connection)
    store.close()
    assert days == {day_of(NOW) + n for n in range(3)}
