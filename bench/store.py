"""Fetch records per second through fleetkey's writer, next to a raw executemany, same run.

    .venv/bin/python bench/store.py [--count 200000] [--json]

For SQLite (WAL, a file on local disk) and for a throwaway PostgreSQL started here (durable
settings: fsync on), both fed the same rows:
  raw executemany   the DB-API driver alone (sqlite3 / psycopg), batches of 5,000, one
                    transaction each
  writer            FetchWriter: submit() from a producer thread, batched inserts on the
                    writer thread, until every record is committed
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetkey.store import historytables, texts
from fleetkey.store.fetches import MICROS_A_DAY, StoreSink
from fleetkey.store.phonestate import ROW_COLUMNS
from fleetkey.store.records import FetchRecord
from fleetkey.store.schema import epoch_micros
from fleetkey.store.store import Store
from fleetkey.store.writer import FetchWriter

from tests.pg import PostgresServer  # the test harness starts the server

# the table's columns as the writer fills them (store/fetches.py: texts as fetch_texts ids)
COLUMNS = tuple(
    {"path": "path_id", "user_agent": "agent_id"}.get(name, name) for name in ROW_COLUMNS
)
BATCH = 5000


def records(count: int) -> list[FetchRecord]:
    start = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    return [
        FetchRecord(
            path=f"/0004f2{i % 50000:06x}-license.cfg",
            protocol="http",
            status=200,
            bytes=452,
            duration_ms=0.8,
            at=start + timedelta(microseconds=i),
            method="GET",
            mac=f"0004f2{i % 50000:06x}",
            digest="ab" * 32,
            remote_addr=f"127.0.{i % 250}.{i % 200 + 1}",
            user_agent="FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application",
        )
        for i in range(count)
    ]


def through_writer(store: Store, rows: list[FetchRecord]) -> float:
    start = time.perf_counter()
    with FetchWriter(StoreSink(store.engine), batch_size=BATCH) as writer:

        def produce() -> None:
            for row in rows:
                writer.submit(row)

        producer = threading.Thread(target=produce)
        producer.start()
        producer.join()
    elapsed = time.perf_counter() - start
    if writer.written != len(rows) or writer.dropped:
        raise SystemExit(f"writer wrote {writer.written}, dropped {writer.dropped}")
    return elapsed


def table_rows(url: str, rows: list[FetchRecord]) -> list[tuple[Any, ...]]:
    """The rows the writer writes for ``rows`` into the store at ``url`` (its paths and
    User-Agents stored first, as the writer stores them, and named by id; SQLite's times in
    microseconds; the UTC day; on PostgreSQL the day's partition made), before the timing
    starts."""
    store = Store(url)
    engine = store.engine
    ids = texts.texts_of(engine).ids(
        engine, {r.path for r in rows} | {r.user_agent for r in rows if r.user_agent}
    )
    sqlite = engine.dialect.name == "sqlite"
    found = []
    for r in rows:
        micros = epoch_micros(r.at)
        agent = ids[r.user_agent] if r.user_agent else None
        found.append(
            (r.mac, micros if sqlite else r.at, ids[r.path], r.protocol, r.method, r.status,
             r.bytes, r.digest, r.remote_addr, agent, r.duration_ms, r.identified_by,
             micros // MICROS_A_DAY)
        )  # fmt: skip
    historytables.ensure_partitions(engine, {row[-1] for row in found})  # PostgreSQL's days
    store.close()
    return found


def raw_sqlite(path: Path, rows: list[FetchRecord]) -> float:
    tuples = table_rows(f"sqlite:///{path}", rows)
    marks = ", ".join("?" * len(COLUMNS))
    sql = f"INSERT INTO fetches ({', '.join(COLUMNS)}) VALUES ({marks})"  # noqa: S608  # constants
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    start = time.perf_counter()
    for offset in range(0, len(tuples), BATCH):
        with connection:
            connection.executemany(sql, tuples[offset : offset + BATCH])
    elapsed = time.perf_counter() - start
    connection.close()
    return elapsed


def raw_postgres(url: str, rows: list[FetchRecord]) -> float:
    tuples = table_rows(url, rows)
    marks = ", ".join(["%s"] * len(COLUMNS))
    sql = f"INSERT INTO fetches ({', '.join(COLUMNS)}) VALUES ({marks})"  # noqa: S608  # constants
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        start = time.perf_counter()
        for offset in range(0, len(tuples), BATCH):
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(sql, tuples[offset : offset + BATCH])
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = records(args.count)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fleetkey-bench-") as base:
        raw_db, our_db = Path(base) / "raw.db", Path(base) / "ours.db"
        for path in (raw_db, our_db):
            Store(f"sqlite:///{path}").upgrade()
        raw = raw_sqlite(raw_db, rows)
        ours = through_writer(Store(f"sqlite:///{our_db}"), rows)
        results["sqlite"] = {"raw executemany": args.count / raw, "writer": args.count / ours}
    server = PostgresServer(durable=True).start()
    try:
        raw_url, our_url = server.create_database(), server.create_database()
        for url in (raw_url, our_url):
            Store(url).upgrade()
        raw = raw_postgres(raw_url, rows)
        ours = through_writer(Store(our_url), rows)
        results["postgresql"] = {"raw executemany": args.count / raw, "writer": args.count / ours}
    finally:
        server.stop()
    if args.json:
        print(json.dumps({"count": args.count, "cpus": os.cpu_count(), "rates": results}, indent=2))
        return
    print(f"{args.count} fetch records, {os.cpu_count()} cores")
    for backend, rates in results.items():
        ratio = rates["writer"] / rates["raw executemany"]
        print(
            f"  {backend:<11} raw executemany {rates['raw executemany']:>9,.0f}/s   "
            f"writer {rates['writer']:>9,.0f}/s   ratio {ratio:.2f}x"
        )
    print("targets: writer >= 50,000/s on SQLite; >= 0.5x raw on both")


if __name__ == "__main__":
    main()
