"""bench/ui.py's bulk writer of fetch records: what it stores is what the writer would have.

The benchmark builds 10 million records without the writer's per-batch upserts: raw rows in
time order (``COPY`` on PostgreSQL), the per-phone state folded as it goes and written once.
The pages it times are only worth timing if that store is one the server could have written:
the state agrees with the raw records (``db check``'s comparison) and the records read back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from fleetkey.store import fetches, statecheck
from fleetkey.store.phonestate import SERVED
from fleetkey.store.schema import FetchRow, PhoneFileRow
from fleetkey.store.store import Store

from tests.helpers import bench_module
from tests.pg import PostgresServer

BENCH = Path(__file__).resolve().parents[3] / "bench" / "ui.py"
DIGESTS = ["a" * 64, "b" * 64, None]  # the third site has no posted key


def test_the_bulk_records_agree_with_the_per_phone_state(store: Store) -> None:
    module = bench_module("ui")
    module.CHUNK = 700  # several chunks, the last one short
    module.write_records(store, DIGESTS, 90, 2_500)
    with store.engine.connect() as connection:
        result = statecheck.check(connection)
    assert result.differences == []
    # each phone: its newest record, its license request and, at the two sites with a key,
    # the version it was served
    assert (result.phones, result.entries) == (90, 90 + 90 + 60)
    with store.transaction() as session:
        records = session.scalar(select(func.count()).select_from(FetchRow))
        served = dict(
            session.execute(
                select(PhoneFileRow.digest, func.count())
                .where(PhoneFileRow.kind == SERVED)
                .group_by(PhoneFileRow.digest)
            ).all()
        )
        newest = fetches.newest(session, fetches.FetchFilter(mac="0004f2000004"), 1)[0][0]
    assert records == 2_500
    assert served == {"a" * 64: 30, "b" * 64: 30}  # phone n serves DIGESTS[n % 3]
    assert newest.path in ("/000000000000-license.cfg", "/0004f2000004.cfg")
    assert newest.digest in ("b" * 64, None)


@pytest.mark.postgres
def test_a_kept_server_starts_again_on_its_data_and_leaves_it_in_place(reachable: Path) -> None:
    """bench/ui.py --pgdata: the store built once is there for the next run."""
    first = PostgresServer(kept=reachable / "pg").start()
    try:
        url = first.database("bench_ui")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (n int)")
            connection.execute("INSERT INTO kept VALUES (21)")
    finally:
        first.stop()
    assert (reachable / "pg" / "data" / "PG_VERSION").exists()
    again = PostgresServer(kept=reachable / "pg").start()
    try:
        with psycopg.connect(again.database("bench_ui")) as connection:
            assert connection.execute("SELECT n FROM kept").fetchall() == [(21,)]
    finally:
        again.stop()
    assert (reachable / "pg" / "data" / "PG_VERSION").exists()


@pytest.mark.postgres
@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only under root")
def test_a_kept_folder_the_servers_user_cannot_reach_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the postgres user that runs PostgreSQL cannot reach"):
        PostgresServer(kept=tmp_path / "pg").start()  # under pytest's folder, the owner's alone
    assert not (tmp_path / "pg" / "data").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--pgdata", "x"], "--pgdata keeps --postgres's server for the store of --data"),
        (["--postgres", "--pgdata", "x"], "--pgdata keeps"),
        (["--postgres", "--db", "sqlite:///x"], "--db names the database"),
    ],
)
def test_the_benchs_store_options_refuse_what_does_not_go_together(
    tmp_path: Path, args: list[str], said: str
) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, check=False,
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert said in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing built


def test_a_folder_reused_with_another_store_is_refused(reachable: Path) -> None:
    """A data folder measured with another store than the one it was built with would time
    empty pages: refused by name, before any page (built on SQLite, asked on PostgreSQL; a
    token without its data directory)."""
    bench = [sys.executable, str(BENCH), "--data", str(reachable), "--repeat", "1"]
    small = ["--phones", "6", "--fetches", "60"]
    built = subprocess.run(
        [*bench, *small], capture_output=True, text=True, check=False, timeout=600
    )
    assert built.returncode == 0, built.stderr
    assert "sqlite: 10 phones, 60 fetch records (built" in built.stdout  # 4 added after
    other = subprocess.run([*bench, "--postgres"], capture_output=True, text=True, check=False,
                           timeout=600)  # fmt: skip
    assert other.returncode == 1
    assert "this store has no phones" in other.stderr
    shutil.rmtree(reachable / "data")
    gone = subprocess.run(bench, capture_output=True, text=True, check=False, timeout=600)
    assert gone.returncode == 1
    assert "has a token but no data directory" in gone.stderr
