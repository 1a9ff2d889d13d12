"""FTP behind a TCP proxy (``serve --ftp-proxy-protocol``): a control connection from the proxy
begins with a PROXY header (v1 or v2, as HAProxy's ``send-proxy``/``send-proxy-v2`` send it),
and the session is the client's it names: its records, its per-address limit, its logins. Its
data connections come from the proxy (they carry no header) and are taken from the proxy's
address, not the client's. A header from anyone else is no say; a malformed one closes the
connection with a log line saying why, and nothing else happens."""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.serving import (
    FTP_PHONES,
    MAC,
    VVX_LOGIN,
    FtpServer,
    fleet_env,
    make_fleet,
    records,
    start_ftp,
    wait_for,
)

PROXY = "127.0.0.2"  # --ftp-proxy-protocol
STRANGER = "127.0.0.3"  # not a proxy
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
EPSV = re.compile(r"\(\|\|\|(\d+)\|\)")


def v1(client: str, port: int = 40000) -> bytes:
    family = "TCP6" if ":" in client else "TCP4"
    server = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {client} {server} {port} 21\r\n".encode()


def v2(client: str, port: int = 40000, *, command: int = 1, tlv: bytes = b"") -> bytes:
    ip = ipaddress.ip_address(client)
    server = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
    body = ip.packed + server.packed + struct.pack("!HH", port, 21) + tlv
    family = 0x11 if ip.version == 4 else 0x21
    return SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    data, env = fleet_env(tmp_path_factory, "ftp-proxied")
    make_fleet(data, env, FTP_PHONES)
    server = start_ftp(data, env, "--ftp-proxy-protocol", PROXY, "--ftp-per-address", "1")
    yield server
    server.running.stop()


class Session:
    """A raw control connection from ``source``, ``header`` sent first."""

    def __init__(self, port: int, source: str, header: bytes = b"") -> None:
        self.port = port
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=15, source_address=(source, 0)
        )
        self.sock.sendall(header)
        self.file = self.sock.makefile("rb")

    def reply(self) -> str:
        first = line = self.file.readline().decode().rstrip("\r\n")
        while line and not (len(line) >= 4 and line[:3] == first[:3] and line[3] == " "):
            line = self.file.readline().decode().rstrip("\r\n")
        return line

    def send(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def login(self) -> None:
        assert self.reply().startswith("220")
        assert self.send(f"USER {VVX_LOGIN[0]}").startswith("331")
        assert self.send(f"PASS {VVX_LOGIN[1]}") == "230 Logged in."
        assert self.send("TYPE I").startswith("200")

    def retr(self, name: str, data_from: str) -> tuple[str, bytes]:
        """RETR over an EPSV data connection made from ``data_from``: the last reply and the
        bytes that came."""
        found = EPSV.search(self.send("EPSV"))
        assert found is not None
        with socket.create_connection(("127.0.0.1", int(found[1])), timeout=15,
                                      source_address=(data_from, 0)) as data:  # fmt: skip
            self.sock.sendall(f"RETR {name}\r\n".encode())
            first = self.reply()
            if first[:3] not in ("125", "150"):
                return first, b""
            body = b""
            while chunk := data.recv(65536):
                body += chunk
        return self.reply(), body

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def address_recorded(ftp: FtpServer, path: str) -> object:
    found: list[object] = []

    def seen() -> bool:
        found[:] = [r["remote_addr"] for r in records(ftp.running, MAC) if r["path"] == path]
        return bool(found)

    wait_for(seen)
    return found[-1]


@pytest.mark.parametrize(
    ("version", "client"),
    [("v1", "203.0.113.5"), ("v2", "203.0.113.6"), ("v1", "2001:db8::7"), ("v2", "2001:db8::8")],
)
def test_a_proxied_session_is_the_client_its_header_names(
    ftp: FtpServer, version: str, client: str
) -> None:
    header = v1(client) if version == "v1" else v2(client, tlv=b"\x04\x00\x01x")  # a TLV skipped
    session = Session(ftp.port, PROXY, header)
    try:
        session.login()
        name = f"{MAC}-license.cfg"
        reply, _ = session.retr(f"{name};{version}{client}", data_from=PROXY)
    finally:
        session.close()
    assert reply.startswith("550"), reply  # the name with its tag is no file: recorded all the same
    assert address_recorded(ftp, f"/{name};{version}{client}") == client


def test_a_proxied_sessions_data_connection_is_taken_from_the_proxy_not_the_client(
    ftp: FtpServer,
) -> None:
    """The header names a client on this machine (127.0.0.4), so a data connection can come
    from it: refused (425) when the RETR comes (the listener accepts what waits then:
    serve/ftp/passive.py), the listener waits on, and the proxy's is taken."""
    session = Session(ftp.port, PROXY, v1("127.0.0.4"))
    try:
        session.login()
        found = EPSV.search(session.send("EPSV"))
        assert found is not None
        port = int(found[1])
        with socket.create_connection(("127.0.0.1", port), timeout=15,
                                      source_address=("127.0.0.4", 0)):  # fmt: skip
            pass
        with socket.create_connection(("127.0.0.1", port), timeout=15,
                                      source_address=(PROXY, 0)) as data:  # fmt: skip
            session.sock.sendall(b"RETR 000000000000.cfg\r\n")
            assert session.reply().startswith("425 Rejected data connection from foreign")
            assert session.reply()[:3] in ("125", "150")
            body = b""
            while chunk := data.recv(65536):
                body += chunk
        assert session.reply().startswith("226")
    finally:
        session.close()
    assert body == (ftp.data / "provisioning" / "000000000000.cfg").read_bytes()
    assert address_recorded(ftp, "/000000000000.cfg") == "127.0.0.4"


def test_the_per_address_limit_counts_the_clients_the_headers_name(ftp: FtpServer) -> None:
    """--ftp-per-address 1: two sessions through the proxy for two clients are both let in;
    a second one for the same client is refused, as from that client directly."""
    first = Session(ftp.port, PROXY, v1("198.51.100.1"))
    other = Session(ftp.port, PROXY, v1("198.51.100.2"))
    again = Session(ftp.port, PROXY, v2("198.51.100.1", port=40001))
    try:
        assert first.reply().startswith("220")
        assert other.reply().startswith("220")
        assert again.reply().startswith("421 Too many connections from this address")
    finally:
        for session in (first, other, again):
            session.close()


def test_a_header_from_anyone_else_is_no_say(ftp: FtpServer) -> None:
    """From an address not named by --ftp-proxy-protocol the connection is a session as
    always (greeted at once), and a PROXY line in it is an unknown command."""
    session = Session(ftp.port, STRANGER)
    try:
        assert session.reply().startswith("220")
        assert session.send(v1("203.0.113.9").decode().rstrip()).startswith("500")
        assert session.send(f"USER {VVX_LOGIN[0]}").startswith("331")
        assert session.send(f"PASS {VVX_LOGIN[1]}") == "230 Logged in."
        reply, _ = session.retr("000000000000.cfg;stranger", data_from=STRANGER)
    finally:
        session.close()
    assert reply.startswith("550")
    assert address_recorded(ftp, "/000000000000.cfg;stranger") == STRANGER


MALFORMED = [
    # (what is sent, what the log line says)
    (b"USER vvx500\r\n", "no PROXY protocol header: the connection began b'USER vvx500"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "is not 'PROXY TCP4|TCP6 SOURCE DESTINATION"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "is not 'PROXY TCP4|TCP6 SOURCE DESTINATION"),
    (b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", "address '1.2.3.400' is not an IP address"),
    (b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "address '2001:db8::1' is not IPv4"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "address '1.2.3.4' is not IPv6"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port 65536 is above 65535"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 012 2\r\n", "port '012' is not a port number"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "port '-1' is not a port number"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "without CRLF"),
    (b"PROXY TCP4 " + b"1" * 120 + b"\r\n", "without CRLF in its first 107 bytes"),
    (b"PROXY TCP4 1.2.3.\xe4 5.6.7.8 1 2\r\n", "PROXY v1 line is not ASCII"),
    (SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "PROXY v2 header says version 1"),
    (SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "command 2 is neither LOCAL (0) nor PROXY"),
    (SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12), "family 0x12 is not TCP over IPv4"),
    (SIGNATURE + b"\x21\x11\x00\x08" + bytes(8), "addresses of 8 bytes (family 0x11: 12)"),
    (SIGNATURE + b"\x21\x11\x10\x00", "PROXY v2 header of 4096 bytes"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1", "no complete header within 1 s"),  # and then silence
    (SIGNATURE + b"\x21\x11\x00\x0c" + bytes(4), "no complete header within 1 s"),
]
TIMED_OUT = 2  # the last two; the others are malformed
REFUSED = 'fleetkey_ftp_proxy_headers_refused_total{reason="%s"}'


def test_malformed_proxy_headers_close_the_connection_with_a_log_line_and_change_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data, env = fleet_env(tmp_path_factory, "ftp-proxied-bad")
    make_fleet(data, env, FTP_PHONES)
    ftp = start_ftp(data, env, "--ftp-proxy-protocol", PROXY, "--ftp-per-address", "1",
                    "--ftp-proxy-header-timeout", "1")  # fmt: skip
    try:
        before = metrics(ftp)
        assert {before[REFUSED % reason] for reason in ("malformed", "timeout")} == {"0.0"}
        for sent, _ in MALFORMED:
            with socket.create_connection(("127.0.0.1", ftp.port), timeout=20,
                                          source_address=(PROXY, 0)) as sock:  # fmt: skip
                sock.sendall(sent)
                started = time.monotonic()
                assert closed(sock), sent  # no greeting: the connection is closed
                assert time.monotonic() - started < 15, sent
        # counted by reason; no session, no 421, no login, no transfer
        before[REFUSED % "malformed"] = f"{len(MALFORMED) - TIMED_OUT}.0"
        before[REFUSED % "timeout"] = f"{TIMED_OUT}.0"
        assert metrics(ftp) == before
        assert records(ftp.running, MAC) == []
        # and the proxy's next good session is let in (per address: 1), for its client
        session = Session(ftp.port, PROXY, v1("192.0.2.44"))
        try:
            session.login()
        finally:
            session.close()
    finally:
        out = ftp.running.process
        out.terminate()
        _, err = out.communicate(timeout=60)
    lines = [line for line in err.splitlines() if "connection from the proxy 127.0.0.2:" in line]
    assert len(lines) == len(MALFORMED), err
    for (sent, said), line in zip(MALFORMED, lines, strict=True):
        assert said in line, (sent, line)
        assert line.endswith("(--ftp-proxy-protocol)"), line


def closed(sock: socket.socket) -> bool:
    """The peer closed without a word (a reset: it closed with the bytes sent unread)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def metrics(ftp: FtpServer) -> dict[str, str]:
    """The FTP counters of /metrics, by name and labels."""
    text = httpx.get(f"{ftp.running.url}/metrics", timeout=10).text
    kept = (
        "fleetkey_ftp_sessions",
        "fleetkey_ftp_refused",
        "fleetkey_ftp_logins",
        "fleetkey_ftp_transfers",
        "fleetkey_ftp_proxy_headers_refused_total",
    )
    return {
        line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith(kept)
    }
