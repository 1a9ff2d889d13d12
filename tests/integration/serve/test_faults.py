"""Faults the server must live through: a full disk, then freed. Serving goes on, nothing
answered goes unrecorded, and it recovers by itself."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.serve.conftest import (
    MAC,
    RunningServer,
    fleet_env,
    make_fleet,
    start_server,
    wait_for,
)

VVX_UA = f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{MAC}) Type/Application"


@pytest.fixture
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 48 MiB file system of its own (tmpfs; the tests run as root, as CI does)."""
    mount = tmp_path_factory.mktemp("small-disk")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], check=True)  # noqa: S607
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # noqa: S607


def fill(disk: Path) -> Path:
    """Write a ballast file until the file system is full; returns it."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as handle:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * size)
    return ballast


def health(server: RunningServer) -> tuple[int, dict[str, object]]:
    reply = httpx.get(f"{server.url}/healthz", timeout=10)
    return reply.status_code, reply.json()


def test_a_full_disk_then_freed_loses_no_record_and_serving_goes_on(
    small_disk: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, env = fleet_env(tmp_path_factory, "full-disk")
    data = small_disk / "data"
    env["FLEETKEY_DATA"] = str(data)
    make_fleet(data, env)
    for image in (data / "provisioning").glob("*.sip.ld"):
        image.unlink()  # room for the records; the test fills the rest
    server = start_server(data, env)
    answered = 0
    try:
        with httpx.Client(base_url=server.url, headers={"user-agent": VVX_UA}) as phone:
            for _ in range(20):
                assert phone.get("/000000000000-license.cfg").status_code == 200
                answered += 1
            wait_for(lambda: health(server)[0] == 200)
            ballast = fill(small_disk)
            statuses = []
            for _ in range(300):  # the disk is full: answers go on, their records are held
                statuses.append(phone.get("/000000000000-license.cfg").status_code)
                statuses.append(phone.get(f"/{MAC}-missing.cfg").status_code)
                answered += 2
            upload = phone.put(f"/{MAC}-app.log", content=b"x" * 100_000)
            answered += 1
            assert set(statuses) == {200, 404}
            assert upload.status_code == 507  # no room to store it, and the phone is told
            wait_for(lambda: health(server)[0] == 503)
            refusing = health(server)[1]["fetch_records"]
            assert isinstance(refusing, dict)
            assert refusing["held"] >= 600  # held in memory: no disk to spill them to
            assert refusing["waiting"] >= 600
            assert "full" in str(refusing["last_error"])
            ballast.unlink()
            freed = time.monotonic()
            wait_for(lambda: health(server)[0] == 200, timeout=10)
            assert time.monotonic() - freed < 5  # recovers by itself, within seconds
            assert phone.get("/000000000000-license.cfg").status_code == 200
            answered += 1
    finally:
        summary = server.stop()
    # every phone request is a record (the /healthz polls are operator requests, not fetches)
    assert f"{answered} fetch records written, 0 not recorded" in summary
    records = json.loads(server.cli("fetches", "--json", "--limit", "100000"))
    assert len(records) == answered
    assert not (data / "fetches-unwritten.jsonl").exists()
    left = [p for p in (data / "uploads").rglob("*") if p.is_file()]
    assert left == []  # the upload that found no room left no partial file behind
