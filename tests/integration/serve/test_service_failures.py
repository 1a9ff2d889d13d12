"""A bug in the service is the server's fault: a logged 500, never a 400 blamed on the client.

The service's ready answer is computed inside httptools' callback, where any exception used
to surface as a parse error ("400 malformed request") with nothing logged. Real sockets on
loopback, the real protocol.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
import uvloop

from fleetkey.serve.http.connections import Connections
from fleetkey.serve.http.messages import Request, RequestLimits, Response
from fleetkey.serve.http.protocol import HttpProtocol


class Faulty:
    """Answers /ok; raises on /bug while answering and on /unrecorded while recording."""

    def __init__(self) -> None:
        self.finished_paths: list[bytes] = []
        self.refused_paths: list[bytes] = []

    def answer_now(self, request: Request) -> Response | None:
        if request.raw_path == b"/bug":
            raise KeyError("a bug in the service")
        return Response(200, [("content-type", "text/plain")], b"fine\n")

    def body_limit(self, method: str, target: bytes) -> int:
        return 0

    async def handle(self, request: Request) -> Response:  # pragma: no cover  # answer_now does
        raise AssertionError("every request is answered at once")

    def finished(self, request: Request, response: Response, sent: int) -> None:
        if request.raw_path == b"/unrecorded":
            raise RuntimeError("the record queue is gone")
        self.finished_paths.append(request.raw_path)

    def refused(
        self, method: str, target: bytes, remote: str | None, secure: bool, response: Response
    ) -> None:
        self.refused_paths.append(target)


async def _exchange(service: Faulty, paths: list[bytes]) -> tuple[list[bytes], bytes]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpProtocol(service, RequestLimits(), Connections()), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    heads = []
    for path in paths:  # one keep-alive connection, one request after the other
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        await reader.readexactly(int(length.group(1)) if length else 0)
        await asyncio.sleep(0.05)
    writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    rest = await reader.read()
    writer.close()
    server.close()
    await server.wait_closed()
    return heads, rest


def test_a_service_bug_is_a_logged_500_and_the_connection_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Faulty()
    with caplog.at_level(logging.ERROR, logger="fleetkey.serve.http.protocol"):
        heads, rest = uvloop.run(asyncio.wait_for(_exchange(service, [b"/bug"]), 10))
    assert heads[0].startswith(b"HTTP/1.1 500 ")
    assert rest.startswith(b"HTTP/1.1 200 ")  # the connection outlived the bug
    assert service.refused_paths == []  # not a framing refusal: the client did nothing wrong
    assert service.finished_paths == [b"/bug", b"/ok"]  # the 500 was recorded as answered
    assert any("request b'/bug' failed" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


def test_an_answer_already_sent_stands_when_recording_it_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Faulty()
    with caplog.at_level(logging.ERROR, logger="fleetkey.serve.http.protocol"):
        heads, rest = uvloop.run(asyncio.wait_for(_exchange(service, [b"/unrecorded"]), 10))
    assert heads[0].startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 200 ")
    assert service.refused_paths == []
    assert service.finished_paths == [b"/ok"]
    assert any("recording the answer to b'/unrecorded'" in r.getMessage() for r in caplog.records)
