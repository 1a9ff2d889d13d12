"""A fleet's year of fetch history: the commands and the writer at day 1, 90 and 365.

    .venv/bin/python bench/history.py [--phones 100000] [--days 365] [--sites 20] [--bulk]
        [--retention 90] [--backend sqlite|postgresql] [--writer-records 100000] [--json]

Builds a fresh data directory (`fleetkey init`, sites, `phones import`, a posted site license
per site), then writes DAYS days of traffic the way servers write it (store/fetches.py's
insert_records: the writer's batched insert and its per-phone state upserts, 50,000 records a
batch), 12 requests per phone per day (a boot: master config, phone config, site license,
phone license (404), two more configs; then six config polls, 304), and after each day prunes
what the retention lets go (store/retention.py: roll-up, batched deletes), as `serve` does;
with --bulk (SQLite), the store that leaves, built much faster (bench/historybulk.py).
Before the first day (the empty store) and at day 1, 90 and 365 (those within DAYS, and DAYS)
it times, in-process through click, best of three:
  alerts          `fleetkey alerts`
  phones list     `fleetkey phones list` (the first page)
  phones show     `fleetkey phones show MAC`
  fetches --mac   `fleetkey fetches --mac MAC` (the newest 50 of a phone's raw records)
  rollout plan    `fleetkey rollout plan ID --capacity 500 --deadline (in 60 days) --dry-run`
                  (the boot cost from the daily tallies, store/bootdays.py)
  raw boot cost   the boot-cost measure as it was before those tallies (the newest 200,000
                  records read into Python), the baseline of alerts and rollout plan
and the writer's rate: --writer-records records of one boot storm through FetchWriter, on its
thread, until committed. Prints the raw records kept, the roll-ups, the database's size and
its bytes per raw record kept. The phones' User-Agents carry their MAC (one per phone).
The commands run with the real clock; the simulated days end today.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

# bench/http.py would stand in for the standard library's http (httpx imports it); the
# repository's root instead, for tests.pg
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent
]

from click.testing import CliRunner  # noqa: E402  # after the path is set
from sqlalchemy import func, select, text  # noqa: E402  # after the path is set

from fleetkey.cli.main import cli  # noqa: E402  # after the path is set
from fleetkey.core.license import LicenseType  # noqa: E402
from fleetkey.core.rollout import cost  # noqa: E402  # after the path is set
from fleetkey.store import fetches, registry, retention  # noqa: E402  # after the path is set
from fleetkey.store.fetches import StoreSink  # noqa: E402  # after the path is set
from fleetkey.store.records import FetchRecord  # noqa: E402  # after the path is set
from fleetkey.store.schema import FetchDayRow, FetchRow, PhoneFileRow, PhoneSeenRow  # noqa: E402  # after the path is set
from fleetkey.store.store import Store  # noqa: E402  # after the path is set
from fleetkey.store.writer import FetchWriter  # noqa: E402  # after the path is set

from tests.pg import PostgresServer  # noqa: E402  # the harness starts a throwaway server

_spec = importlib.util.spec_from_file_location(
    "historybulk", Path(__file__).with_name("historybulk.py")
)
assert _spec is not None
assert _spec.loader is not None
historybulk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(historybulk)

PASSPHRASE = "bench"  # noqa: S105  # a throwaway data directory's passphrase
# tagged with the phone's MAC (device.prov.tagSerialNo=1, domain.md): a User-Agent per phone,
# the most the store's table of texts (store/texts.py) has to keep
AGENT = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{mac}) Type/Application"
BATCH = 50_000
DAY = timedelta(days=1)


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


def build(runner: CliRunner, folder: Path, phones: int, sites: int) -> tuple[list[str], list[str]]:
    invoke(runner, "init")
    serials = [f"1000000000{n:02d}" for n in range(1, sites + 1)]
    for serial in serials:
        invoke(runner, "sites", "add", serial, "--name", f"site {serial}", "--tz", "UTC",
               "--window", "01:00-05:00")  # fmt: skip
    macs = [f"0004f2{i:06x}" for i in range(phones)]
    csv = folder / "phones.csv"
    rows = (f"{mac},{serials[i % sites]},VVX_500,5.9.7.4477\n" for i, mac in enumerate(macs))
    csv.write_text("mac,site,model,firmware\n" + "".join(rows))
    invoke(runner, "phones", "import", str(csv))
    expires = (datetime.now(UTC) + timedelta(days=400)).date().isoformat()
    for serial in serials:
        invoke(runner, "issue", "site", "--serial", serial, "--features", "vqmon",
               "--expires", expires)  # fmt: skip
    return macs, serials


def day_traffic(
    macs: list[str],
    site_of: dict[str, str],
    digests: dict[str, str],
    start: datetime,
    spread: timedelta = DAY,
) -> list[FetchRecord]:
    """12 requests per phone: a boot at the phone's moment of the day, then six polls. Boots
    spread evenly over ``spread``: over 14,400 phones the last ones' run past midnight."""
    found = []
    spacing = spread.total_seconds() / len(macs)
    for i, mac in enumerate(macs):
        boot = start + timedelta(seconds=i * spacing)
        site = site_of[mac]
        address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        steps = (
            ("/000000000000.cfg", 200, 900, None),
            (f"/{mac}.cfg", 404, 0, None),
            (f"/{site}/000000000000-license.cfg", 200, 612, digests[site]),
            (f"/{mac}-license.cfg", 404, 0, None),
            ("/sip.cfg", 200, 40_000, None),
            ("/phone1.cfg", 200, 8_000, None),
        )
        for n, (path, status, size, digest) in enumerate(steps):
            found.append(
                FetchRecord(path, "http", status, size, 1.0 + n, boot + timedelta(seconds=n),
                            mac=mac, digest=digest, remote_addr=address,
                            user_agent=AGENT.format(mac=mac))
            )  # fmt: skip
        for poll in range(1, 7):
            at = start + (boot - start + timedelta(hours=3 * poll)) % DAY
            found.append(
                FetchRecord("/000000000000.cfg", "http", 304, 0, 0.7, at, mac=mac,
                            remote_addr=address, user_agent=AGENT.format(mac=mac))
            )  # fmt: skip
    return found


class Traffic(NamedTuple):
    """DAYS days of the fleet's traffic, the first starting at ``first`` (a UTC midnight)."""

    macs: list[str]
    site_of: dict[str, str]
    digests: dict[str, str]
    first: datetime
    days: int
    spread: timedelta = DAY  # the boots of a day spread over it (past a day: over midnight)

    def day(self, n: int) -> list[FetchRecord]:
        return day_traffic(self.macs, self.site_of, self.digests, self.first + n * DAY,
                           self.spread)  # fmt: skip


Checkpoint = Callable[[int, datetime], None]  # after day N, a moment of that day


def write_day_by_day(store: Store, traffic: Traffic, keep_days: int, after: Checkpoint) -> float:
    """Each day's records through insert_records, 50,000 a batch, then the prune, as a server
    writes and prunes them; the seconds spent pruning."""
    pruning = 0.0
    for day in range(traffic.days):
        start = traffic.first + day * DAY
        records = traffic.day(day)
        for offset in range(0, len(records), BATCH):
            fetches.insert_records(store.engine, records[offset : offset + BATCH])
        pruned = time.perf_counter()
        retention.prune(store.engine, start + DAY, keep_days, pause_s=0.0)
        pruning += time.perf_counter() - pruned
        after(day + 1, start + DAY - timedelta(hours=1))
    return pruning


BULK_HELP = (
    "write the days the retention has removed as their roll-ups and boot tallies only, and the "
    "kept days' raw records in bulk (bench/historybulk.py): the store the day-by-day mode "
    "leaves, on SQLite; day N < DAYS is measured only up to the retention"
)


def write_bulk(store: Store, traffic: Traffic, keep_days: int, after: Checkpoint) -> float:
    """The store write_day_by_day leaves (bench/historybulk.py); the seconds spent computing
    the roll-ups and tallies of the days written as such."""
    raw = min(traffic.days, keep_days) if keep_days else traffic.days
    rolled = traffic.days - raw
    if traffic.days > 1 and raw < 2:
        raise SystemExit("--bulk takes the roll-ups of a day from a kept day: retention >= 2")
    writer = historybulk.BulkWriter(store.engine, traffic.day(0))
    oldest_raw = traffic.first + rolled * DAY
    cutoff = historybulk.day_number(oldest_raw) * fetches.MICROS_A_DAY
    writer.write_day(rolled)
    began = time.perf_counter()
    first = historybulk.summaries(store.engine, oldest_raw.date())  # no day before it
    summing = time.perf_counter() - began
    for n in range(1, raw + 1):
        if n > 1:
            writer.write_day(rolled + n - 1)
        if n < traffic.days:
            writer.write_state()
            after(n, oldest_raw + n * DAY - timedelta(hours=1))
        if n == 1 and rolled:  # the records of the day before that ran past midnight
            writer.write_day(rolled - 1, since=cutoff)
    writer.write_state()
    began = time.perf_counter()
    steady = traffic.first + (traffic.days - 2) * DAY  # a whole day after a whole day
    later = historybulk.summaries(store.engine, steady.date()) if traffic.days > 1 else first
    last = historybulk.newest_day(store.engine) - historybulk.day_number(traffic.first)
    historybulk.write_summaries(
        store.engine,
        {(traffic.first + n * DAY).date(): (first if n == 0 else later)[0] for n in range(rolled)},
        {(traffic.first + n * DAY).date(): (first if n == 0 else later)[1] for n in range(last)},
    )
    retention.prune(store.engine, traffic.first + traffic.days * DAY, keep_days, pause_s=0.0)
    summing += time.perf_counter() - began
    after(traffic.days, traffic.first + traffic.days * DAY - timedelta(hours=1))
    return summing


def writer_rate(store: Store, records: list[FetchRecord]) -> float:
    began = time.perf_counter()
    with FetchWriter(StoreSink(store.engine), batch_size=BATCH) as writer:
        producer = threading.Thread(target=lambda: [writer.submit(r) for r in records])
        producer.start()
        producer.join()
    if writer.written != len(records) or writer.dropped:
        raise SystemExit(f"writer wrote {writer.written}, dropped {writer.dropped}")
    return len(records) / (time.perf_counter() - began)


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
    runner: CliRunner, store: Store, url: str, mac: str, license_id: int, storm: list[FetchRecord]
) -> dict[str, Any]:
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
        "writer rec/s": writer_rate(store, storm),
    }
    found["raw boot cost s"] = best_of(3, lambda: raw_boot_cost(store))  # before boot_days
    found.update(counts(store))
    size = size_bytes(store, url)
    found["database MB"] = size / 1e6
    found["B/record"] = size / max(found["raw records"], 1)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--retention", type=int, default=retention.DEFAULT_RETENTION_DAYS)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--writer-records", type=int, default=100_000)
    parser.add_argument("--bulk", action="store_true", help=BULK_HELP)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.bulk and args.backend != "sqlite":
        parser.error("--bulk writes SQLite's rows: use it with --backend sqlite")
    folder = Path(tempfile.mkdtemp(prefix="fleetkey-bench-history-"))
    server = PostgresServer(durable=True).start() if args.backend == "postgresql" else None
    url = server.create_database() if server else f"sqlite:///{folder / 'data' / 'fleetkey.db'}"
    os.environ.update(
        FLEETKEY_DATA=str(folder / "data"), FLEETKEY_KEY_PASSPHRASE=PASSPHRASE, COLUMNS="80"
    )
    if server:
        os.environ["FLEETKEY_DB"] = url
    runner = CliRunner()
    began = time.perf_counter()
    macs, serials = build(runner, folder, args.phones, args.sites)
    site_of = {mac: serials[i % len(serials)] for i, mac in enumerate(macs)}
    store = Store(url)
    with store.transaction() as session:
        posted = {s: registry.posted(session, LicenseType.SITE, s) for s in serials}
    digests = {s: p.digest for s, p in posted.items() if p is not None}
    license_id = next(p.id for p in posted.values() if p is not None)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - (args.days - 1) * DAY

    def storm_of(at: datetime) -> list[FetchRecord]:  # a boot storm's records at ``at``
        found = day_traffic(macs, site_of, digests, at)[: args.writer_records]
        return [r._replace(at=at + timedelta(microseconds=n)) for n, r in enumerate(found)]

    results: dict[str, dict[str, Any]] = {
        "empty": measure(runner, store, url, macs[0], license_id, storm_of(first))
    }
    checkpoints = {d for d in (1, 90, 365) if d <= args.days} | {args.days}

    def checkpoint(day: int, at: datetime) -> None:
        if day in checkpoints:
            results[f"day {day}"] = measure(runner, store, url, macs[0], license_id, storm_of(at))
            if not args.json:
                print(f"day {day}: {json.dumps(results[f'day {day}'])}", flush=True)

    fill = write_bulk if args.bulk else write_day_by_day
    pruning = fill(store, Traffic(macs, site_of, digests, first, args.days), args.retention,
                   checkpoint)  # fmt: skip
    store.close()
    if server:
        server.stop()
    report = {
        "backend": args.backend,
        "phones": args.phones,
        "days": args.days,
        "sites": args.sites,
        "retention": args.retention,
        "mode": "bulk" if args.bulk else "day by day",
        "requests per phone per day": 12,
        "build and traffic s": time.perf_counter() - began,
        "pruning s": pruning,
        "load": os.getloadavg(),
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.backend}: {args.phones:,} phones, {args.days} days, retention {args.retention}")
    print(f"load {report['load']}, built in {report['build and traffic s']:.0f} s, "
          f"pruning {pruning:.1f} s")  # fmt: skip
    keys = list(results["empty"])
    print(f"{'':>8} " + " ".join(f"{k:>14}" for k in keys))
    for name, row in results.items():
        print(f"{name:>8} " + " ".join(f"{row[k]:>14,.3f}" if isinstance(row[k], float)
                                       else f"{row[k]:>14,}" for k in keys))  # fmt: skip


if __name__ == "__main__":
    main()
