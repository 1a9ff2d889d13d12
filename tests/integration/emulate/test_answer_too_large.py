"""An answer larger than the emulator keeps is that request's failure, named with its path and
the cap, and the phone goes on booting: over HTTP it ended the phone (the size error came out
of the HTTP parser's callback as the parser's own error, which no one caught), over FTP and
TFTP it was a bare 500.

Against a real HTTP server on an ephemeral loopback port; the cap is lowered for the test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.signing import TrustedKeys
from fleetkey.emulate.clock import VirtualClock
from fleetkey.emulate.fleet import Fleet
from fleetkey.emulate.http import HttpClient
from fleetkey.errors import AnswerTooLargeError

MAC = "020000100000"
CAP = 1000
BIG = b"<APPLICATION/>" + b" " * 5000  # a master configuration over the cap


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = BIG if self.path == "/000000000000.cfg" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # the base's name
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_client_names_the_path_and_the_cap_of_an_answer_too_large(port: int) -> None:
    async def fetch() -> None:
        client = HttpClient("127.0.0.1", port, local_address=None, user_agent="x", max_body=CAP)
        try:
            await client.fetch("/000000000000.cfg", user_agent="x")
        finally:
            await client.close()

    with pytest.raises(AnswerTooLargeError) as raised:
        asyncio.run(fetch())
    assert (raised.value.path, raised.value.cap) == ("/000000000000.cfg", CAP)
    assert str(raised.value) == (
        "/000000000000.cfg: the answer is over 1,000 bytes, the most the emulator keeps"
    )


def test_a_phone_sent_an_answer_too_large_says_so_and_boots_on(port: int) -> None:
    async def run() -> Fleet:
        fleet = Fleet(
            [PhoneConfig(MAC)],
            TrustedKeys(),
            VirtualClock(datetime(2027, 1, 5, tzinfo=UTC)),
            host="127.0.0.1",
            port=port,
            sip_port=None,
            connect=lambda phone: HttpClient(
                "127.0.0.1", port, local_address=phone.address, user_agent="x", max_body=CAP
            ),
        )
        await fleet.run(30, until_booted=True)
        return fleet

    fleet = asyncio.run(run())
    phone = fleet.phones[0]
    assert phone.errors == [
        "GET 000000000000.cfg: /000000000000.cfg: the answer is over 1,000 bytes, the most the "
        "emulator keeps"
    ]
    assert phone.boots_done == 1  # the boot went on without a master configuration
    assert fleet.requests[0] == 1  # counted as a request without an answer
