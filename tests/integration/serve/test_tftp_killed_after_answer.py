"""A server SIGKILLed the moment a TFTP client has the last block of a license file has the
transfer's fetch record in the store: that block is sent once the record is committed
(serve/tftp/held.py), as an HTTP license answer (serve/commits.py); a lost last block is still
sent again, and the transfer is recorded once."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest

from tests.serving import MAC, RunningServer, cli, fleet_env, make_fleet, start_server

PATH = f"/{MAC}-license.cfg"  # names the phone: a license answer to a known phone


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data, env = fleet_env(tmp_path_factory, "tftp-killed")
    make_fleet(data, env)
    return data, env


def start(data: Path, env: dict[str, str]) -> tuple[RunningServer, int]:
    server = start_server(data, env, "--http", "127.0.0.1:0", "--tftp", "127.0.0.1:0")
    assert server.process.stdout is not None
    return server, int(server.process.stdout.readline().split()[2].rsplit(":", 1)[1])


def kill(server: RunningServer) -> None:
    server.process.kill()  # SIGKILL: nothing written after this
    server.process.communicate(timeout=30)


def fetch(port: int, options: dict[str, str], *, skip_last_ack: bool = False) -> tuple[bytes, int]:
    """RRQ ``PATH`` in octet mode from a fresh port, ACKing every block (the last one only
    when it comes again, with ``skip_last_ack``): the file and how often its last block came."""
    extra = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())
    blksize = int(options.get("blksize", "512"))
    received, last_seen, peer = b"", 0, None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(b"\0\1" + PATH.encode() + b"\0octet\0" + extra, ("127.0.0.1", port))
        expected = 1
        while True:
            packet, peer = sock.recvfrom(65536)
            opcode, number = struct.unpack("!HH", packet[:4])
            if opcode == 6:  # OACK
                sock.sendto(b"\0\4\0\0", peer)
                continue
            assert opcode == 3, packet
            if number == expected:
                received += packet[4:]
                expected += 1
            if len(packet) - 4 < blksize:  # the last block
                last_seen += 1
                if skip_last_ack and last_seen == 1:
                    continue  # as if it was lost: the server must send it again
                sock.sendto(b"\0\4" + struct.pack("!H", number), peer)
                return received, last_seen
            sock.sendto(b"\0\4" + struct.pack("!H", number), peer)


def tftp_records(env: dict[str, str]) -> list[dict[str, object]]:
    found = json.loads(cli(env, "fetches", "--mac", MAC, "--path", PATH, "--json"))
    return [r for r in found if r["protocol"] == "tftp"]


def test_a_server_killed_right_after_the_last_block_of_a_license_has_its_record(
    fleet: tuple[Path, dict[str, str]],
) -> None:
    data, env = fleet
    before = len(tftp_records(env))
    for n in range(before + 1, before + 3):  # two rounds: start, answer, SIGKILL
        server, port = start(data, env)
        try:
            body, _ = fetch(port, {})
        finally:
            kill(server)
        found = tftp_records(env)
        assert len(found) == n, f"round {n}: {len(found)} records of {n} transfers"
        assert (found[-1]["status"], found[-1]["bytes"]) == (200, len(body))
        assert body.startswith(b"<?xml")


def test_a_held_last_block_that_is_lost_is_sent_again_and_recorded_once(
    fleet: tuple[Path, dict[str, str]],
) -> None:
    """Small blocks (several of them, the window one) and the last block's first copy not
    acknowledged: the server resends it after its timeout; one record, 200, every byte."""
    data, env = fleet
    before = len(tftp_records(env))
    server, port = start(data, env)
    try:
        body, last_seen = fetch(port, {"blksize": "64", "timeout": "1"}, skip_last_ack=True)
        whole, _ = fetch(port, {})
    finally:
        server.process.terminate()
        server.process.communicate(timeout=30)
    assert last_seen == 2
    assert body == whole
    found = tftp_records(env)
    assert len(found) == before + 2
    assert {(r["status"], r["bytes"]) for r in found[before:]} == {(200, len(body))}
