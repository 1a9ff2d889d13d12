"""Rollout planning at scale: a million phones, pure and from the store.

    .venv/bin/python bench/plan.py [--phones 1000000] [--json]

Measures (1) the pure planner on PHONES phones spread over 1,000 sites in five time zones,
(2) the pure planner on PHONES phones at one site, (3) `plan_license` from a SQLite store
holding PHONES phones at one site (loading the phones, the boot cost from fetch records and the
plan), (4) saving that plan as a rollout (one row per phone), and (5) planning the same
license again, around the load of the million phones just saved. Issue 7 asks for 1,000,000
phones planned in at most 10 s. There is no external planner to compare with; the figure to
read beside each is that target.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from fleetkey.clock import FixedClock
from fleetkey.core.license import LicenseType
from fleetkey.core.rollout.plan import BootCost, PlanInput, SitePhones, plan_rollout
from fleetkey.core.rollout.windows import Window
from fleetkey.ops.rollout import PlanOptions, plan_license, save
from fleetkey.store import inventory
from fleetkey.store.records import Site
from fleetkey.store.schema import PhoneRow
from fleetkey.store.store import Store
from fleetkey.testing import make_license, record_license

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
START = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
COST = BootCost(10, 40_000, 60, "bench profile")


def timed(label: str, action, results: dict[str, float]):  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    value = action()
    results[label] = time.perf_counter() - began
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.phones
    results: dict[str, float] = {}
    macs = [f"{i:012x}" for i in range(n)]
    per_site = max(n // 1000, 1)
    sites = tuple(
        SitePhones(
            f"1{s:011d}",
            ZONES[s % 5],
            Window.parse("22:00", "05:00"),
            tuple(macs[s * per_site : (s + 1) * per_site]),
        )
        for s in range(1000)
    )
    deadline = START + timedelta(days=20)
    many = timed(
        "pure, 1,000 sites",
        lambda: plan_rollout(PlanInput(sites, COST, 5000, START, deadline)),
        results,
    )
    one = SitePhones("100000000001", "Europe/Berlin", Window.parse("22:00", "05:00"), tuple(macs))
    timed(
        "pure, one site",
        lambda: plan_rollout(PlanInput((one,), COST, 5000, START, deadline)),
        results,
    )
    with tempfile.TemporaryDirectory(prefix="fleetkey-bench-plan-") as base:
        store = Store(f"sqlite:///{Path(base) / 'fleetkey.db'}")
        store.upgrade()
        clock = FixedClock(START)
        with store.transaction() as session:
            inventory.add_site(
                session,
                clock,
                "bench",
                Site("100000000001", "HQ", "Europe/Berlin", "22:00", "05:00"),
            )
            rows = [
                {"mac": m, "site_serial": "100000000001", "model": "VVX_500", "created_at": START}
                for m in macs
            ]
            for at in range(0, n, 50_000):
                session.execute(insert(PhoneRow), rows[at : at + 50_000])
            key = make_license(
                serial="100000000001", type=LicenseType.SITE, expires=date(2028, 3, 1)
            )
            license_id = record_license(session, key, clock=clock)
        options = PlanOptions(license_id, capacity=5000, deadline=date(2027, 3, 21))
        made = timed(
            "from the store, one site", lambda: plan_license(store, clock, options), results
        )
        timed("saving the rollout", lambda: save(store, clock, "bench", options, made), results)
        timed(  # the saved rollout's million phones are load the new plan must go around
            "again, beside the saved one", lambda: plan_license(store, clock, options), results
        )
        store.close()
    if args.json:
        print(json.dumps({"phones": n, "seconds": results, "waves": len(many.waves)}, indent=2))
        return
    print(f"{n:,} phones (target: planned in at most 10 s)")
    for label, seconds in results.items():
        print(f"  {label:28} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
