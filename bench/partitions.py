"""PostgreSQL: a day of fetch records removed by the prune's drop of its partition, or by
5,000-record deletes from one table, and the writer's inserts into either.

    .venv/bin/python bench/partitions.py [--phones 5000] [--days 4]

On a throwaway PostgreSQL (as the tests start it, durable), writes DAYS days of
bench/history.py's traffic (12 requests a phone a day) through the store's writer path
(store/fetches.py's insert_records, with the per-phone state) into the store's table,
partitioned by day since migration 0019, and times:
  writer          records/s of the last day's inserts into the store's table
  roll-up read    reading the oldest day and summing it up per site (retention.day_rollups)
  prune a day     retention.prune of the oldest day: roll-up, then DROP of its partition (the
                  boot tallies made before), so the drop's own cost is the difference
and, on a copy of the same rows in one table (no partitions, PRIMARY KEY (id), the same
indexes: the table before 0019):
  insert          records/s of the last day's rows into it (one executemany, as the writer)
  delete a day    the oldest day's rows deleted 5,000 ids a transaction, as the prune deleted
                  them before 0019 (without the roll-up, which both do)
then the database's size. Prints JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent
]

from sqlalchemy import text  # noqa: E402  # after the path is set
from sqlalchemy.orm import Session  # noqa: E402  # after the path is set

from fleetkey.store import bootdays, fetches, retention  # noqa: E402  # after the path is set
from fleetkey.store.store import Store  # noqa: E402  # after the path is set

from tests.pg import PostgresServer  # noqa: E402  # the harness starts a throwaway server

_spec = importlib.util.spec_from_file_location("history", Path(__file__).with_name("history.py"))
assert _spec is not None
assert _spec.loader is not None
history = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(history)

COPY = (
    "mac, at, path_id, protocol, method, status, bytes, digest, remote_addr, agent_id, "
    "duration_ms, identified_by, day"
)
COLUMNS = (
    "mac varchar(12), at timestamptz, path_id integer, protocol varchar(8), method varchar(8), "
    "status integer, bytes bigint, digest varchar(64), remote_addr varchar(64), "
    "agent_id integer, duration_ms double precision, identified_by varchar(9), day integer"
)
SELECT = f"SELECT id, {COPY} FROM fetches"  # noqa: S608  # constant column names
INSERT = f"INSERT INTO fetches_one (id, {COPY}) VALUES ({', '.join(['%s'] * 14)})"  # noqa: S608  # constant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=5000)
    parser.add_argument("--days", type=int, default=4)
    args = parser.parse_args()
    server = PostgresServer(durable=True).start()
    found: dict[str, object] = {"phones": args.phones, "days": args.days}
    try:
        store = Store(server.create_database())
        store.upgrade()
        macs = [f"0004f2{i:06x}" for i in range(args.phones)]
        serials = [f"1000000000{n:02d}" for n in range(1, 21)]
        site_of = {mac: serials[i % 20] for i, mac in enumerate(macs)}
        digests = dict.fromkeys(serials, "ab" * 32)
        first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        first -= timedelta(days=args.days + 1)
        for day in range(args.days):
            records = history.day_traffic(macs, site_of, digests, first + timedelta(days=day))
            began = time.perf_counter()
            for offset in range(0, len(records), history.BATCH):
                fetches.insert_records(store.engine, records[offset : offset + history.BATCH])
            found["writer records/s"] = len(records) / (time.perf_counter() - began)
        found["records a day"] = len(records)
        with store.engine.begin() as connection:
            days = sorted(
                d for (d,) in connection.execute(text("SELECT DISTINCT day FROM fetches"))
            )
            for statement in _one_table(days):
                connection.exec_driver_sql(statement)
            rows = [
                tuple(r) for r in connection.exec_driver_sql(f"{SELECT} WHERE day = {days[-1]}")
            ]
        with store.engine.begin() as connection:
            began = time.perf_counter()
            connection.exec_driver_sql(INSERT, rows)
            found["one table insert records/s"] = len(rows) / (time.perf_counter() - began)
        with Session(store.engine) as session, session.begin():
            bootdays.day_tallies(session)  # made first: the prune would, before its days
        with store.engine.connect() as connection:
            began = time.perf_counter()
            retention.day_rollups(connection, first.date())
            found["roll-up read s"] = time.perf_counter() - began
        began = time.perf_counter()
        done = retention.prune(store.engine, first + timedelta(days=2), 1, pause_s=0.0)
        found["prune a day s"] = time.perf_counter() - began
        found["pruned records"] = done.deleted
        found["partitions dropped"] = done.partitions
        oldest = f"SELECT id FROM fetches_one WHERE day = {days[0]}"  # noqa: S608  # an int
        with store.engine.connect() as connection:
            ids = list(connection.exec_driver_sql(oldest).scalars())
        began = time.perf_counter()
        for start in range(0, len(ids), retention.DELETE_BATCH):
            with store.engine.begin() as connection:
                connection.exec_driver_sql(
                    "DELETE FROM fetches_one WHERE id = ANY(%s)",
                    (ids[start : start + retention.DELETE_BATCH],),
                )
        found["one table delete a day s"] = time.perf_counter() - began
        found["one table deleted"] = len(ids)
        with store.engine.connect() as connection:
            size = connection.scalar(text("SELECT pg_database_size(current_database())"))
            found["database MB"] = int(size or 0) / 1e6
        store.close()
    finally:
        server.stop()
    found["load"] = os.getloadavg()
    print(json.dumps(found, indent=2))


def _one_table(days: list[int]) -> list[str]:
    """A copy of the fetch records in one table, as before migration 0019, holding every day's
    rows but the last one."""
    return [
        f"CREATE TABLE fetches_one (id bigint PRIMARY KEY, {COLUMNS})",
        "CREATE INDEX ON fetches_one (day, mac)",
        "CREATE INDEX ON fetches_one (at)",
        f"INSERT INTO fetches_one {SELECT} WHERE day < {days[-1]}",
    ]


if __name__ == "__main__":
    main()
