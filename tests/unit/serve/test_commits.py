"""An answer that confirms a delivery waits for its record's commit (group commit), on SQLite
and PostgreSQL; the other records keep their batches; a store that refuses or hangs does not
keep the answer waiting for ever."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from fleetkey.serve.commits import CommitGate
from fleetkey.store.fetches import StoreSink
from fleetkey.store.records import FetchRecord
from fleetkey.store.schema import FetchRow
from fleetkey.store.store import Store
from fleetkey.store.writer import FetchWriter
from fleetkey.testing import InMemorySink, RefusingSink

from tests.helpers import wait_until

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOUR = 3600.0  # a flush interval no test waits for: only an urgent record starts a batch


def fetch(i: int, status: int = 200) -> FetchRecord:
    return FetchRecord(
        f"/0004f2a1b2c3-license.cfg?{i}", "http", status, 452, 0.1, T0 + timedelta(seconds=i)
    )


def stored(store: Store) -> int:
    """Fetch records in the store, read on a connection of its own."""
    with store.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(FetchRow)) or 0)


class HeldSink:
    """The store's sink, but each batch waits until ``go`` is set (a slow commit)."""

    def __init__(self, inner: StoreSink | InMemorySink) -> None:
        self.inner = inner
        self.go = threading.Event()
        self.entered = threading.Event()

    def insert_batch(self, records: Sequence[FetchRecord], batch: tuple[str, int]) -> None:
        self.entered.set()
        self.go.wait(30)
        self.inner.insert_batch(records, batch)

    def batch_written(self, writer: str, seq: int) -> bool:
        return self.inner.batch_written(writer, seq)


async def answered(gate: CommitGate, record: FetchRecord) -> bool:
    future = gate.submit(record)
    assert future is not None
    return await asyncio.wait_for(future, 30)


def test_the_answer_is_released_once_its_record_and_those_before_it_are_committed(
    store: Store,
) -> None:
    writer = FetchWriter(StoreSink(store.engine), flush_interval_s=HOUR).start()
    gate = CommitGate(writer)
    seen_at_release: list[int] = []

    async def main() -> None:
        gate.start(asyncio.get_running_loop())
        for i in range(3):
            writer.submit(fetch(i, status=404))  # ordinary records: they wait for a batch
        assert await answered(gate, fetch(3))
        seen_at_release.append(stored(store))  # read the moment the answer may go

    try:
        asyncio.run(main())
    finally:
        gate.stop()
        writer.close()
    assert seen_at_release == [4]  # the confirming record and the three before it (group)
    assert (gate.committed, gate.uncommitted, gate.waiting) == (1, 0, 0)


def test_other_records_keep_their_batches_while_no_answer_waits(store: Store) -> None:
    writer = FetchWriter(StoreSink(store.engine), flush_interval_s=HOUR).start()
    gate = CommitGate(writer)

    async def main() -> None:
        gate.start(asyncio.get_running_loop())
        assert await answered(gate, fetch(0))
        for i in range(1, 4):
            writer.submit(fetch(i, status=404))
        await asyncio.sleep(0.3)  # the writer is not woken for them: nothing is written

    try:
        asyncio.run(main())
        assert stored(store) == 1
    finally:
        gate.stop()
        writer.close()
    assert stored(store) == 4  # written at close


def test_the_answer_waits_while_its_batch_is_being_committed_and_the_loop_runs_on(
    store: Store,
) -> None:
    sink = HeldSink(StoreSink(store.engine))
    writer = FetchWriter(sink, flush_interval_s=HOUR).start()
    gate = CommitGate(writer)
    ticks = 0

    async def main() -> bool:
        nonlocal ticks
        gate.start(asyncio.get_running_loop())
        future = gate.submit(fetch(0))
        assert future is not None
        await asyncio.to_thread(sink.entered.wait, 30)  # the writer is inside the commit
        for _ in range(5):  # the event loop is not blocked meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert not future.done()
        assert stored(store) == 0
        sink.go.set()
        return await asyncio.wait_for(future, 30)

    try:
        assert asyncio.run(main()) is True
        assert stored(store) == 1
    finally:
        sink.go.set()
        gate.stop()
        writer.close()
    assert ticks == 5


def test_a_store_that_refuses_sends_the_answer_at_once_uncommitted_and_loses_nothing() -> None:
    inner = InMemorySink()
    writer = FetchWriter(
        RefusingSink(inner, 3), flush_interval_s=HOUR, retry_delay_s=0.01, retry_max_s=0.05
    ).start()
    gate = CommitGate(writer)

    async def main() -> bool:
        gate.start(asyncio.get_running_loop())
        return await answered(gate, fetch(0))

    try:
        assert asyncio.run(main()) is False  # phones are served in an outage
        wait_until(lambda: writer.written == 1)  # held, then written when the store is back
    finally:
        gate.stop()
        writer.close()
    assert (gate.committed, gate.uncommitted) == (0, 1)
    assert [r.path for r in inner.records] == [fetch(0).path]


def test_an_answer_waits_no_longer_than_its_limit_for_a_store_that_hangs() -> None:
    sink = HeldSink(InMemorySink())
    writer = FetchWriter(sink, flush_interval_s=HOUR).start()
    gate = CommitGate(writer, wait_max_s=0.2)

    async def main() -> tuple[bool, float]:
        gate.start(asyncio.get_running_loop())
        began = asyncio.get_running_loop().time()
        committed = await answered(gate, fetch(0))
        return committed, asyncio.get_running_loop().time() - began

    try:
        committed, waited = asyncio.run(main())
    finally:
        sink.go.set()
        gate.stop()
        writer.close()
    assert committed is False
    assert 0.2 <= waited < 10  # the limit, plus at most a sweep (every second)
    assert gate.uncommitted == 1


def test_without_a_running_loop_the_record_is_queued_and_nothing_waits() -> None:
    sink = InMemorySink()
    writer = FetchWriter(sink, flush_interval_s=HOUR).start()
    gate = CommitGate(writer)
    try:
        assert gate.submit(fetch(0)) is None
        wait_until(lambda: writer.written == 1)  # still flushed at once
    finally:
        writer.close()


@pytest.mark.parametrize("answers", [1, 50])
def test_answers_waiting_together_share_batches_in_ticket_order(answers: int) -> None:
    sink = InMemorySink()
    writer = FetchWriter(sink, flush_interval_s=HOUR).start()
    gate = CommitGate(writer)
    order: list[int] = []

    async def one(i: int) -> None:
        future = gate.submit(fetch(i))
        assert future is not None
        assert await asyncio.wait_for(future, 30)
        assert i < len(sink.records)  # its record is in when it is released
        order.append(i)

    async def main() -> None:
        gate.start(asyncio.get_running_loop())
        await asyncio.gather(*(one(i) for i in range(answers)))

    try:
        asyncio.run(main())
    finally:
        gate.stop()
        writer.close()
    assert sorted(order) == list(range(answers))
    assert len(sink.batches) <= answers  # grouped: never more batches than answers
    assert gate.committed == answers


class TimedSink(InMemorySink):
    """An in-memory sink that notes when each batch began (time.monotonic())."""

    def __init__(self) -> None:
        super().__init__()
        self.began: list[float] = []

    def insert_batch(self, records: Sequence[FetchRecord], batch: tuple[str, int]) -> None:
        self.began.append(time.monotonic())
        super().insert_batch(records, batch)


def test_urgent_batches_begin_no_closer_together_than_the_group_window() -> None:
    sink = TimedSink()
    window = 0.25
    writer = FetchWriter(sink, flush_interval_s=HOUR, group_s=window).start()
    gate = CommitGate(writer)
    answers = 8

    async def one(i: int) -> bool:
        await asyncio.sleep(0.02 * i)  # answers one after another, as a storm's come
        return await answered(gate, fetch(i))

    async def main() -> list[bool]:
        gate.start(asyncio.get_running_loop())
        return list(await asyncio.gather(*(one(i) for i in range(answers))))

    try:
        committed = asyncio.run(main())
    finally:
        gate.stop()
        writer.close()
    assert committed == [True] * answers
    assert len(sink.records) == answers
    gaps = [later - earlier for earlier, later in itertools.pairwise(sink.began)]
    assert all(gap >= window * 0.95 for gap in gaps), gaps  # never a commit per answer
    assert len(sink.began) < answers


def test_the_first_urgent_record_is_committed_at_once_and_close_ends_a_window() -> None:
    sink = InMemorySink()
    writer = FetchWriter(sink, flush_interval_s=HOUR, group_s=HOUR).start()
    gate = CommitGate(writer)

    async def main() -> asyncio.Future[bool] | None:
        gate.start(asyncio.get_running_loop())
        assert await answered(gate, fetch(0))  # no batch before it: nothing to wait for
        second = gate.submit(fetch(1))  # inside the window: it waits for the next batch
        await asyncio.sleep(0.2)
        return second

    try:
        second = asyncio.run(main())
        assert second is not None
        assert len(sink.records) == 1
    finally:
        gate.stop()
        writer.close(timeout=30)  # the window is an hour: close does not wait it out
    assert not writer.alive
    assert [r.path for r in sink.records] == [fetch(0).path, fetch(1).path]


def test_enough_urgent_records_waiting_end_the_window_early() -> None:
    sink = InMemorySink()
    writer = FetchWriter(sink, flush_interval_s=HOUR, group_s=HOUR, group_urgent=4).start()
    gate = CommitGate(writer)

    async def main() -> list[bool]:
        gate.start(asyncio.get_running_loop())
        assert await answered(gate, fetch(0))
        return list(await asyncio.gather(*(answered(gate, fetch(i)) for i in range(1, 5))))

    try:
        assert asyncio.run(main()) == [True] * 4  # four waiting: not an hour
    finally:
        gate.stop()
        writer.close()
    assert (len(sink.batches), len(sink.records)) == (2, 5)
