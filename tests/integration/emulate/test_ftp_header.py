"""An emulated FTP phone reads an image's header once while the image stays the same.

Against a real `fleetkey serve --ftp`: the first header read is SIZE, MDTM and a RETR cut
after the first bytes (recorded 499 by the server); the same phone's next boots ask SIZE and
MDTM only and get the same header, with no RETR recorded; once the image changes, the header
is read again and is the new one.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import pytest

from fleetkey.core.device.boot import HEADER_BYTES
from fleetkey.emulate.booting import Flash
from fleetkey.emulate.ftp import FtpLogins
from fleetkey.emulate.transport import Reply

from tests.serving import SHARED_LOGIN, FtpServer, fleet_env, make_fleet, start_ftp, wait_for

IMAGE = "2345-12500-001.sip.ld"  # make_fleet's 20 MiB image
PHONE = "020000000abc"  # in no inventory: the shared login's session is the phone it names


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    data, env = fleet_env(tmp_path_factory, "ftp-header")
    make_fleet(data, env)
    server = start_ftp(data, env, "--ftp-shared-login", ":".join(SHARED_LOGIN))
    yield server
    server.running.stop()


def read_header(server: FtpServer, flash: Flash) -> Reply:
    """One boot's pass of a phone with ``flash``: it names itself, then reads the header."""

    async def boot() -> Reply:
        client = FtpLogins().client("127.0.0.1", server.port, "127.0.30.1", PHONE, flash.headers)
        try:
            await client.fetch(f"/{PHONE}.cfg", user_agent="")
            return await client.fetch(f"/{IMAGE}", user_agent="", first_bytes=HEADER_BYTES)
        finally:
            await client.close()

    return asyncio.run(boot())


def reads_of(server: FtpServer, name: str) -> list[dict[str, object]]:
    every = json.loads(server.running.cli("fetches", "--mac", PHONE, "--json"))
    return [r for r in every if r["path"] == f"/{name}"]


def image_reads(server: FtpServer) -> list[dict[str, object]]:
    return reads_of(server, IMAGE)


def test_an_unchanged_image_is_read_once_and_a_changed_one_again(ftp: FtpServer) -> None:
    flash = Flash()
    image = ftp.data / "provisioning" / IMAGE
    first = read_header(ftp, flash)
    assert (first.status, first.body, first.size) == (
        206,
        image.read_bytes()[:HEADER_BYTES],
        20 * 1024 * 1024,
    )
    wait_for(lambda: len(image_reads(ftp)) == 1)
    assert image_reads(ftp)[0]["status"] == 499  # cut after the header
    for _ in range(3):  # the next boots: SIZE and MDTM answer as before
        again = read_header(ftp, flash)
        assert (again.status, again.body, again.size) == (206, first.body, first.size)
    wait_for(lambda: len(reads_of(ftp, f"{PHONE}.cfg")) == 4)  # those boots are recorded
    assert len(image_reads(ftp)) == 1

    changed = os.urandom(1_000_000)
    image.write_bytes(changed)
    os.utime(image, (image.stat().st_atime, image.stat().st_mtime + 10))
    new = read_header(ftp, flash)
    assert (new.status, new.body, new.size) == (206, changed[:HEADER_BYTES], 1_000_000)
    wait_for(lambda: len(image_reads(ftp)) == 2)


def test_a_phone_without_memory_reads_the_header_every_time(ftp: FtpServer) -> None:
    """Another phone (an empty flash) with the same MAC and login reads it again."""
    before = len(image_reads(ftp))
    read_header(ftp, Flash())
    wait_for(lambda: len(image_reads(ftp)) == before + 1)
