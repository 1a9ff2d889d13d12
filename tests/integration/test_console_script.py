"""The installed ``fleetkey`` console script, run as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import VENDOR_FILE, fleetkey_executable


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "FLEETKEY_DATA": str(tmp_path / "data"),
        "FLEETKEY_KEY_PASSPHRASE": "pass phrase",
    }

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*fleetkey_executable(), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert result.returncode == code, result.stderr
        return result

    return run


def test_main_job_init_issue_inspect(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("init")
    run(
        "issue",
        "site",
        "--serial",
        "100000000001",
        "--features",
        "corporate-directory,conference-management",
        "--expires",
        "2027-12-31",
    )
    site = tmp_path / "data" / "provisioning" / "100000000001" / "000000000000-license.cfg"
    document = json.loads(run("inspect", str(site), "--json").stdout)
    assert document["keys"][0]["signature"] == "valid"
    run("verify", str(site), "--on", "2027-12-31")
    failed = run("verify", str(site), "--on", "2028-01-01", code=1)
    assert failed.stderr.startswith("error: ")
    assert "Traceback" not in failed.stderr


def test_batch_of_three_thousand_uses_worker_processes(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("init")
    csv = tmp_path / "fleet.csv"
    csv.write_text(
        "mac,features,expires\n"
        + "".join(f"0004f2{i:06x},vqmon;corporate-directory,never\n" for i in range(3000))
    )
    out = tmp_path / "out"
    result = run("issue", "batch", "--csv", str(csv), "--out-dir", str(out), "--json")
    assert json.loads(result.stdout)["issued"] == 3000
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3000
    assert not [n for n in names if n.startswith(".")]
    run("verify", str(out / "0004f2000bb7-license.cfg"))


def test_vendor_file_is_unverifiable_but_readable(run) -> None:  # type: ignore[no-untyped-def]
    result = run("inspect", str(VENDOR_FILE), "--json")
    assert json.loads(result.stdout)["keys"][0]["signature"] == "unverifiable"


def test_python_dash_m_works(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fleetkey", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "version" in result.stdout
