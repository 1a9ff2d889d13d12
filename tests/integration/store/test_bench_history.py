"""bench/history.py --bulk leaves the store its day-by-day mode leaves (issue 18: the
full-scale run writes a year in bulk, so the bulk store must be the one a server would have),
on SQLite and on PostgreSQL (its fetch table partitioned by day)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from fleetkey.store.store import Store

from tests.helpers import bench_module
from tests.pg import PostgresServer

PHONES, SITES, DAYS, KEEP = 60, 3, 7, 3


@pytest.fixture(scope="module")
def history() -> ModuleType:
    return bench_module("history")


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return sorted(tuple(r) for r in connection.execute(text(sql)))


RAW = (
    "SELECT f.mac, f.at, p.text, f.protocol, f.method, f.status, f.bytes, f.digest, "
    "f.remote_addr, a.text, f.duration_ms, f.identified_by, f.day FROM fetches f "
    "JOIN fetch_texts p ON p.id = f.path_id LEFT JOIN fetch_texts a ON a.id = f.agent_id"
)
COMMON = {
    "raw records": RAW,
    "roll-ups": "SELECT * FROM fetch_days",
    "boot tallies": "SELECT * FROM boot_days",
    "phone_seen": "SELECT * FROM phone_seen",
    "phone_files": "SELECT * FROM phone_files",
    "texts": "SELECT text FROM fetch_texts",
    "batches": "SELECT * FROM fetch_batches",
}
TABLES = {
    "sqlite": {
        **COMMON,
        "indexes": "SELECT m.name, i.seqno, i.name FROM sqlite_master m, "
        "pragma_index_info(m.name) i WHERE m.type = 'index'",
    },
    "postgresql": {
        **COMMON,
        # every partition's and the parent's indexes, as their definitions
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema()",
        "partitions": "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'fetches'::regclass",
    },
}


Stores = tuple[str, list[str], list[str], dict[str, str]]  # backend, MACs, serials, URLs


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores(
    history: ModuleType, request: pytest.FixtureRequest, data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Stores:  # fmt: skip
    """The same inventory (phones at the same sites) in two stores, the day-by-day one and the
    bulk one: SQLite's copied, PostgreSQL's two databases built by the same commands."""
    if request.param == "sqlite":
        macs, serials = history.build(CliRunner(), data_dir.parent, PHONES, SITES)
        database, bulk_database = data_dir / "fleetkey.db", data_dir.parent / "bulk.db"
        shutil.copy(database, bulk_database)
        return "sqlite", macs, serials, {"day by day": f"sqlite:///{database}",
                                         "bulk": f"sqlite:///{bulk_database}"}  # fmt: skip
    server: PostgresServer = request.getfixturevalue("postgres_server")
    urls = {}
    for mode in ("day by day", "bulk"):
        folder = data_dir.parent / mode.replace(" ", "-")
        folder.mkdir()
        monkeypatch.setenv("FLEETKEY_DATA", str(folder / "data"))
        monkeypatch.setenv("FLEETKEY_DB", urls.setdefault(mode, server.create_database()))
        macs, serials = history.build(CliRunner(), folder, PHONES, SITES)
    return "postgresql", macs, serials, urls


@pytest.mark.parametrize(
    "checkpoints", [None, {1}], ids=["measured every kept day", "days copied without indexes"]
)
def test_the_bulk_mode_leaves_the_store_that_writing_and_pruning_day_by_day_leaves(
    history: ModuleType,
    stores: Stores,
    checkpoints: set[int] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the full scale copies a run of days between two measurements without the fetch table's
    # secondary indexes: here every run does, so the indexes made again are compared too
    monkeypatch.setattr(history.historybulk, "UNINDEXED_RUN", 1)
    backend, macs, serials, urls = stores
    first = datetime(2026, 3, 1, tzinfo=UTC)
    # boots spread over 26 hours: the last phones' boots run past midnight into the next day,
    # as a day of 100,000 phones' boots does (0.86 s apart, 5 s a boot)
    traffic = history.Traffic(
        macs,
        {mac: serials[i % SITES] for i, mac in enumerate(macs)},
        dict.fromkeys(serials, "ab" * 32),
        first,
        DAYS,
        timedelta(hours=26),
    )
    measured: dict[str, list[int]] = {"day by day": [], "bulk": []}
    opened = {mode: Store(url) for mode, url in urls.items()}
    history.write_day_by_day(
        opened["day by day"], traffic, KEEP, lambda n, _: measured["day by day"].append(n)
    )
    history.write_bulk(
        opened["bulk"], traffic, KEEP, lambda n, _: measured["bulk"].append(n), checkpoints
    )
    found = {
        mode: {name: rows(store.engine, sql) for name, sql in TABLES[backend].items()}
        for mode, store in opened.items()
    }
    for store in opened.values():
        store.close()
    day_by_day, bulk = found["day by day"], found["bulk"]
    # not vacuous: the old days are roll-ups only, the kept ones raw, a boot ran past midnight
    assert len({r[0] for r in day_by_day["roll-ups"]}) == DAYS - KEEP
    assert {r[-1] for r in day_by_day["raw records"]} == {
        (first - datetime(1970, 1, 1, tzinfo=UTC)).days + d for d in range(DAYS - KEEP, DAYS + 1)
    }
    assert len(day_by_day["boot tallies"]) == DAYS
    assert len(day_by_day["phone_seen"]) == PHONES
    if backend == "postgresql":  # the kept days' partitions and those made ahead
        assert len(day_by_day["partitions"]) > KEEP
    for name in TABLES[backend]:
        assert bulk[name] == day_by_day[name], name
    # the kept days are measured as they come (1 to KEEP, or those asked for), then the last day
    assert measured["day by day"] == list(range(1, DAYS + 1))
    assert measured["bulk"] == ([*range(1, KEEP + 1)] if checkpoints is None else [1]) + [DAYS]
