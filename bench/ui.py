"""Server time of each dashboard page on a large store (issue 21): target p95 <= 200 ms a page,
<= 100 ms for the phone search.

    .venv/bin/python bench/ui.py [--phones 100000] [--fetches 10000000] [--postgres]
                                 [--repeat 20] [--json] [--data DIR] [--db URL] [--pgdata DIR]

Builds a data directory with three sites, the phones spread over them (`fleetkey phones
import`), a posted site license each, a rollout planned, alerts evaluated, ``--fetches``
fetch records over the last 30 days (half of them of the posted site license, in bulk: see
``write_records``), and then 4 phones more, which have not fetched their license yet. The
store is SQLite in the data directory, or with ``--postgres`` a throwaway PostgreSQL started
as the tests start it. With ``--data DIR`` the store is built once and measured again by the
same command (upgraded, not rebuilt): SQLite's is in DIR; with ``--postgres`` the server's
own data directory is kept too (``--pgdata``, by default DIR/postgres), the server started
on it for the run and shut down after. Each page is then asked ``--repeat`` times in process
through httpx's ASGI transport, signed in as a browser is: the time is the server's (routing,
store, rendering), not the network's. Prints p50 and p95 per page, and the machine's load,
which matters on shared cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetkey.store.store import Store

PASSPHRASE = "bench"  # noqa: S105  # a throwaway data directory's passphrase
SITES = ("100000000001", "100000000002", "100000000003")
NEW_PHONES = 4  # imported after the records: at risk until they boot
CHUNK = 200_000
MICROS_A_DAY = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PAGES = {
    "overview": "/ui/",
    "overview (live part)": "/ui/?live=1",
    "sites": "/ui/sites",
    "phones": "/ui/phones",
    "phones: search": "/ui/phones?q=0004f2012",
    "phones: at risk": "/ui/phones?current=no",
    "phones: fetched": "/ui/phones?current=yes",
    "phones: deep page of a site": "/ui/phones?site=100000000002&after=0004f2010000",
    "phone": "/ui/phones/0004f2000003",
    "licenses": "/ui/licenses",
    "rollouts": "/ui/rollouts",
    "rollout": "/ui/rollouts/1",
    "alerts": "/ui/alerts",
    "audit": "/ui/audit",
}


def fleetkey(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "fleetkey", *args], env=env, check=False, capture_output=True,
        text=True,
    )  # fmt: skip
    if done.returncode:
        sys.exit(f"error: fleetkey {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def build(data: Path, env: dict[str, str], phones: int, records: int) -> str:
    from fleetkey.core.license import LicenseType
    from fleetkey.store import registry
    from fleetkey.store.store import Store

    token: str = json.loads(fleetkey(env, "init", "--json"))["api_token"]
    today = datetime.now(UTC).date()
    for serial in SITES:
        fleetkey(env, "sites", "add", serial, "--name", f"site {serial[-1]}", "--tz", "UTC",
                 "--window", "00:00-23:59")  # fmt: skip
    csv = data.parent / "phones.csv"
    rows = (f"0004f2{i:06x},{SITES[i % 3]},VVX_{500 + i % 3},5.9.{i % 4}\n" for i in range(phones))
    csv.write_text("mac,site,model,firmware\n" + "".join(rows))
    fleetkey(env, "phones", "import", str(csv))
    for days, serial in zip((20, 45, 200), SITES, strict=True):
        fleetkey(env, "issue", "site", "--serial", serial, "--features", "corporate-directory",
                 "--expires", str(today + timedelta(days=days)))  # fmt: skip
    fleetkey(env, "issue", "site", "--serial", SITES[0], "--features", "corporate-directory",
             "--expires", str(today + timedelta(days=400)))  # fmt: skip
    fleetkey(env, "rollout", "plan", "--license", "4", "--capacity", "200",
             "--boot-requests", "6")  # fmt: skip
    fleetkey(env, "alerts")
    store = Store(env.get("FLEETKEY_DB") or f"sqlite:///{data / 'fleetkey.db'}")
    with store.transaction() as session:
        posted = [registry.posted(session, LicenseType.SITE, serial) for serial in SITES]
    write_records(store, [p.digest if p else None for p in posted], phones, records)
    store.close()
    add_new_phones(data, env, phones)
    return token


def add_new_phones(data: Path, env: dict[str, str], phones: int) -> None:
    """``NEW_PHONES`` phones imported after the records, one a site and MACs after the fleet's:
    phones just added, which have not fetched their site's license yet, so the at-risk page
    lists a few phones (with 10 million records every other phone fetched its key)."""
    csv = data.parent / "new-phones.csv"
    rows = (f"0004f2{phones + i:06x},{SITES[i % 3]},VVX_501,5.9.0\n" for i in range(NEW_PHONES))
    csv.write_text("mac,site,model,firmware\n" + "".join(rows))
    fleetkey(env, "phones", "import", str(csv))


def database_cpu_ms(url: str | None) -> float:
    """CPU milliseconds the PostgreSQL backends of ``url``'s database have run (0 on SQLite,
    whose work is the process's own): a server on this machine, read from /proc (each
    backend's title is ``postgres: USER DATABASE ADDRESS …``; its schedstat counts
    nanoseconds). Autovacuum workers are left out: their work is not the page's."""
    if url is None:
        return 0.0
    database = f" {url.rsplit('/', 1)[1].split('?', 1)[0]} "
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not title.startswith("postgres: ") or database not in title or "autovacuum" in title:
                continue
            total += int((entry / "schedstat").read_text().split()[0])
        except OSError:  # ended since listed
            continue
    return total / 1e6


def write_records(store: Store, digests: list[str | None], phones: int, records: int) -> None:
    """``records`` fetch records over the last 30 days, half of them of the posted site license
    of the phone's site, written in bulk: in time order, chunk by chunk (each chunk a slice of
    the 30 days, sorted by (MAC, time) as the writer sorts a batch), by ``COPY`` on PostgreSQL
    and one executemany a chunk on SQLite, without the writer's per-batch upserts of the
    per-phone state: the newest rows are folded as the chunks go (``phonestate.fold``, the
    writer's own) and written once at the end (``phonestate.write``). Then, on PostgreSQL,
    ``VACUUM ANALYZE``: what autovacuum does on its own within a minute or two of a bulk load
    (migration 0018's settings), done at once so the pages are timed as a server sees them."""
    from fleetkey.store import phonestate, texts
    from fleetkey.store.schema import epoch_micros

    engine = store.engine
    sqlite = engine.dialect.name == "sqlite"
    columns = [
        {"path": "path_id", "user_agent": "agent_id"}.get(c, c) for c in phonestate.ROW_COLUMNS
    ]
    path_at, agent_at = (
        phonestate.ROW_COLUMNS.index("path"),
        phonestate.ROW_COLUMNS.index("user_agent"),
    )
    served_path = "/000000000000-license.cfg"
    paths = [served_path, *(f"/0004f2{n:06x}.cfg" for n in range(phones))]
    ids = texts.texts_of(engine).ids(engine, paths)
    newest = phonestate.Newest({}, {})
    pick = random.Random(21)
    now = datetime.now(UTC)
    start = epoch_micros(now - timedelta(days=30))
    span = epoch_micros(now) - start
    chunks = max(1, -(-records // CHUNK))
    written = 0
    for chunk in range(chunks):
        count = min(CHUNK, records - written)
        low, high = start + span * chunk // chunks, start + span * (chunk + 1) // chunks
        rows = []
        for _ in range(count):
            number = pick.randrange(phones)
            served = pick.random() < 0.5
            micros = pick.randrange(low, high)
            at: object = micros if sqlite else EPOCH + timedelta(microseconds=micros)
            rows.append(
                (f"0004f2{number:06x}", at, served_path if served else paths[number + 1],
                 "http", "GET", 200, 400, digests[number % 3] if served else None, None, None,
                 1.0, "name", micros // MICROS_A_DAY)
            )  # fmt: skip
        rows.sort(key=lambda r: (r[0], r[1]))
        phonestate.fold(rows, newest)  # a later chunk is a later slice of time: newer
        stored = [
            (*r[:path_at], ids[r[path_at]], *r[path_at + 1 : agent_at], None, *r[agent_at + 1 :])
            for r in rows
        ]
        with engine.begin() as connection:
            if sqlite:
                connection.exec_driver_sql("PRAGMA cache_size=-262144")
                marks = ", ".join("?" for _ in columns)
                insert = f"INSERT INTO fetches ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608  # constant columns, values bound
                connection.exec_driver_sql(insert, stored)
            else:
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                with cursor.copy(f"COPY fetches ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in stored:
                        copy.write_row(row)
        written += count
        print(f"\r{written:,} fetch records", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    with engine.begin() as connection:
        phonestate.write(connection, newest)
    if not sqlite:
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE"
            )


def p95(values: list[float]) -> float:
    """The 95th percentile by nearest rank (of 20 values the 19th, of 10 the 10th)."""
    return sorted(values)[math.ceil(0.95 * len(values)) - 1]


def store_sizes(store: Store, folder: Path) -> tuple[int, int]:
    """The phones and fetch records of the store, which must have phones: a data directory
    reused with another store than it was built with (SQLite's with ``--postgres``, a server
    whose ``--pgdata`` is gone) would time empty pages."""
    from sqlalchemy import func, select

    from fleetkey.store.schema import FetchRow, PhoneRow

    with store.transaction() as session:
        phones = int(session.scalar(select(func.count()).select_from(PhoneRow)) or 0)
        records = int(session.scalar(select(func.count()).select_from(FetchRow)) or 0)
    if not phones:
        sys.exit(
            f"error: {folder}: this store has no phones (was the folder built with another?): "
            "give the --postgres/--pgdata/--db it was built with, or a new --data"
        )
    return phones, records


async def measure(
    app: object, token: str, repeat: int, database: str | None = None
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Each page's wall-clock and CPU milliseconds (the process's CPU, every thread: on shared
    cores the wall clock also counts waiting for a core, CPU time does not), and on
    PostgreSQL the database's CPU milliseconds for it (``database_cpu_ms``: the server does
    the queries' work, which the process's CPU leaves out)."""
    import httpx  # after main() took bench/ off the path (bench/http.py)

    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://fleetkey") as client:
        form = await client.get("/ui/login")
        csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed = await client.post("/ui/login", data={"token": token, "csrf": csrf})
        assert signed.status_code == 303
        times: dict[str, list[float]] = {name: [] for name in PAGES}
        cpu: dict[str, list[float]] = {name: [] for name in PAGES}
        db_cpu: dict[str, list[float]] = {name: [] for name in PAGES}
        for _ in range(repeat):
            for name, path in PAGES.items():
                db_used = database_cpu_ms(database)
                started, used = time.perf_counter(), time.process_time()
                answer = await client.get(path)
                times[name].append((time.perf_counter() - started) * 1000)
                cpu[name].append((time.process_time() - used) * 1000)
                db_cpu[name].append(database_cpu_ms(database) - db_used)
                assert answer.status_code == 200, (path, answer.status_code)
        return times, cpu, db_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=100_000)
    parser.add_argument("--fetches", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--data",
        type=Path,
        help="build the data directory (and the SQLite store) in this folder, or reuse the one "
        "built there: to compare versions of the pages on the same data",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="the store: a database of your own (reused with --data), not SQLite in the data "
        "directory",
    )
    parser.add_argument(
        "--pgdata",
        type=Path,
        help="with --postgres: the server's data directory, made the first time and kept, so "
        "that the next run with the same --data measures the same store (default: DIR/postgres "
        "of --data)",
    )
    args = parser.parse_args()
    if args.db is not None and args.postgres:
        parser.error("--db names the database; --postgres starts a throwaway one: not both")
    if args.pgdata is not None and not (args.postgres and args.data is not None):
        parser.error("--pgdata keeps --postgres's server for the store of --data: give all three")
    if args.postgres and args.data is not None and args.pgdata is None:
        args.pgdata = args.data / "postgres"
    # bench/http.py would stand in for the standard library's http (httpx imports it)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fleetkey.api.app import ApiContext, create_app
    from fleetkey.authority.datadir import DataDir
    from fleetkey.clock import SystemClock
    from fleetkey.store.store import Store
    from fleetkey.ui.app import UiContext, install

    folder = args.data or Path(tempfile.mkdtemp(prefix="fleetkey-bench-ui-"))
    data = folder / "data"
    reuse = (folder / "token").exists()
    env = {**os.environ, "FLEETKEY_DATA": str(data), "FLEETKEY_KEY_PASSPHRASE": PASSPHRASE}
    server = None
    if args.postgres:
        from tests.pg import PostgresServer  # the test harness starts the server

        server = PostgresServer(kept=args.pgdata).start()
        env["FLEETKEY_DB"] = (
            server.create_database() if args.pgdata is None else server.database("bench_ui")
        )
    elif args.db is not None:
        env["FLEETKEY_DB"] = args.db
    else:
        env.pop("FLEETKEY_DB", None)
    try:
        started = time.perf_counter()
        if reuse:
            token = (folder / "token").read_text()
            if not data.is_dir():
                sys.exit(f"error: {folder} has a token but no data directory: remove it to build")
            fleetkey(env, "db", "upgrade")
        else:
            token = build(data, env, args.phones, args.fetches)
            (folder / "token").write_text(token)
        built_s = time.perf_counter() - started
        store = Store(env.get("FLEETKEY_DB") or f"sqlite:///{data / 'fleetkey.db'}")
        args.phones, args.fetches = store_sizes(store, folder)
        app = create_app(ApiContext(DataDir(data), store, SystemClock(), None, dict, bytes))
        install(app, UiContext(DataDir(data), store, SystemClock()))
        times, cpu, db_cpu = asyncio.run(measure(app, token, args.repeat, env.get("FLEETKEY_DB")))
        store.close()
    finally:
        if server is not None:
            server.stop()
    load = os.getloadavg()
    result = {
        "store": "postgresql" if "FLEETKEY_DB" in env else "sqlite",
        "phones": args.phones,
        "fetches": args.fetches,
        "built_s": round(built_s, 1),
        "reused": reuse,
        "load": [round(x, 2) for x in load],
        "pages_ms": {
            name: {
                "p50": round(statistics.median(ms), 1),
                "p95": round(p95(ms), 1),
                "cpu_p50": round(statistics.median(cpu[name]), 1),
                "cpu_p95": round(p95(cpu[name]), 1),
                "db_cpu_p50": round(statistics.median(db_cpu[name]), 1),
                "db_cpu_p95": round(p95(db_cpu[name]), 1),
            }
            for name, ms in times.items()
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    loads = " ".join(f"{x:.2f}" for x in load)
    how = "reused, upgraded" if reuse else "built"
    print(f"{result['store']}: {args.phones:,} phones, {args.fetches:,} fetch records "
          f"({how} in {built_s:.0f} s); load {loads}")  # fmt: skip
    for name, figures in result["pages_ms"].items():  # type: ignore[union-attr]
        wall = f"p50 {figures['p50']:8.1f} ms   p95 {figures['p95']:8.1f} ms"
        cpu = f"cpu p50 {figures['cpu_p50']:8.1f} ms   p95 {figures['cpu_p95']:8.1f} ms"
        db = f"   db cpu p50 {figures['db_cpu_p50']:7.1f}   p95 {figures['db_cpu_p95']:7.1f}"
        print(f"  {name:32} {wall}   {cpu}{db if result['store'] == 'postgresql' else ''}")


if __name__ == "__main__":
    main()
