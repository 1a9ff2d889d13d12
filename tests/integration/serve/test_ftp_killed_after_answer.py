"""A server SIGKILLed the moment an FTP client has its license file and the ``226`` has the
transfer's fetch record in the store: the 226 of a license answer to a known phone waits for
the record's commit (serve/ftp/confirming.py), as an HTTP license answer does
(serve/commits.py), so a rollout never notifies a phone served over FTP again."""

from __future__ import annotations

import ftplib
import io
import json
from pathlib import Path

import httpx
import pytest

from tests.serving import (
    FTP_PHONES,
    MAC,
    FtpServer,
    fleet_env,
    fleetkey_in_process,
    killed_after_answer,
    make_fleet,
    sigkill,
    start_ftp,
)

SHARED = ("PlcmSpIp", "PlcmSpIp")
OWN = ("vvx500-a1b2c3", "s3cret-vvx")  # MAC's provisioning login (FTP_PHONES)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One fleet for the module; each test starts (and kills) its own servers on it."""
    data, env = fleet_env(tmp_path_factory, "ftp-killed")
    make_fleet(data, env, FTP_PHONES)
    return data, env


def start(data: Path, env: dict[str, str]) -> FtpServer:
    return start_ftp(data, env, "--ftp-shared-login", ":".join(SHARED))


def retrieve(port: int, login: tuple[str, str], path: str) -> tuple[str, bytes]:
    """RETR ``path`` logged in as ``login``: the final reply and the file, read to the end."""
    received = io.BytesIO()
    with ftplib.FTP() as client:  # noqa: S321  # the server under test speaks FTP
        client.connect("127.0.0.1", port, timeout=10)
        client.login(*login)
        reply = client.retrbinary(f"RETR {path}", received.write)
    return reply, received.getvalue()


def license_records(env: dict[str, str], path: str) -> list[dict[str, object]]:
    shown = fleetkey_in_process(env, "fetches", "--mac", MAC, "--path", path, "--json")
    found = json.loads(shown.stdout)
    return [r for r in found if r["status"] == 200 and r["protocol"] == "ftp"]


@pytest.mark.parametrize(
    ("login", "path"),
    [(SHARED, f"/{MAC}-license.cfg"), (OWN, "/000000000000-license.cfg")],
    ids=["shared login, phone license", "own login, site license"],
)
def test_a_server_killed_right_after_the_226_of_a_license_has_its_record(
    fleet: tuple[Path, dict[str, str]], login: tuple[str, str], path: str
) -> None:
    data, env = fleet

    def answer(server: FtpServer) -> bytes:
        master, _ = retrieve(server.port, login, "/000000000000.cfg")  # in its own time
        reply, body = retrieve(server.port, login, path)
        assert master.startswith("226")
        assert reply.startswith("226")
        return body

    killed_after_answer(lambda: start(data, env), answer, lambda: license_records(env, path))


def test_every_226_of_twenty_license_transfers_follows_its_commit(
    fleet: tuple[Path, dict[str, str]],
) -> None:
    """Twenty RETRs in one session, then SIGKILL: all twenty recorded, and each waited."""
    data, env = fleet
    path = f"/{MAC}-license.cfg"
    before = len(license_records(env, path))
    server = start(data, env)
    try:
        with ftplib.FTP() as client:  # noqa: S321  # the server under test speaks FTP
            client.connect("127.0.0.1", server.port, timeout=10)
            client.login(*OWN)
            replies = [client.retrbinary(f"RETR {path}", lambda _: None) for _ in range(20)]
            listed = client.nlst()  # the session goes on after the held replies
        metrics = httpx.get(f"{server.running.url}/metrics", timeout=10).text
    finally:
        sigkill(server)
    assert [r[:3] for r in replies] == ["226"] * 20
    assert f"{MAC}-license.cfg" in listed
    assert len(license_records(env, path)) == before + 20
    assert "fleetkey_confirmations_committed_first_total 20.0" in metrics
    assert "fleetkey_confirmations_uncommitted_total 0.0" in metrics
