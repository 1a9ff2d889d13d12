"""What an emulated phone's requests say about it, on a real socket: the User-Agent real phones
send by default (no MAC), the updater's Type for the boot log, the MAC only when tagged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.signing import TrustedKeys
from fleetkey.emulate.clock import VirtualClock
from fleetkey.emulate.fleet import Fleet

MAC = "0004f2000001"
AGENT = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477"
MARK = " Emulated/fleetkey"  # every emulated request says it is one


async def boot_once(
    config: PhoneConfig, connections: list[int] | None = None, master: str | None = None
) -> list[tuple[str, str, str]]:
    """One phone's first boot against a server that answers 404 to every GET: (method, path,
    User-Agent) of each request, in order; ``connections`` gets the requests each connection
    carried."""
    seen: list[tuple[str, str, str]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connections is not None:
            connections.append(0)
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ")
            headers = dict(line.split(": ", 1) for line in lines[1:] if line)
            await reader.readexactly(int(headers.get("Content-Length", "0")))
            seen.append((method, path, headers["User-Agent"]))
            if connections is not None:
                connections[-1] += 1
            status = "201 Created" if method == "PUT" else "404 Not Found"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = VirtualClock(datetime(2027, 1, 1, tzinfo=UTC))
    fleet = Fleet(
        [config], TrustedKeys(), clock, host="127.0.0.1", port=port, sip_port=None, master=master
    )
    await fleet.run(30, until_booted=True)
    server.close()
    return seen


UPDATER = 3  # <mac>.cfg, 000000000000.cfg (both 404 here), the boot log


def test_by_default_no_request_names_the_phone_in_its_user_agent() -> None:
    seen = asyncio.run(boot_once(PhoneConfig(MAC)))
    assert [(m, p) for m, p, _ in seen[:UPDATER]] == [
        ("GET", f"/{MAC}.cfg"),
        ("GET", "/000000000000.cfg"),
        ("PUT", f"/{MAC}-boot.log"),
    ]
    assert {agent for _, _, agent in seen[:UPDATER]} == {f"{AGENT} Type/Updater{MARK}"}
    assert {agent for _, _, agent in seen[UPDATER:]} == {f"{AGENT} Type/Application{MARK}"}
    assert any(path == "/000000000000-license.cfg" for _, path, _ in seen)


def test_a_tagged_phone_says_its_mac_at_every_stage() -> None:
    seen = asyncio.run(boot_once(PhoneConfig(MAC, tag_serial=True)))
    assert seen[0][2] == f"{AGENT} (SN:{MAC}) Type/Updater{MARK}"
    assert {agent for _, _, agent in seen[UPDATER:]} == {
        f"{AGENT} (SN:{MAC}) Type/Application{MARK}"
    }


def test_each_model_says_its_family_model_and_firmware() -> None:
    seen = asyncio.run(boot_once(PhoneConfig(MAC, model="SPIP_670", firmware="4.0.15.1047")))
    soundpoint = "FileTransport PolycomSoundPointIP-SPIP_670-UA/4.0.15.1047"
    assert seen[0][2] == soundpoint + MARK  # a SoundPoint's updater says no Type/ (domain.md S14)
    assert seen[-1][2] == f"{soundpoint} Type/Application{MARK}"


def test_a_boot_keeps_one_connection_alive_for_all_its_requests() -> None:
    """httptools says keep-alive only while it parses: asked afterwards it always said no, and
    every request of every emulated boot opened a connection of its own."""
    connections: list[int] = []
    seen = asyncio.run(boot_once(PhoneConfig(MAC), connections))
    assert connections == [len(seen)]


def test_a_missing_master_named_in_the_server_url_falls_back_as_a_phone_does() -> None:
    """domain.md §4: the named master, else <mac>.cfg, else 000000000000.cfg (it asked the
    named one only, and booted without a master when it was missing)."""
    seen = asyncio.run(boot_once(PhoneConfig(MAC), master="lab.cfg"))
    assert [(m, p) for m, p, _ in seen[:4]] == [
        ("GET", "/lab.cfg"),
        ("GET", f"/{MAC}.cfg"),
        ("GET", "/000000000000.cfg"),
        ("PUT", f"/{MAC}-boot.log"),
    ]
