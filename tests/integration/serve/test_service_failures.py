"""A bug in the service is the server's fault: a logged 500, never a 400 blamed on the client.

HTTP: the service's ready answer is computed inside httptools' callback, where any exception
used to surface as a parse error ("400 malformed request") with nothing logged. TFTP: a bug
while starting a transfer is answered with error 0, recorded as a 500 and logged, and the next
request is served. Real sockets on loopback, the real protocols; the fault is injected through
a port (a service, a pipeline), never by patching the server.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from pathlib import Path

import pytest
import uvloop

from fleetkey.clock import FixedClock
from fleetkey.core.useragent import PhoneAgent
from fleetkey.serve.fetching import Pipeline, Ruling
from fleetkey.serve.http.connections import Connections
from fleetkey.serve.http.messages import Request, RequestLimits, Response
from fleetkey.serve.http.protocol import HttpProtocol
from fleetkey.serve.recorder import Recorder
from fleetkey.serve.tftp.server import TftpServer, TftpSettings
from fleetkey.serve.tree import FileTree
from fleetkey.serve.view import View
from fleetkey.testing import FixedView, InMemoryRecordQueue


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


class FaultyPipeline:
    """The real pipeline, except that deciding on one file name raises: a bug in the serving
    core, injected through the TFTP server's port (``serve.fetching.Decider``)."""

    def __init__(self, real: Pipeline, broken: str) -> None:
        self.real = real
        self.broken = broken

    def decide(
        self,
        segments: tuple[str, ...],
        address: str | None,
        agent: PhoneAgent | None,
        now: float,
        *,
        login: str | None = None,
        write: bool = False,
    ) -> Ruling:
        if segments[-1] == self.broken:
            raise KeyError("a bug in the pipeline")
        return self.real.decide(segments, address, agent, now, login=login, write=write)


def _rrq(name: bytes) -> bytes:
    return b"\x00\x01" + name + b"\0octet\0"


def _tftp_client(port: int) -> tuple[bytes, bytes, bytes]:
    """RRQ the broken name, then a tree file (read to its end); what came back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(_rrq(b"broken.cfg"), ("127.0.0.1", port))
        error, _ = sock.recvfrom(70000)
        sock.sendto(_rrq(b"000000000000.cfg"), ("127.0.0.1", port))
        data, transfer = sock.recvfrom(70000)
        sock.sendto(b"\x00\x04" + data[2:4], transfer)  # ACK: under 512 bytes, the last block
        sock.settimeout(0.5)
        try:
            after, _ = sock.recvfrom(70000)
        except TimeoutError:
            after = b""
    return error, data, after


async def _tftp_exchange(server: TftpServer) -> tuple[bytes, bytes, bytes]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        answers = await loop.run_in_executor(None, _tftp_client, port)
        while server.counters.active:  # the transfer ends once its last ACK is in
            await asyncio.sleep(0.01)
    finally:
        await server.drain(1.0)
    return answers


def test_a_tftp_pipeline_bug_is_an_error_packet_and_a_recorded_500_and_serving_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = tmp_path / "provisioning"
    tree.mkdir()
    (tree / "000000000000.cfg").write_bytes(b"<APPLICATION/>\n")
    view = FixedView(View())
    pipeline = Pipeline(view, FileTree(tree), FileTree(tmp_path / "uploads"))
    queue = InMemoryRecordQueue()
    recorder = Recorder(queue, FixedClock(), view, queue_capacity=1000)
    server = TftpServer(
        FaultyPipeline(pipeline, "broken.cfg"),
        recorder,
        tmp_path / "uploads",
        TftpSettings(),
        "127.0.0.1",
    )
    with caplog.at_level(logging.ERROR, logger="fleetkey.serve.tftp.server"):
        error, data, after = uvloop.run(asyncio.wait_for(_tftp_exchange(server), 20))
    assert error == b"\x00\x05\x00\x00internal error\0"  # error 0: not the phone's fault
    assert data == b"\x00\x03\x00\x01<APPLICATION/>\n"  # the next request is served
    assert after == b""  # and the transfer ended at its one block
    assert [(r.path, r.method, r.status) for r in queue.records] == [
        ("broken.cfg", "RRQ", 500),
        ("000000000000.cfg", "RRQ", 200),
    ]
    assert queue.records[1].bytes == len(b"<APPLICATION/>\n")
    assert recorder.answers[("tftp", 500, "other")] == 1
    failed = [r for r in caplog.records if "TFTP request b'broken.cfg'" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].exc_info is not None
    assert failed[0].exc_info[0] is KeyError  # logged with its traceback
