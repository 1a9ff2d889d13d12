"""A finished HTTP connection and a finished TFTP transfer are freed at once, without the
cyclic garbage collector: its passes over a busy server's leftovers cost 13 % of a
connection-close run (docs/serve.md). Real sockets on loopback, the collector off."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref
from collections.abc import Iterator

import pytest
import uvloop

from fleetkey.core import tftp as packets
from fleetkey.core.tftp import Negotiated
from fleetkey.serve.http.connections import Connections
from fleetkey.serve.http.messages import Request, Response
from fleetkey.serve.http.protocol import HttpProtocol, RequestLimits
from fleetkey.serve.tftp.deadlines import Deadlines
from fleetkey.serve.tftp.poller import Poller
from fleetkey.serve.tftp.sources import BytesSource
from fleetkey.serve.tftp.transfer import ReadTransfer, Terms, TransferResult


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class OneAnswer:
    """The protocol's service: every GET gets the same small answer, at once."""

    def __init__(self) -> None:
        self.answered = 0

    def answer_now(self, request: Request) -> Response | None:
        return Response(200, [("content-type", "text/plain")], b"license\n")

    def body_limit(self, method: str, target: bytes) -> int:
        return 0

    async def handle(self, request: Request) -> Response:  # pragma: no cover  # answer_now does
        raise AssertionError("every request is answered at once")

    def finished(self, request: Request, response: Response, sent: int) -> None:
        self.answered += 1

    def refused(  # pragma: no cover  # every request here is well formed
        self, method: str, target: bytes, remote: str | None, secure: bool, response: Response
    ) -> None:
        raise AssertionError("no request is refused by the framing here")


async def _http_connections(count: int, close: bool) -> tuple[list[weakref.ref[HttpProtocol]], int]:
    loop = asyncio.get_running_loop()
    service = OneAnswer()
    alive = Connections()
    made: list[weakref.ref[HttpProtocol]] = []

    def factory() -> HttpProtocol:
        protocol = HttpProtocol(service, RequestLimits(), alive)
        made.append(weakref.ref(protocol))
        return protocol

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    header = b"Connection: close\r\n" if close else b""
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /0004f2000001-license.cfg HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
        await reader.readuntil(b"license\n")
        writer.close()
        await writer.wait_closed()
    while alive.open:  # the server side's connection_lost comes a loop turn later
        await asyncio.sleep(0.01)
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.05)
    return made, service.answered


@pytest.mark.parametrize("close", [True, False], ids=["connection-close", "client-closes"])
def test_a_finished_http_connection_is_freed_without_the_collector(
    collector_off: None, close: bool
) -> None:
    made, answered = uvloop.run(asyncio.wait_for(_http_connections(20, close), 10))
    assert answered == 20
    assert len(made) == 20
    assert [ref for ref in made if ref() is not None] == []


async def _tftp_transfer() -> tuple[weakref.ref[ReadTransfer], list[TransferResult], bytes]:
    body = b"x" * 700  # two blocks of 512
    outcomes: list[TransferResult] = []
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.settimeout(5)

    def start() -> weakref.ref[ReadTransfer]:
        # as the server does: ``done`` is a closure over the transfer that holds it
        transfer = ReadTransfer(
            Terms(phone.getsockname(), Negotiated(timeout_s=1.0), None),
            lambda outcome: outcomes.append((transfer, outcome)[1]),
            BytesSource(body),
            len(body),
        )
        transfer.open("127.0.0.1", poller, deadlines)
        return weakref.ref(transfer)

    poller = Poller(asyncio.get_running_loop())
    deadlines = Deadlines(asyncio.get_running_loop())
    ref = start()
    loop = asyncio.get_running_loop()
    received = b""
    with phone:
        while True:
            packet, server = await loop.run_in_executor(None, phone.recvfrom, 2048)
            received += packet[4:]
            phone.sendto(packets.ack(int.from_bytes(packet[2:4], "big")), server)
            if len(packet) - 4 < 512:
                break
        while not outcomes:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert len(poller) == 0  # the finished transfer's socket was forgotten
    assert len(deadlines) == 0  # and its timeout cancelled
    poller.close()
    deadlines.close()
    return ref, outcomes, received


def test_a_finished_tftp_transfer_is_freed_without_the_collector(collector_off: None) -> None:
    ref, outcomes, received = uvloop.run(asyncio.wait_for(_tftp_transfer(), 10))
    assert received == b"x" * 700
    assert [outcome.status for outcome in outcomes] == [200]
    assert ref() is None
