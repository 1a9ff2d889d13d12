"""bench/ftp.py --before REV runs the older fleetkey on a data directory its own code made:
a commit whose store schema differs (3dc7be0: migrations up to 0018, before the fetch table's
partitions) used to be started on the newer store and did not start at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import bench_module

REPO = Path(__file__).resolve().parents[3]
OLDER_SCHEMA = "3dc7be0"  # before migration 0019


def has_commit(rev: str) -> bool:
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{rev}^{{commit}}"],  # noqa: S607
        capture_output=True,
        check=False,
    )
    return found.returncode == 0


@pytest.mark.skipif(
    (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None or not has_commit(OLDER_SCHEMA),
    reason="bench/ftp.py pins servers to core 0 and itself to core 1 (taskset), from git history",
)
def test_before_a_schema_change_each_fleetkey_serves_from_its_own_store(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ftp.py"), "--servers", "fleetkey",
         "--before", OLDER_SCHEMA, "--phones", "10", "--seconds", "1", "--rounds", "1"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("fleetkey", "fleetkey-before"):
        stopped = next(line for line in done.stdout.splitlines() if f"  {name}: stopped:" in line)
        assert "every transfer recorded: yes" in stopped, done.stdout


def test_before_takes_a_checkouts_directory_and_refuses_one_without_fleetkey(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--before DIR (a worktree of the code before) runs that tree's src; a directory that is
    no checkout of fleetkey is refused naming it, before anything is built."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    ftpservers = bench_module("ftpservers")
    base = tmp_path / "base"
    base.mkdir()
    assert ftpservers.before_source(base, str(REPO)) == REPO.resolve() / "src"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match=f"--before {empty}: a directory without src/fleetkey"):
        ftpservers.before_source(base, str(empty))
    assert list(base.iterdir()) == []
    with pytest.raises(SystemExit, match="--before no-such-rev-f20p: "):
        ftpservers.before_source(base, "no-such-rev-f20p")
