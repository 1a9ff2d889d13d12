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
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleetkey.serve.http.putting import discards

from tests.serving import (
    FTP_PHONES,
    MAC,
    SP_MAC,
    VVX_LOGIN,
    RunningServer,
    fleet_env,
    make_fleet,
    recorded,
    start_server,
)

BOOTS = (b"first boot\n" * 300, b"second boot, longer\n" * 400, b"third\n" * 100)


@dataclass
class Listeners:
    running: RunningServer
    ports: dict[str, int]  # by scheme: tftp, ftp

    @property
    def data(self) -> Path:
        return self.running.data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listeners]:
    data, env = fleet_env(tmp_path_factory, "spares")
    make_fleet(data, env, FTP_PHONES)
    running = start_server(
        data, env, "--tftp", "127.0.0.1:0", "--tftp-uploads", "--ftp", "127.0.0.1:0"
    )
    assert running.process.stdout is not None
    ports = {}
    for _ in range(2):  # after HTTP's, the other listeners' lines: fleetkey serving URL …
        url = running.process.stdout.readline().split()[2]
        ports[url.split(":", 1)[0]] = int(url.rsplit(":", 1)[1])
    yield Listeners(running, ports)
    running.stop()


def _client(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _folder(server: Listeners, mac: str) -> Path:
    return server.data / "uploads" / mac


def _check(server: Listeners, mac: str, name: str) -> None:
    folder = _folder(server, mac)
    assert (folder / name).read_bytes() == BOOTS[-1]  # the last upload, whole
    spare = folder / f".{name}.spare"
    visible = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    assert visible <= {f"{mac}-app.log", f"{mac}-boot.log"}  # the phone's logs, nothing else
    if discards(server.data / "uploads"):
        assert spare.read_bytes() == BOOTS[-2]  # the log it replaced, kept to be written into
        assert os.stat(spare).st_mode & 0o777 == 0o600
    else:
        assert not spare.exists()
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_logs_replaced_over_http_tftp_and_ftp_are_whole_and_recorded(
    server: Listeners, tmp_path: Path
) -> None:
    tftp_port, ftp_port = server.ports["tftp"], server.ports["ftp"]
    http_mac, tftp_mac, ftp_mac = SP_MAC, SP_MAC, MAC  # the first two: two kinds of log
    with httpx.Client(base_url=server.running.url, timeout=30) as http:
        statuses = [http.put(f"/{http_mac}-app.log", content=body).status_code for body in BOOTS]
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
             f"ftp://127.0.0.1:{ftp_port}/{ftp_mac}-boot.log"],
            tmp_path,
        )  # fmt: skip
    _check(server, http_mac, f"{http_mac}-app.log")
    _check(server, tftp_mac, f"{tftp_mac}-boot.log")
    _check(server, ftp_mac, f"{ftp_mac}-boot.log")
    assert recorded(server.running, http_mac, "PUT", f"/{http_mac}-app.log", 204)
    assert recorded(server.running, ftp_mac, "STOR", f"/{ftp_mac}-boot.log", 204)
    # /metrics counts them, whichever protocol wrote them: each log's second upload keeps the
    # first as its spare, its third is written into that spare and keeps the second
    metrics = httpx.get(f"{server.running.url}/metrics").text
    counts = {
        name: int(float(line.split()[-1]))
        for line in metrics.splitlines()
        for name in ("fleetkey_uploads_into_spares_total", "fleetkey_uploads_spared_total")
        if line.startswith(name + " ")
    }
    on = discards(server.data / "uploads")
    assert counts == {
        "fleetkey_uploads_into_spares_total": 3 if on else 0,  # three logs, one each
        "fleetkey_uploads_spared_total": 6 if on else 0,  # two each
    }
