"""A phone's log replaced over HTTP, TFTP and FTP by a real `fleetkey serve`, with real clients
(httpx, tftp-hpa, curl): on a filesystem mounted with ``discard`` the replaced log is kept as the
phone's spare and the next one is written into it (serve/spares.py); elsewhere it is replaced as
it always was. Either way every answer is 201 then 204, recorded, and the log is the last one
whole. Which filesystem the test's directory is on depends on the machine: both outcomes are
asserted, each where it applies."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetkey.serve.http.putting import discards
from tests.serving import (
    FTP_PHONES,
    MAC,
    SP_MAC,
    VVX_LOGIN,
    FtpServer,
    fleet_env,
    make_fleet,
    recorded,
    start_ftp,
)

BOOTS = (b"first boot\n" * 300, b"second boot, longer\n" * 400, b"third\n" * 100)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    data, env = fleet_env(tmp_path_factory, "spares")
    make_fleet(data, env, FTP_PHONES)
    running = start_ftp(data, env, "--tftp", "127.0.0.1:0", "--tftp-uploads")
    yield running
    running.running.stop()


def _tftp_port(server: FtpServer) -> int:
    assert server.running.process.stdout is not None
    line = server.running.process.stdout.readline()  # the third listener: TFTP
    assert line.startswith("fleetkey serving tftp://"), line
    return int(line.split()[2].rsplit(":", 1)[1])


def _client(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _folder(server: FtpServer, mac: str) -> Path:
    return server.data / "uploads" / mac


def _check(server: FtpServer, mac: str, name: str) -> None:
    folder = _folder(server, mac)
    assert (folder / name).read_bytes() == BOOTS[-1]  # the last upload, whole
    spare = folder / f".{name}.spare"
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert visible == [name]
    if discards(server.data / "uploads"):
        assert spare.read_bytes() == BOOTS[-2]  # the log it replaced, kept to be written into
        assert os.stat(spare).st_mode & 0o777 == 0o600
    else:
        assert not spare.exists()
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_logs_replaced_over_http_tftp_and_ftp_are_whole_and_recorded(
    server: FtpServer, tmp_path: Path
) -> None:
    tftp_port = _tftp_port(server)
    http_mac, tftp_mac, ftp_mac = SP_MAC, SP_MAC, MAC  # the first two: two kinds of log
    with httpx.Client(base_url=server.running.url, timeout=30) as http:
        statuses = [
            http.put(f"/{http_mac}-app.log", content=body).status_code for body in BOOTS
        ]
    assert statuses == [201, 204, 204]
    for body in BOOTS:
        (tmp_path / f"{tftp_mac}-boot.log").write_bytes(body)
        _client(
            ["tftp", "127.0.0.1", str(tftp_port), "-m", "binary", "-c", "put",
             f"{tftp_mac}-boot.log"],
            tmp_path,
        )  # fmt: skip
        (tmp_path / "ftp.log").write_bytes(body)
        _client(
            ["curl", "-sS", "--user", ":".join(VVX_LOGIN), "-T", "ftp.log",
             f"ftp://127.0.0.1:{server.port}/{ftp_mac}-boot.log"],
            tmp_path,
        )  # fmt: skip
    _check(server, http_mac, f"{http_mac}-app.log")
    _check(server, tftp_mac, f"{tftp_mac}-boot.log")
    _check(server, ftp_mac, f"{ftp_mac}-boot.log")
    assert recorded(server.running, http_mac, "PUT", f"/{http_mac}-app.log", 204)
    assert recorded(server.running, ftp_mac, "STOR", f"/{ftp_mac}-boot.log", 204)
