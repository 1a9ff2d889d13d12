"""A fleet's year of fetch history: the commands and the writer at day 1, 90 and 365.

    .venv/bin/python bench/history.py [--phones 100000] [--days 365] [--sites 20] [--bulk]
        [--retention 90] [--backend sqlite|postgresql] [--writer-records 100000] [--json]
    [--data DIR [--db postgresql://…]] [--no-baseline]

Builds a fresh data directory (`fleetkey init`, sites, `phones import`, a posted site license
per site), then writes DAYS days of traffic the way servers write it (store/fetches.py's
insert_records: the writer's batched insert and its per-phone state upserts, 50,000 records a
batch), 12 requests per phone per day (a boot: master config, phone config, site license,
phone license (404), two more configs; then six config polls, 304), and after each day prunes
what the retention lets go (store/retention.py: roll-up, batched deletes), as `serve` does;
with --bulk, the store that leaves, built much faster (bench/historybulk.py).
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

With --data DIR the store is built in DIR and kept, with how it was built (bench-history.json);
on PostgreSQL the server's data directory is DIR/postgres (started for the run, shut down
cleanly after), or the store is built in the empty database --db names. Run again with the
same --data (and no other option), the kept store is measured again as its build left it (day
DAYS), without rebuilding, next to a fresh store of the same fleet built in the same run (its
baseline; --no-baseline skips it). Options are checked before anything is written
(bench/historyoptions.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

# bench/http.py would stand in for the standard library's http (httpx imports it); the
# repository's root instead, for tests.pg
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent
]

from click.testing import CliRunner  # noqa: E402  # after the path is set

from fleetkey.store import fetches, retention  # noqa: E402  # after the path is set
from fleetkey.store.records import FetchRecord  # noqa: E402  # after the path is set
from fleetkey.store.store import Store  # noqa: E402  # after the path is set

from tests.pg import PostgresServer  # noqa: E402  # the harness starts a throwaway server


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


historybulk = _module("historybulk")
historymeasure = _module("historymeasure")
historyoptions = _module("historyoptions")
invoke, measure, fleet = historymeasure.invoke, historymeasure.measure, historymeasure.fleet
show = historymeasure.show

PASSPHRASE = "bench"  # noqa: S105  # a throwaway data directory's passphrase
# tagged with the phone's MAC (device.prov.tagSerialNo=1, domain.md): a User-Agent per phone,
# the most the store's table of texts (store/texts.py) has to keep
AGENT = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{mac}) Type/Application"
BATCH = 50_000
DAY = timedelta(days=1)


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


def write_bulk(
    store: Store,
    traffic: Traffic,
    keep_days: int,
    after: Checkpoint,
    checkpoints: Collection[int] | None = None,
) -> float:
    """The store write_day_by_day leaves (bench/historybulk.py), measured by ``after`` on the
    days of ``checkpoints`` (None: every kept day) and the last; the seconds spent computing
    the roll-ups and tallies of the days written as such."""
    raw = min(traffic.days, keep_days) if keep_days else traffic.days
    rolled = traffic.days - raw
    if traffic.days > 1 and raw < 2:
        raise SystemExit("--bulk takes the roll-ups of a day from a kept day: retention >= 2")
    wanted = set(range(1, traffic.days + 1)) if checkpoints is None else set(checkpoints)
    wanted = {n for n in wanted if n < traffic.days} | {traffic.days}
    writer = historybulk.BulkWriter(store.engine, traffic.day(0))
    oldest_raw = traffic.first + rolled * DAY
    cutoff = historybulk.day_number(oldest_raw) * fetches.MICROS_A_DAY
    writer.write_day(rolled)
    began = time.perf_counter()
    first = historybulk.summaries(store.engine, oldest_raw.date())  # no day before it
    summing = time.perf_counter() - began
    for n in range(1, raw + 1):
        if n > 1:
            if min(d for d in wanted if d >= n) - n >= historybulk.UNINDEXED_RUN:
                writer.drop_indexes()  # a long run of days until the next measurement
            writer.write_day(rolled + n - 1)
        if n < traffic.days and n in wanted:
            writer.make_indexes()
            writer.write_state()
            writer.settle()
            after(n, oldest_raw + n * DAY - timedelta(hours=1))
        if n == 1 and rolled:  # the records of the day before that ran past midnight
            writer.write_day(rolled - 1, since=cutoff)
    writer.make_indexes()
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
    writer.settle()
    writer.close()
    after(traffic.days, traffic.first + traffic.days * DAY - timedelta(hours=1))
    return summing


KEPT = historyoptions.KEPT  # in a --data directory: how its store was built


def storm(macs: list[str], site_of: dict[str, str], digests: dict[str, str], at: datetime,
          records: int) -> list[FetchRecord]:  # fmt: skip
    """A boot storm's records at ``at``, a microsecond apart."""
    found = day_traffic(macs, site_of, digests, at)[:records]
    return [r._replace(at=at + timedelta(microseconds=n)) for n, r in enumerate(found)]


def remeasure(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Measure the store kept in ``folder`` again, as its build left it, and a fresh store of
    the same fleet (its baseline) in the same run."""
    kept = args.kept
    os.environ.update(FLEETKEY_DATA=str(folder / "data"))
    server = None
    url = kept.get("db") or kept["url"]
    if kept["backend"] == "postgresql" and not kept.get("db"):  # its server kept in the folder
        server = PostgresServer(durable=True, kept=folder / historyoptions.PGDATA).start()
        url = server.admin_url(historyoptions.DATABASE)
    try:
        if kept["backend"] == "postgresql":
            os.environ["FLEETKEY_DB"] = url
        store = Store(url)
        macs, site_of, digests, license_id = fleet(store, kept["phones"], kept["sites"])
        last = datetime.fromisoformat(kept["last"])  # the build's last measurement's moment
        since = datetime.now(UTC)
        found = measure(CliRunner(), store, url, macs[0], license_id,
                        storm(macs, site_of, digests, last, kept["writer records"]),
                        forget=True)  # fmt: skip
        store.close()
    finally:
        if server:
            server.stop()
    report = {**kept, "remeasured at": since.isoformat(), "load": os.getloadavg(), "results": {}}
    if not args.no_baseline:
        fresh = Path(tempfile.mkdtemp(prefix="fleetkey-bench-history-"))
        report["results"]["empty"] = baseline(fresh, kept, args)
    report["results"][f"day {kept['days']} (kept)"] = found
    return report


def baseline(folder: Path, kept: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A fresh store of the kept store's fleet, measured as the build measured its empty one."""
    os.environ.pop("FLEETKEY_DB", None)
    os.environ["FLEETKEY_DATA"] = str(folder / "data")
    server = PostgresServer(durable=True).start() if kept["backend"] == "postgresql" else None
    url = server.create_database() if server else f"sqlite:///{folder / 'data' / 'fleetkey.db'}"
    if server:
        os.environ["FLEETKEY_DB"] = url
    try:
        build(CliRunner(), folder, kept["phones"], kept["sites"])
        store = Store(url)
        macs, site_of, digests, license_id = fleet(store, kept["phones"], kept["sites"])
        first = datetime.fromisoformat(kept["first"])
        found = measure(CliRunner(), store, url, macs[0], license_id,
                        storm(macs, site_of, digests, first, kept["writer records"]))  # fmt: skip
        store.close()
        return dict(found)
    finally:
        if server:
            server.stop()


def main() -> None:
    args = historyoptions.parse(__doc__.splitlines()[0])
    os.environ.update(FLEETKEY_KEY_PASSPHRASE=PASSPHRASE, COLUMNS="80")
    if args.kept is not None:
        show(remeasure(args.data, args), args.json)
        return
    show(run(args), args.json)


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = (args.data or Path(tempfile.mkdtemp(prefix="fleetkey-bench-history-"))).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if args.backend == "sqlite" or args.db:
        return fill(args, folder, args.db or f"sqlite:///{folder / 'data' / 'fleetkey.db'}")
    if args.data:  # the server's data kept in the folder, shut down cleanly after
        server = PostgresServer(durable=True, kept=folder / historyoptions.PGDATA).start()
        url = server.database(historyoptions.DATABASE)
    else:
        server = PostgresServer(durable=True).start()  # a throwaway server, stopped after
        url = server.create_database()
    try:
        return fill(args, folder, url)
    finally:
        server.stop()


def fill(args: argparse.Namespace, folder: Path, url: str) -> dict[str, Any]:
    """Build the fleet in ``url``, write its days, measure at the checkpoints."""
    os.environ["FLEETKEY_DATA"] = str(folder / "data")
    if args.backend == "postgresql":
        os.environ["FLEETKEY_DB"] = url
    runner = CliRunner()
    began = time.perf_counter()
    build(runner, folder, args.phones, args.sites)
    store = Store(url)
    macs, site_of, digests, license_id = fleet(store, args.phones, args.sites)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - (args.days - 1) * DAY
    moments = {"first": first}

    def storm_of(at: datetime) -> list[FetchRecord]:
        moments["last"] = at
        return storm(macs, site_of, digests, at, args.writer_records)

    # bulk: the empty store's writer storm (day 0) deleted after, as the prune would have
    # removed it long before the first kept day; left, it made every kept day's store hold a
    # day a year older than the rest (on PostgreSQL, fetches --mac then looked on 366 days)
    empty = storm_of(first)
    results = {"empty": measure(runner, store, url, macs[0], license_id, empty, forget=args.bulk)}
    checkpoints = {d for d in (1, 90, 365) if d <= args.days} | {args.days}

    def checkpoint(day: int, at: datetime) -> None:
        if day in checkpoints:
            results[f"day {day}"] = measure(runner, store, url, macs[0], license_id, storm_of(at))
            if not args.json:
                print(f"day {day}: {json.dumps(results[f'day {day}'])}", flush=True)

    traffic = Traffic(macs, site_of, digests, first, args.days)
    if args.bulk:
        pruning = write_bulk(store, traffic, args.retention, checkpoint, checkpoints)
    else:
        pruning = write_day_by_day(store, traffic, args.retention, checkpoint)
    store.close()
    report = {
        "backend": args.backend, "phones": args.phones, "days": args.days, "sites": args.sites,
        "retention": args.retention, "mode": "bulk" if args.bulk else "day by day",
        "requests per phone per day": 12, "writer records": args.writer_records,
        "build and traffic s": time.perf_counter() - began, "pruning s": pruning,
        "load": os.getloadavg(), "results": results,
    }  # fmt: skip
    if args.data:
        kept = {k: v for k, v in report.items() if k != "results"}
        kept.update(url=url, first=first.isoformat(), last=moments["last"].isoformat())
        if args.db:  # a database of the user's own; else a kept server's, on a new port each run
            kept["db"] = args.db
        elif args.backend == "postgresql":
            kept.update(pgdata=historyoptions.PGDATA, database=historyoptions.DATABASE)
        kept["build's results"] = results
        (folder / KEPT).write_text(json.dumps(kept, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
