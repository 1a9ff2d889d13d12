"""An emulated FTP phone refused at connect (``421 Too many connections``) is told apart from
a refused file: the refusal is the session's, counted as a refused connection, and the phone
tries again after the delay the server names, as a real phone does; against a real
`fleetkey serve --ftp` whose connections are all taken."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetkey.emulate.ftp import FtpLogins
from fleetkey.emulate.transport import Reply
from fleetkey.emulate.words import REFUSED_SESSION

from tests.serving import (
    MAC,
    SHARED_LOGIN,
    SITE,
    Control,
    FtpServer,
    fleet_env,
    fleetkey_command,
    make_fleet,
    start_ftp,
    wait_for,
)

REFUSED = "421 Too many connections; retry in 5 seconds."


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    data, env = fleet_env(tmp_path_factory, "ftp-admission")
    make_fleet(data, env)
    server = start_ftp(
        data, env, "--ftp-shared-login", ":".join(SHARED_LOGIN), "--ftp-max-connections", "2"
    )
    yield server
    server.running.stop()


def refused_connections(server: FtpServer) -> int:
    text = httpx.get(f"{server.running.url}/metrics", timeout=10).text
    found = re.search(r"^fleetkey_ftp_refused_connections(?:_total)? (\d+)", text, re.M)
    assert found is not None, text
    return int(found.group(1))


def test_a_421_at_connect_is_the_sessions_refusal_with_its_delay(ftp: FtpServer) -> None:
    held = [Control(ftp.port), Control(ftp.port)]  # every connection taken

    async def fetch() -> Reply:
        client = FtpLogins().client("127.0.0.1", ftp.port, "127.0.31.1", MAC, None)
        try:
            return await client.fetch(f"/{MAC}.cfg", user_agent="")
        finally:
            await client.close()

    try:
        reply = asyncio.run(fetch())
    finally:
        for control in held:
            control.close()
    assert (reply.status, reply.admission, reply.said) == (503, True, REFUSED)
    assert reply.headers == {"retry-after": "5"}


def test_a_file_refused_busy_is_not_an_admission(ftp: FtpServer) -> None:
    async def fetch() -> Reply:
        client = FtpLogins().client("127.0.0.1", ftp.port, "127.0.31.2", MAC, None)
        try:
            return await client.fetch("/../x.cfg", user_agent="")
        finally:
            await client.close()

    reply = asyncio.run(fetch())
    assert (reply.status, reply.admission) == (403, False)


def test_the_emulator_counts_refused_connections_and_boots_after_its_retry(
    ftp: FtpServer, tmp_path: Path
) -> None:
    (tmp_path / "macs.txt").write_text(f"{MAC}\n")
    before = refused_connections(ftp)
    held = [Control(ftp.port), Control(ftp.port)]
    try:
        emulate = subprocess.Popen(
            [*fleetkey_command(), "emulate", "--server", f"ftp://127.0.0.1:{ftp.port}/{SITE}",
             "--phones", "1", "--macs", str(tmp_path / "macs.txt"), "--sip-port", "0",
             "--duration", "120", "--until-booted", "--json"],
            env=ftp.running.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(lambda: refused_connections(ftp) > before, timeout=60)
    finally:
        for control in held:
            control.close()
    out, err = emulate.communicate(timeout=300)
    assert emulate.returncode == 0, err
    summary = json.loads(out)
    assert (summary["booted"], summary["phones_with_errors"]) == (1, 0), out
    assert summary["answers"][REFUSED_SESSION] >= 1
    assert not [answer for answer in summary["answers"] if "421/450" in answer]  # no file busy
