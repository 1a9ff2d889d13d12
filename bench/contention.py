"""SQLite under `fleetkey serve --workers N`: does one writer waiting for the database's write
lock hold up the answers of the workers?

    .venv/bin/python bench/contention.py [--files 10000] [--seconds 10] [--rounds 3]
                                         [--workers 2] [--hold 0.3] [--json]

Needs wrk. One `serve --workers N` on SQLite (each worker writes its own records, in batches of
a second, on its writer thread); wrk with keep-alive over distinct license files, nothing
pinned. Each round measures it twice, in turn: as it is (the workers' writers take turns at
the lock), and with a contender, a third connection that takes the write lock (`BEGIN
IMMEDIATE`) and keeps it ``--hold`` seconds of every second, so that every batch of every
worker waits for it. Reports requests/s, p99 latency and records written per second (the
window's records, counted once the writers caught up, and how long after the load that took)
with and without the contender.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchfleet import (
    bench_env,
    issue_phone_licenses,
    start_fleetkey,
    stop_servers,
    wrk,
    wrk_options,
    wrk_script,
)


def count(database: Path) -> int:
    with sqlite3.connect(database, timeout=60) as db:
        found: int = db.execute("SELECT count(*) FROM fetches").fetchone()[0]
        return found


def contend(database: Path, hold_s: float, stop: threading.Event) -> None:
    """Hold the write lock ``hold_s`` of every second until ``stop``."""
    db = sqlite3.connect(database, timeout=60, isolation_level=None)
    try:
        while not stop.is_set():
            db.execute("BEGIN IMMEDIATE")
            time.sleep(hold_s)
            db.execute("COMMIT")
            stop.wait(1.0 - hold_s)
    finally:
        db.close()


def window(
    url: str, script: Path, database: Path, args: argparse.Namespace, hold_s: float
) -> dict[str, float]:
    stop = threading.Event()
    contender = threading.Thread(target=contend, args=(database, hold_s, stop))
    before = count(database)
    if hold_s:
        contender.start()
    began = time.monotonic()
    rps, p99 = wrk(url, script, args.seconds, args.connections, args.workers)
    wall = time.monotonic() - began
    stop.set()
    if hold_s:
        contender.join()
    settled, written = time.monotonic(), count(database)
    while time.monotonic() - settled < 3.0:  # the writers caught up: 3 s without a new record
        time.sleep(0.5)
        now = count(database)
        if now != written:
            settled, written = time.monotonic(), now
    caught_up = time.monotonic() - began - wall - 3.0  # how long the writers were behind
    return {
        "rps": rps,
        "p99_ms": p99,
        "records_per_s": (written - before) / wall,
        "behind_s": max(0.0, caught_up),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    wrk_options(parser, workers=2)
    parser.add_argument("--hold", type=float, default=0.3, help="seconds of every second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-contention-"))
    env = bench_env(base)
    runs: dict[str, list[dict[str, float]]] = {"alone": [], "contended": []}
    summary = ""
    try:
        issue_phone_licenses(base, env, args.files)
        script = wrk_script(base, args.files, "keep-alive")
        server, url = start_fleetkey(env, base, args.workers)
        database = base / "data" / "fleetkey.db"
        try:
            time.sleep(1)
            for number in range(args.rounds):
                order = ("alone", "contended") if number % 2 == 0 else ("contended", "alone")
                for name in order:
                    hold = args.hold if name == "contended" else 0.0
                    runs[name].append(window(url + "/", script, database, args, hold))
        finally:
            summary = stop_servers([server])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, summary)


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], summary: str) -> None:
    medians: dict[str, Any] = {
        name: {key: statistics.median(run[key] for run in found) for key in found[0]}
        for name, found in runs.items()
    }
    if args.json:
        print(json.dumps({"rounds": runs, "medians": medians, "fleetkey": summary}, indent=2))
        return
    print(
        f"serve --workers {args.workers} on SQLite, wrk keep-alive -t{args.workers} "
        f"-c{args.connections}, {args.rounds} rounds of {args.seconds} s each way; contender: "
        f"the write lock held {args.hold} s of every second"
    )
    for name, figures in medians.items():
        print(
            f"  {name:<10} {figures['rps']:>9,.0f} req/s   p99 {figures['p99_ms']:7.2f} ms   "
            f"{figures['records_per_s']:>9,.0f} records/s   writers caught up "
            f"{figures['behind_s']:.1f} s after the load"
        )
    print(f"  load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  {summary}")


if __name__ == "__main__":
    main()
