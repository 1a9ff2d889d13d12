"""The fetch-record writer against sinks in memory: batches in order, each written once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleetkey.store.records import FetchRecord
from fleetkey.store.writer import FetchWriter
from fleetkey.testing import InMemorySink, RefusingSink

from tests.helpers import wait_until

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def fetch(i: int) -> FetchRecord:
    return FetchRecord(f"/r{i}", "http", 200, i, 0.1, T0 + timedelta(microseconds=i))


def test_every_record_reaches_the_sink_once_in_order_in_numbered_batches() -> None:
    sink = InMemorySink()
    with FetchWriter(sink, batch_size=100, flush_interval_s=3600) as writer:
        for i in range(250):
            writer.submit(fetch(i))
    assert [r.bytes for r in sink.records] == list(range(250))
    # how many batches depends on when the thread woke (a full batch wakes it): at least three,
    # numbered in order
    seqs = [seq for _, seq in sink.batches]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= 3
    assert {name for name, _ in sink.batches} == {writer.name}
    assert (writer.written, writer.batches, writer.dropped) == (250, len(seqs), 0)


def test_a_batch_whose_commit_was_lost_is_not_written_again() -> None:
    """The store committed and the connection failed before saying so: the writer asks
    whether the batch is in before writing it again."""
    sink = InMemorySink()
    flaky = RefusingSink(sink, 0, lost_commits=1)
    writer = FetchWriter(flaky, flush_interval_s=0.02, retry_delay_s=0.01).start()
    for i in range(10):
        writer.submit(fetch(i))
    wait_until(lambda: writer.depth == 0 and writer.failing_since is None)
    writer.close()
    assert [r.bytes for r in sink.records] == list(range(10))
    assert len(sink.batches) == 1
    assert (flaky.calls, writer.episodes, writer.written) == (1, 1, 10)


def test_a_store_away_holds_the_records_and_writes_them_when_it_is_back() -> None:
    sink = InMemorySink()
    away = RefusingSink(sink, 3)
    writer = FetchWriter(away, flush_interval_s=0.02, retry_delay_s=0.01).start()
    for i in range(5):
        writer.submit(fetch(i))
    wait_until(lambda: writer.written == 5)
    writer.close()
    assert [r.bytes for r in sink.records] == list(range(5))
    assert (away.calls, writer.episodes, writer.dropped) == (4, 1, 0)
    assert writer.last_error == ""  # recovered: nothing failing now
