"""bench/history.py --bulk leaves the store its day-by-day mode leaves (issue 18: the
full-scale run writes a year in bulk, so the bulk store must be the one a server would have)."""

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
TABLES = {
    "raw records": RAW,
    "roll-ups": "SELECT * FROM fetch_days",
    "boot tallies": "SELECT * FROM boot_days",
    "phone_seen": "SELECT * FROM phone_seen",
    "phone_files": "SELECT * FROM phone_files",
    "texts": "SELECT text FROM fetch_texts",
    "batches": "SELECT * FROM fetch_batches",
    "indexes": "SELECT m.name, i.seqno, i.name FROM sqlite_master m, pragma_index_info(m.name) i "
    "WHERE m.type = 'index'",
}


@pytest.mark.parametrize(
    "checkpoints", [None, {1}], ids=["measured every kept day", "days copied without indexes"]
)
def test_the_bulk_mode_leaves_the_store_that_writing_and_pruning_day_by_day_leaves(
    history: ModuleType,
    data_dir: Path,
    checkpoints: set[int] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the full scale copies a run of days between two measurements without the fetch table's
    # secondary indexes: here every run does, so the indexes made again are compared too
    monkeypatch.setattr(history.historybulk, "UNINDEXED_RUN", 1)
    macs, serials = history.build(CliRunner(), data_dir.parent, PHONES, SITES)
    database = data_dir / "fleetkey.db"
    bulk_database = data_dir.parent / "bulk.db"
    shutil.copy(database, bulk_database)  # the same inventory: phones at the same sites
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
    stores = {
        "day by day": Store(f"sqlite:///{database}"),
        "bulk": Store(f"sqlite:///{bulk_database}"),
    }
    history.write_day_by_day(
        stores["day by day"], traffic, KEEP, lambda n, _: measured["day by day"].append(n)
    )
    history.write_bulk(
        stores["bulk"], traffic, KEEP, lambda n, _: measured["bulk"].append(n), checkpoints
    )
    found = {
        mode: {name: rows(store.engine, sql) for name, sql in TABLES.items()}
        for mode, store in stores.items()
    }
    for store in stores.values():
        store.close()
    day_by_day, bulk = found["day by day"], found["bulk"]
    # not vacuous: the old days are roll-ups only, the kept ones raw, a boot ran past midnight
    assert len({r[0] for r in day_by_day["roll-ups"]}) == DAYS - KEEP
    assert {r[-1] for r in day_by_day["raw records"]} == {
        (first - datetime(1970, 1, 1, tzinfo=UTC)).days + d for d in range(DAYS - KEEP, DAYS + 1)
    }
    assert len(day_by_day["boot tallies"]) == DAYS
    assert len(day_by_day["phone_seen"]) == PHONES
    for name in TABLES:
        assert bulk[name] == day_by_day[name], name
    # the kept days are measured as they come (1 to KEEP, or those asked for), then the last day
    assert measured["day by day"] == list(range(1, DAYS + 1))
    assert measured["bulk"] == ([*range(1, KEEP + 1)] if checkpoints is None else [1]) + [DAYS]
