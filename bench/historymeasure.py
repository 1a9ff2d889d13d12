"""bench/history.py's measurements of a store: the commands in-process, best of three, the
writer's rate and CPU time a record, the rows kept and the database's size.

A kept store (``--data``) is measured again after the build: the writer's storm it writes is
the one the build's last measurement wrote (the same records at the same moments), and its raw
records and committed batches are deleted after, so measuring again leaves the store as it was
(the per-phone state takes the same newest rows again).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import delete, func, select, text

from fleetkey.cli.main import cli
from fleetkey.core.license import LicenseType
from fleetkey.core.rollout import cost
from fleetkey.store import fetches, registry
from fleetkey.store.fetches import StoreSink
from fleetkey.store.records import FetchRecord
from fleetkey.store.schema import FetchBatchRow, FetchDayRow, FetchRow, PhoneFileRow, PhoneSeenRow
from fleetkey.store.store import Store
from fleetkey.store.writer import FetchWriter

BATCH = 50_000  # the writer's batch


def invoke(runner: CliRunner, *args: str) -> None:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"fleetkey {' '.join(args)}: exit {result.exit_code}\n{result.output}")


def best_of(repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def writer_rate(store: Store, records: list[FetchRecord]) -> tuple[float, float]:
    """Records a second through FetchWriter, on its thread, until committed, and this
    process's CPU time a record in µs (the writer's and the driver's work; PostgreSQL's
    server works in processes of its own), which the machine's load leaves alone."""
    began, cpu = time.perf_counter(), time.process_time()
    with FetchWriter(StoreSink(store.engine), batch_size=BATCH) as writer:
        producer = threading.Thread(target=lambda: [writer.submit(r) for r in records])
        producer.start()
        producer.join()
    if writer.written != len(records) or writer.dropped:
        raise SystemExit(f"writer wrote {writer.written}, dropped {writer.dropped}")
    spent = time.process_time() - cpu
    return len(records) / (time.perf_counter() - began), spent / len(records) * 1e6


def forget_storm(store: Store, since: datetime, newest_id: int) -> None:
    """Delete what a measurement's storm wrote after record ``newest_id`` and moment ``since``
    (its records and committed batches), so measuring a kept store again leaves it as it was."""
    with store.transaction() as session:
        session.execute(delete(FetchRow).where(FetchRow.id > newest_id))
        session.execute(delete(FetchBatchRow).where(FetchBatchRow.at >= since))


def newest_id(store: Store) -> int:
    with store.transaction() as session:
        return int(session.scalar(select(func.max(FetchRow.id))) or 0)


def size_bytes(store: Store, url: str) -> int:
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "postgresql":
            return int(connection.scalar(text("SELECT pg_database_size(current_database())")))
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(url.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def counts(store: Store) -> dict[str, int]:
    with store.transaction() as session:
        return {
            name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in (
                ("raw records", FetchRow),
                ("phone_seen", PhoneSeenRow),
                ("phone_files", PhoneFileRow),
                ("fetch_days", FetchDayRow),
            )
        }


def raw_boot_cost(store: Store) -> None:
    """The boot-cost measure as alerts and rollout plan made it before the daily tallies
    (store/bootdays.py): the newest 200,000 records read into Python. The baseline, timed on
    the same store in the same run."""
    with store.transaction() as session:
        cost.measure(fetches.recent_requests(session))


def measure(
    runner: CliRunner,
    store: Store,
    url: str,
    mac: str,
    license_id: int,
    storm: list[FetchRecord],
    *,
    forget: bool = False,
) -> dict[str, Any]:
    """The figures of one checkpoint; with ``forget``, the writer's storm is deleted after
    (a kept store measured again: see :func:`forget_storm`)."""
    found: dict[str, Any] = {
        "alerts s": best_of(3, lambda: invoke(runner, "alerts")),
        "phones list s": best_of(3, lambda: invoke(runner, "phones", "list")),
        "phones show s": best_of(3, lambda: invoke(runner, "phones", "show", mac)),
        "fetches --mac s": best_of(3, lambda: invoke(runner, "fetches", "--mac", mac)),
        "rollout plan s": best_of(
            3,
            lambda: invoke(
                runner,
                "rollout",
                "plan",
                str(license_id),
                "--capacity",
                "500",
                "--dry-run",
                "--deadline",
                (datetime.now(UTC) + timedelta(days=60)).date().isoformat(),
            ),
        ),
    }
    newest, since = newest_id(store), datetime.now(UTC)
    found["writer rec/s"], found["writer CPU µs/rec"] = writer_rate(store, storm)
    if forget:
        forget_storm(store, since, newest)
    found["raw boot cost s"] = best_of(3, lambda: raw_boot_cost(store))  # before boot_days
    found.update(counts(store))
    size = size_bytes(store, url)
    found["database MB"] = size / 1e6
    found["B/record"] = size / max(found["raw records"], 1)
    return found


def fleet(
    store: Store, phones: int, sites: int
) -> tuple[list[str], dict[str, str], dict[str, str], int]:
    """The built fleet's MACs, their sites, each site's posted license digest and a license."""
    serials = [f"1000000000{n:02d}" for n in range(1, sites + 1)]
    macs = [f"0004f2{i:06x}" for i in range(phones)]
    with store.transaction() as session:
        posted = {s: registry.posted(session, LicenseType.SITE, s) for s in serials}
    digests = {s: p.digest for s, p in posted.items() if p is not None}
    license_id = next(p.id for p in posted.values() if p is not None)
    return macs, {mac: serials[i % sites] for i, mac in enumerate(macs)}, digests, license_id


def show(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['backend']}: {report['phones']:,} phones, {report['days']} days, "
          f"retention {report['retention']}, load {os.getloadavg()}")  # fmt: skip
    if "build and traffic s" in report and "remeasured at" not in report:
        print(
            f"built in {report['build and traffic s']:.0f} s, pruning {report['pruning s']:.1f} s"
        )
    results = report["results"]
    keys = list(next(iter(results.values())))
    print(f"{'':>14} " + " ".join(f"{k:>14}" for k in keys))
    for name, row in results.items():
        print(f"{name:>14} " + " ".join(f"{row[k]:>14,.3f}" if isinstance(row[k], float)
                                       else f"{row[k]:>14,}" for k in keys))  # fmt: skip
