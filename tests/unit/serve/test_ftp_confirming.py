"""The FTP thread's record queue (serve/ftp/confirming.py): a confirming record goes through the
event loop's commit gate and its session is released on the FTP thread's own poller only once
the record is committed; other records go to the writer as they come; a writer that refuses
the record releases the session at once, counted."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from pyftpdlib.ioloop import Epoll

from fleetkey.serve.commits import CommitGate
from fleetkey.serve.ftp.confirming import Confirmations
from fleetkey.store.records import FetchRecord
from fleetkey.store.writer import CAPACITY, FetchWriter
from fleetkey.testing import InMemorySink

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOUR = 3600.0  # no batch but the ones an urgent record starts


def fetch(i: int) -> FetchRecord:
    return FetchRecord(f"/0004f2a1b2c3-license.cfg?{i}", "ftp", 200, 452, 0.1, T0)


class GatedSink:
    """An in-memory sink whose batches wait for ``go`` (a slow commit)."""

    def __init__(self) -> None:
        self.inner = InMemorySink()
        self.go = threading.Event()

    def insert_batch(self, records: Sequence[FetchRecord], batch: tuple[str, int]) -> None:
        self.go.wait(30)
        self.inner.insert_batch(records, batch)

    def batch_written(self, writer: str, seq: int) -> bool:
        return self.inner.batch_written(writer, seq)


class Session:
    """What a session is to the queue: released on the FTP thread."""

    def __init__(self, sink: GatedSink) -> None:
        self.sink = sink
        self.released: list[tuple[str, int]] = []  # (thread name, records stored then)
        self.done = threading.Event()

    def fk_confirmed(self) -> None:
        stored = len(self.sink.inner.records)
        self.released.append((threading.current_thread().name, stored))
        self.done.set()


@dataclass
class Rig:
    """A writer on a gated sink, its commit gate, the FTP thread's queue and one session; the
    FTP thread's poller (``ioloop``), run by ``serve`` until ``stop``."""

    sink: GatedSink
    writer: FetchWriter
    gate: CommitGate
    queue: Confirmations
    session: Session
    ioloop: Epoll = field(default_factory=Epoll)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def serve(self) -> None:
        """As `fleetkey serve` does on its event loop: the gate started there, the queue
        attached to it and to the FTP thread's poller, and that thread running."""
        loop = asyncio.get_running_loop()
        self.gate.start(loop)
        self.queue.attach(loop, self.ioloop)
        self.thread = run_ftp_thread(self.ioloop, self.stop)

    async def released(self) -> None:
        """Once the session is released, the FTP thread stopped."""
        await asyncio.to_thread(self.session.done.wait, 30)
        self.stop.set()
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join, 30)

    def close(self) -> None:
        self.sink.go.set()
        self.stop.set()
        self.gate.stop()
        self.queue.detach()
        self.writer.close()
        self.ioloop.close()


@pytest.fixture
def rig() -> Iterator[Callable[..., Rig]]:
    """Makes a ``Rig`` (its writer's queue of ``capacity``); each is closed after the test."""
    made: list[Rig] = []

    def make(capacity: int = CAPACITY) -> Rig:
        sink = GatedSink()
        writer = FetchWriter(sink, capacity=capacity, flush_interval_s=HOUR).start()
        gate = CommitGate(writer)
        made.append(Rig(sink, writer, gate, Confirmations(writer, gate), Session(sink)))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_a_confirming_record_releases_its_session_on_the_ftp_thread_after_its_commit(
    rig: Callable[..., Rig],
) -> None:
    r = rig()

    async def main() -> None:
        r.serve()
        r.queue.submit(fetch(0), timeout=0)  # an ordinary record: to the writer, no waiting
        r.queue.expect(r.session)  # as the FTP thread does before recording a license RETR
        r.queue.submit(fetch(1), timeout=0)
        assert r.queue.took()
        await asyncio.sleep(0.3)
        assert r.session.released == []  # its batch is being committed: the 226 waits
        r.sink.go.set()
        await r.released()

    asyncio.run(main())
    r.close()
    # released on the FTP thread, with both records in (the ordinary one rode along)
    assert r.session.released == [("ftp-under-test", 2)]
    assert (r.gate.committed, r.gate.uncommitted, r.queue.not_queued) == (1, 0, 0)


def test_without_a_loop_a_record_is_queued_plainly_and_nothing_waits(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    r.sink.go.set()
    r.queue.expect(r.session)  # not attached: the server is not serving yet, or has stopped
    r.queue.submit(fetch(0), timeout=0)
    assert not r.queue.took()
    assert r.writer.depth == 1
    r.writer.close()
    assert r.session.released == []
    assert len(r.sink.inner.records) == 1


def test_a_record_the_writer_refuses_releases_its_session_at_once_counted(
    rig: Callable[..., Rig],
) -> None:
    r = rig(capacity=1)

    async def main() -> None:
        r.serve()
        r.writer.submit(fetch(0), timeout=0)  # the queue is full now (capacity 1)
        r.queue.expect(r.session)
        r.queue.submit(fetch(1), timeout=0)
        assert r.queue.took()
        await r.released()

    asyncio.run(main())
    r.close()
    assert [name for name, _ in r.session.released] == ["ftp-under-test"]
    assert r.queue.not_queued == 1


def run_ftp_thread(ioloop: Epoll, stop: threading.Event) -> threading.Thread:
    """The FTP thread's polling until ``stop`` (``Rig.serve`` runs one for the whole test; a
    test may start and stop its own)."""

    def loop() -> None:
        while not stop.is_set():
            ioloop.loop(0.05, blocking=False)

    thread = threading.Thread(target=loop, name="ftp-under-test", daemon=True)
    thread.start()
    return thread


def test_records_gathered_on_the_ftp_thread_call_the_loop_once_and_wake_it_once() -> None:
    """Three confirming records submitted within the hand-off time go to the gate with one
    call of the event loop, and their three sessions, released while the FTP thread is not
    polling, wake it once (a call of the loop and a byte per record before)."""
    sink = GatedSink()
    writer = FetchWriter(sink, flush_interval_s=HOUR).start()
    gate = CommitGate(writer)
    queue = Confirmations(writer, gate, handoff_s=0.5)
    sessions = [Session(sink) for _ in range(3)]
    ioloop = Epoll()
    calls: list[str] = []
    wakes: list[int] = []

    async def until(done: Any) -> None:
        for _ in range(300):
            if done():
                return
            await asyncio.sleep(0.1)
        raise AssertionError("not within 30 s")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate.start(loop)
        queue.attach(loop, ioloop)
        real_call = loop.call_soon_threadsafe

        def counted_call(callback: Any, *args: Any) -> Any:
            calls.append(getattr(callback, "__name__", ""))
            return real_call(callback, *args)

        loop.call_soon_threadsafe = counted_call  # type: ignore[method-assign]
        waker = queue._waker
        assert waker is not None
        real_wake = waker.wake

        def counted_wake() -> None:
            wakes.append(1)
            real_wake()

        waker.wake = counted_wake  # type: ignore[method-assign]
        for i, session in enumerate(sessions):
            queue.expect(session)
            queue.submit(fetch(i), timeout=0)
            assert queue.took()
        stop = threading.Event()
        thread = run_ftp_thread(ioloop, stop)  # its timer hands the three over
        await until(lambda: "_on_loop" in calls)
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        sink.go.set()  # now the batch commits, and the sessions are released
        await until(lambda: gate.committed == 3)
        await asyncio.sleep(0.1)  # the futures' callbacks
        assert len(wakes) == 1
        again = threading.Event()
        thread = run_ftp_thread(ioloop, again)
        for session in sessions:
            await asyncio.to_thread(session.done.wait, 30)
        again.set()
        await asyncio.to_thread(thread.join, 30)

    try:
        asyncio.run(main())
    finally:
        sink.go.set()
        gate.stop()
        queue.detach()
        writer.close()
    assert calls.count("_on_loop") == 1
    assert len(wakes) == 1
    assert [session.released[0] for session in sessions] == [("ftp-under-test", 3)] * 3
    assert (gate.committed, gate.uncommitted, queue.not_queued) == (3, 0, 0)


def test_attached_again_after_a_detach_a_confirming_record_still_releases_its_session() -> None:
    """A server stopped while a record gathered (its hand-off timer on the old poller) and a
    release was owed (a wake-up pending): attached again, a new session is still released,
    and the record left gathering went to the writer, not lost."""
    sink = GatedSink()
    sink.go.set()
    writer = FetchWriter(sink, flush_interval_s=HOUR).start()
    gate = CommitGate(writer)
    queue = Confirmations(writer, gate)  # the old poller is never polled: its timer never fires
    first, owed, second = Session(sink), Session(sink), Session(sink)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate.start(loop)
        old = Epoll()
        queue.attach(loop, old)
        queue.expect(first)
        queue.submit(fetch(0), timeout=0)
        assert queue.took()
        queue._release(owed)  # released on the loop; the FTP thread never polled again
        queue.detach()
        old.close()
        new = Epoll()
        queue.attach(loop, new)
        queue.expect(second)
        queue.submit(fetch(1), timeout=0)
        assert queue.took()
        stop = threading.Event()
        thread = run_ftp_thread(new, stop)
        assert await asyncio.to_thread(second.done.wait, 30)
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        queue.detach()
        new.close()

    try:
        asyncio.run(main())
    finally:
        gate.stop()
        queue.detach()
        writer.close()
    assert [name for name, _ in second.released] == ["ftp-under-test"]
    assert owed.released == []  # its session closed with the old FTP thread
    assert len(first.released) == 1  # released plainly at the detach
    assert sorted(r.path for r in sink.inner.records) == [fetch(0).path, fetch(1).path]
