"""A phone's fetch records are found with one index probe a day, on both backends: the plan
the database makes for `fleetkey fetches --mac` (``fetches.newest``), read with EXPLAIN.

PostgreSQL keeps a partition a day; ``day IN (every day) AND mac = ?`` made it probe every day
in every partition (or scan every partition whole), work that grows with the days kept under
``--fetch-retention 0``. SQLite keeps one table, whose (day, mac) index takes the IN list a day
at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from fleetkey.store import fetches
from fleetkey.store.fetchfilter import FetchFilter
from fleetkey.store.records import FetchRecord
from fleetkey.store.store import Store

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
DAYS = 8
PHONES = 50
MAC = "0004f2000007"


def traffic() -> list[FetchRecord]:
    return [
        FetchRecord(
            "/sip.cfg",
            "http",
            200,
            10,
            1.0,
            T0 + timedelta(days=d, seconds=p),
            mac=f"0004f2{p:06x}",
        )
        for d in range(DAYS)
        for p in range(PHONES)
    ]


def newest_statement(session: Session) -> tuple[str, Any]:
    """The statement (and parameters) ``fetches.newest`` runs for MAC's records."""
    seen: list[tuple[str, Any]] = []

    def keep(_c: object, _cur: object, statement: str, parameters: Any, *_: object) -> None:
        seen.append((statement, parameters))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", keep)
    try:
        found, left = fetches.newest(session, FetchFilter(mac=MAC), 5)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert ([r.mac for r in found], left) == ([MAC] * 5, DAYS - 5)
    return next((s, p) for s, p in seen if "ORDER BY" in s and "fetch_texts" in s)


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def test_a_phones_records_are_looked_up_with_one_index_probe_a_day(store: Store) -> None:
    fetches.insert_records(store.engine, traffic())
    with store.transaction() as session:
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            statement, parameters = newest_statement(session)
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            details = [row[-1] for row in plan]
            assert any(
                "USING INDEX ix_fetches_day_mac (day=? AND mac=?)" in line for line in details
            ), details
            return
        connection.exec_driver_sql("ANALYZE fetches")
        # JIT for any plan, as for this one past ~100 days kept: compiling cost 0.6-0.8 s
        connection.exec_driver_sql("SET LOCAL jit_above_cost = 0")
        statement, parameters = newest_statement(session)
        # a few rows a day: a scan would cost less than the index, as it would not at scale;
        # what is asserted is what each day's look-up reads, not the planner's costing
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        shown = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {statement}", parameters
        ).scalar_one()
    document = (shown if isinstance(shown, list) else json.loads(shown))[0]
    assert "JIT" not in document, document["JIT"]
    scans = [
        n for n in nodes(document["Plan"]) if str(n.get("Relation Name")).startswith("fetches")
    ]
    ran = [n for n in scans if n["Actual Loops"] > 0]
    assert len(ran) == DAYS, ran  # each day's partition, and no other, was read
    for scan in ran:
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
        assert scan["Actual Loops"] == 1, scan  # once: one probe
        condition = scan.get("Index Cond")  # its own day, not every day
        assert condition is not None, scan
        assert "ANY" not in condition, scan
