"""A real `fleetkey serve` on an ephemeral loopback port, with a fleet to serve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE

MAC = "0004f2a1b2c3"  # a VVX 500 at site 100000000001
SP_MAC = "0004a11a1a1a"  # a SoundPoint IP 550 that tags its serial
SITE = "100000000001"


def fleetkey_command() -> list[str]:
    return [sys.executable, "-m", "fleetkey"]


@dataclass
class RunningServer:
    url: str
    port: int
    data: Path
    process: subprocess.Popen[str]
    env: dict[str, str]

    def stop(self) -> str:
        """SIGTERM, wait, return what it printed after starting."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, err
        return out

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [*fleetkey_command(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout


def make_fleet(data: Path, env: dict[str, str], phones_csv: str | None = None) -> None:
    def run(*args: str) -> None:
        subprocess.run(
            [*fleetkey_command(), *args], env=env, check=True, capture_output=True, timeout=60
        )

    run("init")
    run("sites", "add", SITE, "--name", "HQ", "--tz", "Europe/Berlin", "--window", "22:00-05:00")
    csv = data.parent / "phones.csv"
    csv.write_text(
        phones_csv or f"mac,site,model\n{MAC},{SITE},VVX_500\n{SP_MAC},{SITE},SPIP_550\n"
    )
    run("phones", "import", str(csv))
    run(
        "issue",
        "site",
        "--serial",
        SITE,
        "--features",
        "corporate-directory",
        "--expires",
        "2030-12-31",
        "--default-site",  # also the tree's default, for phones the server cannot place
    )
    run("issue", "phone", "--mac", MAC, "--features", "vqmon", "--expires", "never")
    tree = data / "provisioning"
    (tree / "000000000000.cfg").write_text("<APPLICATION APP_FILE_PATH='sip.ld'/>\n")
    (tree / "2345-12500-001.sip.ld").write_bytes(os.urandom(20 * 1024 * 1024))
    (tree / f"{MAC}-directory.xml").write_text("<directory/>\n")


def start_server(data: Path, env: dict[str, str], *args: str) -> RunningServer:
    """`fleetkey serve` with ``args``; the URL is the first listener it announces."""
    process = subprocess.Popen(
        [*fleetkey_command(), "serve", *(args or ("--http", "127.0.0.1:0"))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("fleetkey serving "):
        process.kill()
        raise AssertionError(f"serve did not start: {first!r} {process.communicate()[1]}")
    url = first.split()[2]
    return RunningServer(url, int(url.rsplit(":", 1)[1]), data, process, env)


def fleet_env(tmp_path_factory: pytest.TempPathFactory, name: str) -> tuple[Path, dict[str, str]]:
    data = tmp_path_factory.mktemp(name) / "data"
    env = {**os.environ, "FLEETKEY_DATA": str(data), "FLEETKEY_KEY_PASSPHRASE": PASSPHRASE}
    env.pop("FLEETKEY_DB", None)
    return data, env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "serve")
    make_fleet(data, env)
    running = start_server(data, env)
    yield running
    if running.process.poll() is None:
        running.stop()


def wait_for(check: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``check`` every 0.2 s until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not within the timeout")
        time.sleep(0.2)


def records(server: RunningServer, mac: str) -> list[dict[str, object]]:
    """The server's fetch records for ``mac``, as `fleetkey fetches --json` prints them."""
    found: list[dict[str, object]] = json.loads(server.cli("fetches", "--mac", mac, "--json"))
    return found
