"""bench/history.py's options: each bad one refused by name before anything is written (no
folder, no store, no temporary directory), a usage error with exit 2, or exit 1 with a hint
when a kept store's folder cannot be measured; the same folder measured with options that
agree with its build still works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "history.py"
KEPT = "bench-history.json"
PG_URL = "postgresql://fleetkey@127.0.0.1:5999/bench"
# a store small enough to build in seconds: 4 phones, 2 days
SMALL = ["--phones", "4", "--days", "2", "--sites", "1", "--retention", "2",
         "--writer-records", "10"]  # fmt: skip


def bench(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """bench/history.py run with ``args``, its temporary directories under ``tmp``."""
    tmp.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, check=False,
        cwd=tmp, timeout=600, env={**os.environ, "TMPDIR": str(tmp)},
    )  # fmt: skip


def files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--phones", "0"], "--phones 0: at least 1"),
        (["--days", "-3"], "--days -3: at least 1"),
        (["--sites", "0"], "--sites 0: at least 1"),
        (["--writer-records", "0"], "--writer-records 0: at least 1"),
        (["--phones", "many"], "argument --phones: invalid int value: 'many'"),
        (["--retention", "-1"], "--retention -1: 0 (keep every record) or a number of days"),
        (["--bulk", "--retention", "1"], "--bulk takes the roll-ups of a day from a kept day"),
        (["--bulk", "--backend", "mysql"], "argument --backend: invalid choice: 'mysql'"),
        (["--db", PG_URL], "--db names the PostgreSQL store to keep: with --data"),
        (["--db", PG_URL, "--data", "store"], "--db names the PostgreSQL store to keep"),
        (
            ["--db", "sqlite:///x.db", "--data", "store", "--backend", "postgresql"],
            "--db: not a PostgreSQL URL: 'sqlite:///x.db'",
        ),
        (["--db", "127.0.0.1:5432", "--backend", "postgresql"], "--db: not a PostgreSQL URL"),
        (
            ["--no-baseline"],
            f"--no-baseline: only measuring a kept store again (--data DIR with {KEPT})",
        ),
        (["--no-baseline", "--data", "store"], "--no-baseline: only measuring a kept store"),
    ],
)
def test_a_bad_option_is_a_usage_error_that_builds_nothing(
    tmp_path: Path, args: list[str], said: str
) -> None:
    done = bench(args, tmp_path / "tmp")
    assert done.returncode == 2, done.stderr
    assert f"history.py: error: {said}" in done.stderr
    assert done.stderr.startswith("usage: history.py")
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == [tmp_path / "tmp"]
    assert list((tmp_path / "tmp").iterdir()) == []  # no store, no temporary directory


def test_a_data_folder_that_is_a_file_or_holds_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("mine\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "fleetkey.db").write_text("not a kept store\n")
    before = files(tmp_path)
    not_a_folder = bench(["--data", str(tmp_path / "a-file")], tmp_path / "tmp")
    assert not_a_folder.returncode == 2
    assert f"error: --data {tmp_path / 'a-file'}: not a folder" in not_a_folder.stderr
    other = bench(["--data", str(tmp_path / "other"), "--bulk"], tmp_path / "tmp")
    assert other.returncode == 2
    assert f"--data {tmp_path / 'other'}: holds files but no {KEPT}" in other.stderr
    assert files(tmp_path) == before
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store built day by day on SQLite and kept in a --data folder."""
    root = tmp_path_factory.mktemp("kept")
    built = bench([*SMALL, "--data", str(root / "store")], root / "tmp")
    assert built.returncode == 0, built.stderr
    return root / "store"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--backend", "postgresql"],
            "--backend postgresql: the store kept in {store} was built "
            "with --backend sqlite: measuring it again takes no other build",
        ),
        (["--bulk", "--backend", "postgresql"], "--backend postgresql: the store kept in"),
        (["--phones", "5"], "--phones 5: the store kept in {store} was built with --phones 4"),
        (
            ["--retention", "90"],
            "--retention 90: the store kept in {store} was built with --retention 2",
        ),
        (["--bulk"], "--bulk: the store kept in {store} was built day by day"),
        (["--db", PG_URL], f"--db: the store kept in {{store}} is not in {PG_URL}"),
        (["--db", "sqlite:///elsewhere.db"], "--db: not a PostgreSQL URL"),
    ],
)
def test_a_kept_store_measured_with_another_build_is_refused_and_left_as_it_was(
    kept: Path, tmp_path: Path, args: list[str], said: str
) -> None:
    before = files(kept)
    done = bench(["--data", str(kept), *args], tmp_path / "tmp")
    assert done.returncode == 2, done.stderr
    assert f"history.py: error: {said.format(store=kept)}" in done.stderr
    assert files(kept) == before
    assert list((tmp_path / "tmp").iterdir()) == []


def broken(kept: Path, to: Path) -> Path:
    shutil.copytree(kept, to)
    return to


def test_a_kept_folder_whose_record_is_unreadable_or_whose_store_is_gone_is_exit_1(
    kept: Path, tmp_path: Path
) -> None:
    garbled = broken(kept, tmp_path / "garbled")
    (garbled / KEPT).write_text("{not json")
    record = json.loads((kept / KEPT).read_text())
    no_phones = broken(kept, tmp_path / "no-phones")
    (no_phones / KEPT).write_text(json.dumps({k: v for k, v in record.items() if k != "phones"}))
    gone = broken(kept, tmp_path / "gone")
    (gone / "data" / "fleetkey.db").unlink()
    server_gone = broken(kept, tmp_path / "server-gone")  # built on a kept PostgreSQL server
    (server_gone / KEPT).write_text(json.dumps({**record, "backend": "postgresql"}))
    before = files(tmp_path)
    for folder, said in (
        (garbled, f"error: {garbled / KEPT}: not the record of a store bench/history.py built"),
        (no_phones, f"error: {no_phones / KEPT}: not the record of a store"),
        (
            gone,
            f"error: {gone}: its sqlite store is gone ({gone / 'data' / 'fleetkey.db'} is missing)",
        ),
        (
            server_gone,
            f"error: {server_gone}: its postgresql store is gone "
            f"({server_gone / 'postgres' / 'data' / 'PG_VERSION'} is missing)",
        ),
    ):
        done = bench(["--data", str(folder), "--no-baseline"], tmp_path / "tmp")
        assert done.returncode == 1, (folder, done.stderr)
        assert said in done.stderr
        assert "\nhint: give " in done.stderr
        assert "Traceback" not in done.stderr
    assert files(tmp_path) == before
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_kept_store_measured_with_options_that_agree_with_its_build_is_measured(
    kept: Path, tmp_path: Path
) -> None:
    """The refusals above are of the options, not of the folder: the same folder with its own
    build's options (or none) is measured again, as its build left it."""
    done = bench(["--data", str(kept), "--no-baseline", "--json", *SMALL[:2]], tmp_path / "tmp")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert list(report["results"]) == ["day 2 (kept)"]
    assert report["results"]["day 2 (kept)"]["phone_seen"] == 4


@pytest.mark.postgres
def test_a_postgresql_store_built_in_bulk_is_kept_with_its_server_and_measured_by_data_alone(
    reachable: Path,
) -> None:
    """--data on PostgreSQL keeps the server's data in DIR/postgres, shut down after each run;
    --data alone measures the same store again (the one command of the quiet pass)."""
    store = reachable / "store"
    built = bench([*SMALL, "--bulk", "--backend", "postgresql", "--data", str(store), "--json"],
                  reachable / "tmp")  # fmt: skip
    assert built.returncode == 0, built.stderr
    record = json.loads((store / KEPT).read_text())
    assert (record["backend"], record["mode"], record["pgdata"]) == (
        "postgresql",
        "bulk",
        "postgres",
    )
    assert not (store / "postgres" / "data" / "postmaster.pid").exists()  # shut down
    again = bench(["--data", str(store), "--no-baseline", "--json"], reachable / "tmp")
    assert again.returncode == 0, again.stderr
    kept = json.loads(again.stdout)["results"]["day 2 (kept)"]
    last = json.loads(built.stdout)["results"]["day 2"]
    assert (kept["raw records"], kept["phone_seen"]) == (last["raw records"], 4)
    assert not (store / "postgres" / "data" / "postmaster.pid").exists()
