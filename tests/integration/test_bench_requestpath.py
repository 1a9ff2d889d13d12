"""bench/requestpath.py: bad options refused before anything is built, and a small run measures
every step of the boot with the answers the boot expects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "requestpath.py"


def run_bench(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "tmp"
    work.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(BENCH), "--tmp", str(work), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, "TMPDIR": str(work)},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phones", "99"], "--phones must be from 100 to 16,777,215"),
        (["--phones", "16777216"], "--phones must be from 100 to 16,777,215"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--sites", "0"], "--sites must be from 1 to --phones"),
        (["--phones", "100", "--sites", "101"], "--sites must be from 1 to --phones"),
        (["--phones", "many"], "invalid int value: 'many'"),
    ],
)
def test_a_bad_option_is_a_usage_error_that_builds_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_bench(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_missing_tmp_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--tmp", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"--tmp {tmp_path / 'nowhere'}: no such directory" in done.stderr


@pytest.mark.slow
def test_a_small_run_measures_each_step_of_the_boot_with_its_expected_answers_in_80_columns(
    tmp_path: Path,
) -> None:
    done = run_bench(
        tmp_path, "--phones", "200", "--sites", "3", "--rounds", "2", "--json", timeout=600
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["phones"], result["rounds"]) == (200, 2)
    answered = {(step["method"], step["path"]): step["status"] for step in result["steps"]}
    assert answered == {
        ("PUT", "/{mac}-boot.log"): "204",  # the first pass stored them: replaced now
        ("GET", "/{mac}.cfg"): "404",
        ("GET", "/000000000000.cfg"): "200",
        ("GET", "/2345-12500-001.sip.ld"): "404",
        ("GET", "/{mac}-phone.cfg"): "404",
        ("GET", "/{mac}-web.cfg"): "404",
        ("GET", "/000000000000-license.cfg"): "200",
        ("GET", "/{mac}-license.cfg"): "200/404",  # every tenth phone has a license
        ("GET", "/{mac}-directory.xml"): "404",
        ("GET", "/000000000000-directory.xml"): "200",
        ("PUT", "/{mac}-app.log"): "204",
    }
    for step in result["steps"]:
        assert 0 < step["floor_us"] < step["total_us"], step
        assert 0 < step["service_us"] < step["total_us"], step
        assert step["protocol_us"] == pytest.approx(step["total_us"] - step["service_us"])
    assert len(result["mean"]["rounds_total_us"]) == 2
    assert len(result["mean"]["rounds_interleaved_us"]) == 2
    assert result["mean"]["interleaved_us"] > result["mean"]["floor_us"] > 0
    assert result["mean"]["writer_interleaved_us"] > 0  # it wrote the records meanwhile
    assert result["connection_us"] > 0
    # every phone's two license answers waited for their record's commit, none went without
    licensed = 200 // 10
    # a first boot, then each of two rounds a step-by-step boot and an interleaved one
    assert result["commits_waited"] == 5 * (200 + licensed)
    assert result["sent_without_commit"] == 0
    assert list((tmp_path / "tmp").iterdir()) == []  # the fleet's folder is removed
    table = subprocess.run(  # the same figures as the terminal shows them
        [sys.executable, "-c", "import json, sys; from requestpath import report; "
         "report(json.load(sys.stdin))"],
        input=done.stdout, capture_output=True, text=True, check=True, timeout=60,
        cwd=BENCH.parent,
    )  # fmt: skip
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, lines
    assert any(line.split()[:2] == ["GET", "/000000000000-license.cfg"] for line in lines)
    assert any(line.strip().startswith("a request of the boot, mean") for line in lines)
    assert "not here: the event loop's own work, the kernel's sockets" in table.stdout
    assert "the record writer's thread meanwhile:" in table.stdout
