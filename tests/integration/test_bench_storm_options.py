"""bench/storm.py's options: each bad one refused by name with exit 2 before anything is built
(no temporary directory, no fleet, no server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "storm.py"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--boots", "0"], "--boots must be at least 1"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--history-boots", "0"], "--history-boots must be at least 1"),
        (["--first-boots", "-1"], "--first-boots must be 0 or more"),
        (["--phones", "10", "--concurrency", "256"], "--phones must be at least --concurrency"),
        (["--workers", "1"], "--workers must be at least 2"),
        (["--before", "{tmp}/nowhere"], "no src/fleetkey there"),
        (["--before", "{tree}/fleetkey"], "a tree's name takes a server's own"),
    ],
)
def test_a_bad_option_is_a_usage_error_that_builds_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    tree = tmp_path / "trees"
    (tree / "fleetkey" / "src" / "fleetkey").mkdir(parents=True)  # its server: fleetkey-2
    work = tmp_path / "tmp"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, str(BENCH), "--tmp", str(work),
         *(a.format(tmp=tmp_path, tree=tree) for a in args)],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "TMPDIR": str(work)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert list(work.iterdir()) == []
