"""Small uploads over real HTTP written on worker threads (a network filesystem, where every
rename waits) or on the loop with the replaced file kept in a trash (a disk mounted with
discard): the answers, files and records of the loop's own writes (test_http.py;
serve/http/putting.py, serve/trash.py, docs/serve.md "Throughput with both cores"). Which
filesystem the test's directory is on depends on the machine, so the choice is given, not
provoked."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvloop

from fleetkey.clock import FixedClock
from fleetkey.serve.fetching import Pipeline
from fleetkey.serve.http.connections import Connections
from fleetkey.serve.http.messages import RequestLimits
from fleetkey.serve.http.phones import PhoneService
from fleetkey.serve.http.protocol import HttpProtocol
from fleetkey.serve.recorder import Recorder
from fleetkey.serve.trash import Trash
from fleetkey.serve.tree import FileTree
from fleetkey.serve.view import View
from fleetkey.testing import FixedView, InMemoryRecordQueue

from tests.tmpfs import fill, mounted_tmpfs

MAC = "0004f2a1b2c3"
PREFIX = "fleetkey-test-upload"


def _service(tmp_path: Path) -> tuple[PhoneService, InMemoryRecordQueue, Path]:
    tree, uploads = tmp_path / "provisioning", tmp_path / "uploads"
    tmp_path.mkdir(exist_ok=True)
    tree.mkdir()
    uploads.mkdir()
    view = FixedView(View())
    queue = InMemoryRecordQueue()
    recorder = Recorder(queue, FixedClock(), view, queue_capacity=1000)
    pipeline = Pipeline(view, FileTree(tree), FileTree(uploads))
    return PhoneService(pipeline, recorder, uploads=uploads), queue, uploads


async def _put_twice(service: PhoneService, bodies: list[bytes]) -> list[bytes]:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(2, thread_name_prefix=PREFIX))
    server = await loop.create_server(
        lambda: HttpProtocol(service, RequestLimits(), Connections()), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    heads = []
    for body in bodies:  # one keep-alive connection, as a booting phone's
        head = f"PUT /{MAC}-app.log HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        heads.append(await reader.readuntil(b"\r\n\r\n"))
    writer.close()
    server.close()
    await server.wait_closed()
    return heads


def _executor_threads() -> int:
    return sum(thread.name.startswith(PREFIX) for thread in threading.enumerate())


def test_small_uploads_written_on_threads_are_answered_stored_and_recorded_the_same(
    tmp_path: Path,
) -> None:
    service, queue, uploads = _service(tmp_path)
    service.threaded_uploads, service.trash = True, None  # as on a network filesystem
    seen: list[int] = []

    async def run() -> list[bytes]:
        heads = await _put_twice(service, [b"first", b"second log"])
        seen.append(_executor_threads())  # before uvloop.run shuts the executor down
        return heads

    heads = uvloop.run(asyncio.wait_for(run(), 10))
    assert [h.split(b" ", 2)[1] for h in heads] == [b"201", b"204"]
    assert (uploads / MAC / f"{MAC}-app.log").read_bytes() == b"second log"
    assert [(r.method, r.status, r.bytes) for r in queue.records] == [
        ("PUT", 201, len(b"first")),
        ("PUT", 204, len(b"second log")),
    ]
    assert seen[0] >= 1  # written on the executor's threads


def test_small_uploads_on_the_loop_keep_the_replaced_file_in_the_trash_until_freed(
    tmp_path: Path,
) -> None:
    service, queue, uploads = _service(tmp_path)
    trash = Trash(uploads, interval_s=3600).start()  # as on a filesystem mounted with discard
    service.trash, service.threaded_uploads = trash, False
    seen: list[int] = []

    async def run() -> list[bytes]:
        heads = await _put_twice(service, [b"first", b"second", b"third log"])
        seen.append(_executor_threads())
        return heads

    try:
        heads = uvloop.run(asyncio.wait_for(run(), 10))
        kept = sorted((uploads / ".trash").iterdir())
        assert sorted(p.read_bytes() for p in kept) == [b"first", b"second"]  # not freed yet
    finally:
        trash.close()
    assert [h.split(b" ", 2)[1] for h in heads] == [b"201", b"204", b"204"]
    assert (uploads / MAC / f"{MAC}-app.log").read_bytes() == b"third log"
    assert sorted(p.name for p in (uploads / MAC).iterdir()) == [f"{MAC}-app.log"]
    assert list((uploads / ".trash").iterdir()) == []  # freed by the trash's thread
    assert [(r.method, r.status, r.bytes) for r in queue.records] == [
        ("PUT", 201, len(b"first")),
        ("PUT", 204, len(b"second")),
        ("PUT", 204, len(b"third log")),
    ]
    assert seen == [0]  # written on the loop: no executor thread started


def test_a_full_disk_with_the_trash_answers_507_and_keeps_the_old_file_whole(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        service, queue, uploads = _service(disk / "data")
        trash = Trash(uploads, interval_s=3600).start()
        service.trash, service.threaded_uploads = trash, False
        try:
            uvloop.run(asyncio.wait_for(_put_twice(service, [b"old log"]), 10))
            ballast = fill(disk)
            heads = uvloop.run(asyncio.wait_for(_put_twice(service, [b"x" * 8192]), 10))
            assert heads[0].split(b" ", 2)[1] == b"507"  # no room, and the phone is told
            assert (uploads / MAC / f"{MAC}-app.log").read_bytes() == b"old log"
            assert sorted(p.name for p in (uploads / MAC).iterdir()) == [f"{MAC}-app.log"]
            assert list((uploads / ".trash").iterdir()) == []  # nothing replaced, none kept
            ballast.unlink()
            heads = uvloop.run(asyncio.wait_for(_put_twice(service, [b"new log"]), 10))
            assert heads[0].split(b" ", 2)[1] == b"204"
        finally:
            trash.close()
        assert (uploads / MAC / f"{MAC}-app.log").read_bytes() == b"new log"
        assert list((uploads / ".trash").iterdir()) == []
    assert [r.status for r in queue.records] == [201, 507, 204]  # every answer recorded
