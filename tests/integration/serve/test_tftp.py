"""The TFTP server with real clients (tftp-hpa, atftp, curl), raw packets, and a lossy network."""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving import (
    MAC,
    SITE,
    RunningServer,
    fleet_env,
    make_fleet,
    records,
    start_server,
    wait_for,
)

BIG = "firmware/sip-5.9.7.ld"


@pytest.fixture(scope="module")
def tftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "tftp")
    make_fleet(data, env)
    (data / "provisioning" / "firmware").mkdir()
    (data / "provisioning" / BIG).write_bytes(os.urandom(5 * 1024 * 1024 + 77))
    (data / "provisioning" / "notes.txt").write_bytes(b"line one\nline two\r\nend")
    (data / "provisioning" / "long-notes.txt").write_bytes(b"a line\n" * 30_000 + b"\rend")
    running = start_server(
        data, env, "--http", "off", "--tftp", "127.0.0.1:0", "--tftp-uploads",
        "--tftp-max-transfers", "64",
    )  # fmt: skip
    assert running.url.startswith("tftp://")
    yield running
    running.stop()


def client(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


class TestRealClients:
    """tftp-hpa, atftp and curl: Debian packages that scripts/test-deps installs."""

    def test_tftp_hpa_gets_the_phone_license_and_it_is_recorded(
        self, tftp: RunningServer, tmp_path: Path
    ) -> None:
        result = client(
            ["tftp", "127.0.0.1", str(tftp.port), "-m", "binary", "-c", "get",
             f"{MAC}-license.cfg", "got.cfg"],
            tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        body = (tmp_path / "got.cfg").read_bytes()
        assert f"Serial='{MAC}'".encode() in body
        digest = hashlib.sha256(body).hexdigest()
        wait_for(lambda: any(r["digest"] == digest for r in records(tftp, MAC)))
        record = next(r for r in records(tftp, MAC) if r["digest"] == digest)
        assert (record["protocol"], record["method"], record["status"]) == ("tftp", "RRQ", 200)
        assert record["bytes"] == len(body)

    def test_site_prefix_gets_the_site_license(self, tftp: RunningServer, tmp_path: Path) -> None:
        result = client(
            ["tftp", "127.0.0.1", str(tftp.port), "-m", "binary", "-c", "get",
             f"{SITE}/000000000000-license.cfg", "site.cfg"],
            tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"Serial='{SITE}'".encode() in (tmp_path / "site.cfg").read_bytes()

    def test_tftp_hpa_multi_megabyte_byte_exact(self, tftp: RunningServer, tmp_path: Path) -> None:
        result = client(
            ["tftp", "127.0.0.1", str(tftp.port), "-m", "binary", "-c", "get", BIG, "big"],
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "big").read_bytes() == (tftp.data / "provisioning" / BIG).read_bytes()

    def test_atftp_with_blksize_and_windowsize(self, tftp: RunningServer, tmp_path: Path) -> None:
        result = client(
            ["atftp", "--option", "blksize 1428", "--option", "windowsize 8", "-g", "-r", BIG,
             "-l", "big", "127.0.0.1", str(tftp.port)],
            tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "big").read_bytes() == (tftp.data / "provisioning" / BIG).read_bytes()

    def test_block_numbers_roll_over(self, tftp: RunningServer, tmp_path: Path) -> None:
        """blksize 8: 600 kB is 75,000 blocks, past the 16-bit block number."""
        result = client(
            ["atftp", "--option", "blksize 8", "--option", "windowsize 32", "-g", "-r",
             "firmware/roll.bin", "-l", "roll", "127.0.0.1", str(tftp.port)],
            tmp_path,
        )  # fmt: skip
        assert result.returncode != 0  # not there yet: a clean error, not a hang
        source = tftp.data / "provisioning" / "firmware" / "roll.bin"
        source.write_bytes(os.urandom(600_000))
        result = client(
            ["atftp", "--option", "blksize 8", "--option", "windowsize 32", "-g", "-r",
             "firmware/roll.bin", "-l", "roll", "127.0.0.1", str(tftp.port)],
            tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "roll").read_bytes() == source.read_bytes()

    def test_curl_with_blksize(self, tftp: RunningServer, tmp_path: Path) -> None:
        result = client(
            ["curl", "-sS", "--tftp-blksize", "1428", "-o", "big",
             f"tftp://127.0.0.1:{tftp.port}/{BIG}"],
            tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "big").read_bytes() == (tftp.data / "provisioning" / BIG).read_bytes()

    def test_netascii_converts_line_ends(self, tftp: RunningServer, tmp_path: Path) -> None:
        result = client(
            ["tftp", "127.0.0.1", str(tftp.port), "-m", "netascii", "-c", "get", "notes.txt"],
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        # tftp-hpa turns netascii back into local line ends: what was sent arrives
        assert (tmp_path / "notes.txt").read_bytes() == b"line one\nline two\r\nend"

    def test_netascii_of_a_file_too_large_to_hold_is_converted_as_it_is_sent(
        self, tftp: RunningServer, tmp_path: Path
    ) -> None:
        result = client(
            ["tftp", "127.0.0.1", str(tftp.port), "-m", "netascii", "-c", "get", "long-notes.txt"],
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        sent = (tftp.data / "provisioning" / "long-notes.txt").read_bytes()
        assert (tmp_path / "long-notes.txt").read_bytes() == sent

    def test_missing_file_is_error_1(self, tftp: RunningServer, tmp_path: Path) -> None:
        result = client(
            ["tftp", "127.0.0.1", str(tftp.port), "-m", "binary", "-c", "get", "nope.cfg"],
            tmp_path,
        )
        assert "Error code 1: file not found" in result.stdout + result.stderr

    def test_upload_with_tftp_put_is_stored_per_mac(
        self, tftp: RunningServer, tmp_path: Path
    ) -> None:
        log = tmp_path / f"{MAC}-boot.log"
        log.write_bytes(os.urandom(70_000))
        result = client(
            ["tftp", "127.0.0.1", str(tftp.port), "-m", "binary", "-c", "put", log.name],
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        # the final ACK is sent once the file is stored: it is there when the client is done
        stored = tftp.data / "uploads" / MAC / log.name
        assert stored.read_bytes() == log.read_bytes()

    def test_upload_of_other_names_is_refused(self, tftp: RunningServer, tmp_path: Path) -> None:
        (tmp_path / "evil.cfg").write_text("x")
        client(
            ["tftp", "127.0.0.1", str(tftp.port), "-m", "binary", "-c", "put", "evil.cfg"],
            tmp_path,
        )
        assert not list((tftp.data / "uploads").rglob("evil.cfg"))
        assert not (tftp.data / "provisioning" / "evil.cfg").exists()


def exchange(port: int, packet: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, ("127.0.0.1", port))
        try:
            return sock.recvfrom(70000)[0]
        except TimeoutError:
            return None


def error_packet(code: int, message: bytes) -> bytes:
    return b"\x00\x05" + code.to_bytes(2, "big") + message + b"\0"


@pytest.mark.parametrize(
    ("packet", "answer"),
    [
        (b"\x00", None),  # truncated: dropped
        (b"\x00\x05\x00\x01oops\0", None),  # an error to the listening port: never answered
        (b"\x00\x01a.cfg\0octet", error_packet(4, b"request does not end with NUL")),
        (b"\x00\x09x\0octet\0", error_packet(4, b"opcode 9 does not start a transfer")),
        (b"\x00\x01a.cfg\0mail\0", error_packet(4, b"mode 'mail' is not octet or netascii")),
        (
            b"\x00\x01000000000000.cfg\0octet\0blksize\x007\0",
            error_packet(8, b"blksize '7' is not 8-65464"),
        ),
        (
            b"\x00\x01000000000000.cfg\0octet\0windowsize\x0099999\0",
            error_packet(8, b"windowsize '99999' is not 1-65535"),
        ),
        (
            b"\x00\x01a.cfg\0octet\0tsize\x000\0TSIZE\x000\0",
            error_packet(8, b"option tsize given twice"),
        ),
        (b"\x00\x01" + b"a" * 1100 + b"\0octet\0", error_packet(4, b"request longer than 1024")),
        (b"\x00\x04\x00\x01", error_packet(5, b"no transfer on this port: send RRQ or WRQ")),
        (b"\x00\x03\x00\x01data", error_packet(5, b"no transfer on this port: send RRQ or WRQ")),
        (b"\x00\x01../../etc/passwd\0octet\0", error_packet(2, b"a '..' segment")),
        (b"\x00\x01/.hidden\0octet\0", error_packet(2, b"hidden name '.hidden'")),
        (b"\x00\x01nope.cfg\0octet\0", error_packet(1, b"file not found")),
        (
            b"\x00\x02000000000000.cfg\0octet\0",
            error_packet(2, b"'000000000000.cfg' is not a file phones upload"),
        ),
    ],
)
def test_malformed_packets_get_the_exact_answer(
    tftp: RunningServer, packet: bytes, answer: bytes | None
) -> None:
    before = sorted(p.name for p in (tftp.data / "provisioning").iterdir())
    assert exchange(tftp.port, packet) == answer
    assert sorted(p.name for p in (tftp.data / "provisioning").iterdir()) == before


def test_a_stranger_tid_gets_error_5_and_the_transfer_goes_on(tftp: RunningServer) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
    ):
        phone.settimeout(10)  # answers expected: room for a loaded machine
        stranger.settimeout(10)
        phone.sendto(b"\x00\x01000000000000.cfg\0octet\0", ("127.0.0.1", tftp.port))
        first, transfer = phone.recvfrom(70000)
        assert first[:4] == b"\x00\x03\x00\x01"
        stranger.sendto(b"\x00\x04\x00\x01", transfer)
        assert stranger.recvfrom(100)[0] == error_packet(5, b"unknown transfer ID")
        stranger.sendto(b"\x00\x03\x00\x01junk", transfer)
        assert stranger.recvfrom(100)[0] == error_packet(5, b"unknown transfer ID")
        phone.sendto(b"\x00\x04\x00\x01", transfer)  # the transfer is untouched: done
        expected = (tftp.data / "provisioning" / "000000000000.cfg").read_bytes()
        assert first[4:] == expected
        phone.settimeout(0.5)
        with pytest.raises(TimeoutError):
            phone.recvfrom(100)  # nothing more: the last block was acknowledged


def test_a_transfer_the_phone_ends_after_the_first_block_is_recorded_with_its_bytes(
    tftp: RunningServer,
) -> None:
    """An updater reads an image's first block (with tsize) and ends the transfer: the record
    says 499 with the block that went out (it said 0 bytes, as if nothing had been sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
        phone.settimeout(10)  # an answer is expected: room for a loaded machine
        request = f"\x00\x01{BIG}\0octet\0blksize\x001428\0tsize\x000\0".encode()
        phone.sendto(request, ("127.0.0.1", tftp.port))
        oack, transfer = phone.recvfrom(70000)
        assert oack[:2] == b"\x00\x06"
        phone.sendto(b"\x00\x04\x00\x00", transfer)
        block = phone.recvfrom(70000)[0]
        assert (block[:4], len(block)) == (b"\x00\x03\x00\x01", 4 + 1428)
        phone.sendto(error_packet(0, b"header read"), transfer)

    def found() -> list[dict[str, object]]:
        return [r for r in tftp_records(tftp) if r["path"] == BIG and r["status"] == 499]

    wait_for(found)
    assert [r["bytes"] for r in found()] == [1428]


def tftp_records(server: RunningServer) -> list[dict[str, object]]:
    got: list[dict[str, object]] = json.loads(server.cli("fetches", "--status", "499", "--json"))
    return got


def test_duplicate_acks_do_not_make_duplicate_data(tftp: RunningServer) -> None:
    """Sorcerer's Apprentice: a repeated ACK is not answered with a repeated DATA."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
        phone.settimeout(10)  # an answer is expected: room for a loaded machine
        phone.sendto(f"\x00\x01{BIG}\0octet\0".encode(), ("127.0.0.1", tftp.port))
        _packet, transfer = phone.recvfrom(70000)
        phone.sendto(b"\x00\x04\x00\x01", transfer)
        phone.sendto(b"\x00\x04\x00\x01", transfer)  # the same ACK again, at once
        second = phone.recvfrom(70000)[0]
        assert second[:4] == b"\x00\x03\x00\x02"
        phone.settimeout(0.3)
        with pytest.raises(TimeoutError):
            phone.recvfrom(70000)  # no second copy of block 2 before the timer
        phone.sendto(error_packet(0, b"enough"), transfer)


class LossyProxy:
    """UDP between a client and the server, dropping ``loss`` of packets each way.

    TFTP moves each transfer to a new server port, so the proxy mirrors every server port with
    a port of its own towards the client.
    """

    def __init__(self, server_port: int, loss: float, seed: int) -> None:
        self.random = random.Random(seed)  # noqa: S311  # a loss pattern, not a secret
        self.loss = loss
        self.server = ("127.0.0.1", server_port)
        self.front = self._socket()
        self.port = self.front.getsockname()[1]
        self.upstream: dict[tuple[str, int], socket.socket] = {}  # client → our socket to server
        self.mirrors: dict[tuple[tuple[str, int], int], socket.socket] = {}
        self.stop = threading.Event()
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        return sock

    def _keep(self) -> bool:
        if self.random.random() < self.loss:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        selector.register(self.front, selectors.EVENT_READ, ("front", None))
        while not self.stop.is_set():
            for key, _ in selector.select(0.05):
                kind, info = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data, addr = sock.recvfrom(70000)
                except BlockingIOError:
                    continue
                if kind == "front":  # a request from a client to the listening port
                    up = self.upstream.get(addr)
                    if up is None:
                        up = self.upstream[addr] = self._socket()
                        selector.register(up, selectors.EVENT_READ, ("up", addr))
                    if self._keep():
                        up.sendto(data, self.server)
                elif kind == "up":  # from the server (a transfer port) back to the client
                    client_addr = info
                    mirror = self.mirrors.get((client_addr, addr[1]))
                    if mirror is None:
                        mirror = self.mirrors[(client_addr, addr[1])] = self._socket()
                        selector.register(
                            mirror, selectors.EVENT_READ, ("mirror", (client_addr, addr))
                        )
                    if self._keep():
                        mirror.sendto(data, client_addr)
                else:  # from the client to a mirrored transfer port
                    client_addr, server_addr = info
                    if self._keep():
                        self.upstream[client_addr].sendto(data, server_addr)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in [self.front, *self.upstream.values(), *self.mirrors.values()]:
            sock.close()


def lossy_get(port: int, name: str, blksize: int, window: int) -> bytes:
    """A minimal client (0.25 s timeout, re-ACKs on silence) for the loss test."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.25)
        request = (
            f"\x00\x01{name}\0octet\0blksize\0{blksize}\0windowsize\0{window}\0timeout\x001\0"
        ).encode()
        server = None
        received: list[bytes] = []
        last_ack = -1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                packet, addr = sock.recvfrom(70000)
            except TimeoutError:
                if server is None:
                    sock.sendto(request, ("127.0.0.1", port))
                else:
                    sock.sendto(
                        b"\x00\x04"
                        + ((last_ack if last_ack >= 0 else 0) & 0xFFFF).to_bytes(2, "big"),
                        server,
                    )
                continue
            opcode = int.from_bytes(packet[:2], "big")
            if server is None:
                server = addr
            if addr != server:
                continue
            if opcode == 6:  # OACK
                last_ack = 0
                sock.sendto(b"\x00\x04\x00\x00", server)
            elif opcode == 3:
                block = int.from_bytes(packet[2:4], "big")
                if block == (len(received) + 1) & 0xFFFF:
                    received.append(packet[4:])
                    last_ack = len(received)
                    if len(packet) - 4 < blksize or len(received) % window == 0:
                        sock.sendto(b"\x00\x04" + packet[2:4], server)
                    if len(packet) - 4 < blksize:
                        return b"".join(received)
            elif opcode == 5:
                raise AssertionError(f"server error {packet!r}")
        raise AssertionError("transfer did not finish")


def test_transfers_complete_byte_exact_with_5_percent_loss(tftp: RunningServer) -> None:
    source = tftp.data / "provisioning" / "lossy.bin"
    source.write_bytes(os.urandom(60_000))
    proxy = LossyProxy(tftp.port, loss=0.05, seed=7)
    try:
        results: dict[int, bytes] = {}

        def one(i: int) -> None:
            blksize, window = [(512, 1), (1428, 4), (1024, 8)][i % 3]
            results[i] = lossy_get(proxy.port, "lossy.bin", blksize, window)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(150)
    finally:
        proxy.close()
    assert proxy.dropped > 0
    assert len(results) == 6
    assert all(body == source.read_bytes() for body in results.values())


def test_busy_server_tells_phones_to_retry_and_metrics_count_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data, env = fleet_env(tmp_path_factory, "tftp-busy")
    make_fleet(data, env)
    both = start_server(
        data, env, "--http", "127.0.0.1:0", "--tftp", "127.0.0.1:0", "--tftp-max-transfers", "2"
    )
    assert both.process.stdout is not None
    try:
        tftp_line = both.process.stdout.readline()
        assert tftp_line.startswith("fleetkey serving tftp://127.0.0.1:"), tftp_line
        server = RunningServer(
            both.url, int(tftp_line.split()[2].rsplit(":", 1)[1]), data, both.process, env
        )
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        answers = []
        for sock in sockets:
            sock.settimeout(10)  # each is answered (data or busy): room for a loaded box
            sock.sendto(b"\x00\x01000000000000.cfg\0octet\0", ("127.0.0.1", server.port))
            answers.append(sock.recvfrom(1000))
        assert [a[0][:4] for a in answers[:2]] == [b"\x00\x03\x00\x01"] * 2
        assert answers[2][0] == error_packet(0, b"server busy: retry later")
        for sock, (_, transfer) in zip(sockets[:2], answers[:2], strict=True):
            sock.sendto(error_packet(0, b"done"), transfer)  # the phone gives up: port freed
        for sock in sockets:
            sock.close()
        # the two ended transfers free their slots: then a request with an option goes through
        aborted = 'fleetkey_tftp_transfers_total{status="499"} 2.0'
        wait_for(lambda: aborted in httpx.get(f"{both.url}/metrics").text)
        oack = exchange(server.port, b"\x00\x01000000000000.cfg\0octet\0blksize\x001428\0")
        assert oack == b"\x00\x06blksize\x001428\0"
        metrics = httpx.get(f"{both.url}/metrics").text
        assert 'fleetkey_tftp_transfers_total{status="503"} 1.0' in metrics
        assert 'fleetkey_tftp_transfers_total{status="499"} 2.0' in metrics
        assert 'fleetkey_tftp_option_requests_total{option="blksize"} 1.0' in metrics
        assert "fleetkey_tftp_retransmits_total" in metrics
    finally:
        both.stop()
