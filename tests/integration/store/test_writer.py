"""The fetch-record writer survives a store that refuses: nothing lost, nothing twice, in order."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from fleetkey.store.database import default_url
from fleetkey.store.fetches import StoreSink
from fleetkey.store.held import record_json
from fleetkey.store.records import FetchRecord
from fleetkey.store.schema import FetchRow
from fleetkey.store.store import Store
from fleetkey.store.texts import path_of
from fleetkey.store.writer import FetchWriter
from fleetkey.testing import RefusingSink

from tests.helpers import Fleetkey, wait_until
from tests.pg import PostgresServer

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def fetch(i: int) -> FetchRecord:
    return FetchRecord(
        path=f"/r{i}", protocol="http", status=200, bytes=i, duration_ms=0.1,
        at=T0 + timedelta(microseconds=i), mac=f"0004f2{i % 50:06x}",
    )  # fmt: skip


def written(store: Store) -> list[int]:
    """The numbers of the stored records, in the order their rows were inserted."""
    with store.transaction() as session:
        paths = select(path_of.text).join(FetchRow, path_of.id == FetchRow.path_id)
        return [int(p[2:]) for p in session.scalars(paths.order_by(FetchRow.id))]


def assert_once_each_and_in_order(store: Store, count: int, batch_size: int) -> None:
    """Every record 0..count-1 stored once, and no record after one submitted a whole batch
    later (within a batch rows are sorted by MAC for the index, so batches keep the order)."""
    order = written(store)
    assert sorted(order) == list(range(count))
    position = {number: n for n, number in enumerate(order)}
    later = [position[n] for n in range(count)]
    for n in range(count - batch_size):
        assert later[n] < min(later[n + batch_size :]), f"record {n} written too late"


def refusing(store: Store, refusals: int, lost_commits: int = 0) -> RefusingSink:
    """The real store behind a sink that refuses ``refusals`` batches with an OperationalError
    (as a locked or unreachable database does), and then perhaps loses a commit."""
    away = OperationalError("INSERT", {}, Exception("database is locked"))
    return RefusingSink(StoreSink(store.engine), refusals, lost_commits=lost_commits, error=away)


def test_a_store_that_refuses_for_a_while_gets_every_record_once_and_in_order(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Four refusals, then a batch committed whose COMMIT still failed: written once."""
    sink = refusing(store, 4, lost_commits=1)
    writer = FetchWriter(
        sink, batch_size=100, flush_interval_s=0.05, retry_delay_s=0.02, retry_max_s=0.1
    ).start()
    with caplog.at_level(logging.WARNING, logger="fleetkey.store.writer"):
        for i in range(1000):
            writer.submit(fetch(i), timeout=0)
            if i % 100 == 0:
                time.sleep(0.03)
        wait_until(lambda: writer.written == 1000 and writer.depth == 0)
        writer.close()
    assert_once_each_and_in_order(store, 1000, batch_size=100)
    assert (writer.episodes, writer.dropped, writer.failing_since) == (1, 0, None)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # one line when the episode starts, one when it ends
    assert "cannot be written (OperationalError" in messages[0]
    assert "written again after" in messages[1]


def test_records_held_past_the_spill_mark_go_to_disk_and_come_back_at_the_next_start(
    store: Store, tmp_path: Path
) -> None:
    spill = tmp_path / "fetches-held.jsonl"
    down = FetchWriter(
        refusing(store, 10**9), batch_size=50, flush_interval_s=0.02, spill=spill, spill_at=200,
        retry_delay_s=0.01, retry_max_s=0.02,
    ).start()  # fmt: skip
    for i in range(1000):
        down.submit(fetch(i), timeout=0)
    wait_until(lambda: down.spilled > 0)
    assert down.depth <= 1000 - down.spilled
    down.close()  # the store still refuses: everything held is on the spill file
    assert (down.spilled, down.dropped, down.held) == (1000, 0, 1000)
    with FetchWriter(StoreSink(store.engine), spill=spill, flush_interval_s=0.02) as up:
        up.submit(fetch(1000))
        wait_until(lambda: up.written == 1001)
    assert_once_each_and_in_order(store, 1001, batch_size=50)
    assert not spill.exists()


def test_a_spill_file_written_once_already_is_not_written_twice(
    store: Store, tmp_path: Path
) -> None:
    spill = tmp_path / "held.jsonl"
    down = FetchWriter(refusing(store, 10**9), spill=spill, retry_delay_s=0.01).start()
    for i in range(10):
        down.submit(fetch(i))
    down.close()
    copy = spill.read_bytes()
    with FetchWriter(StoreSink(store.engine), spill=spill):
        pass
    spill.write_bytes(copy)  # as if the process died before removing the file
    with FetchWriter(StoreSink(store.engine), spill=spill):
        pass
    assert sorted(written(store)) == list(range(10))


@pytest.mark.postgres
def test_a_postgresql_outage_of_10_s_loses_no_record() -> None:
    server = PostgresServer(durable=True).start()  # a crash keeps what was committed
    store = Store(server.create_database())
    store.upgrade()
    writer = FetchWriter(
        StoreSink(store.engine), batch_size=500, flush_interval_s=0.2, retry_max_s=1.0
    ).start()
    stop = threading.Event()
    sent = 0

    def traffic() -> None:
        nonlocal sent
        while not stop.is_set():
            writer.submit(fetch(sent), timeout=0)
            sent += 1
            time.sleep(0.001)

    producer = threading.Thread(target=traffic)
    try:
        producer.start()
        time.sleep(1)
        server.pause()
        time.sleep(10)
        assert writer.failing_since is not None  # it noticed, and went on taking records
        server.resume()
        time.sleep(2)
        stop.set()
        producer.join()
        wait_until(lambda: writer.depth == 0 and writer.written == sent, 30)
        writer.close()
        assert writer.episodes == 1
        assert writer.dropped == 0
        assert_once_each_and_in_order(store, sent, batch_size=500)
    finally:
        stop.set()
        store.close()
        server.stop()


def test_a_fallback_file_is_replayed_in_order_and_only_once(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    fallback = initialized / "fetches-unwritten.jsonl"
    fallback.write_text("".join(json.dumps(record_json(fetch(i))) + "\n" for i in range(12_000)))
    first = json.loads(fleetkey("fetches", "replay", str(fallback), "--json").stdout)
    assert (first["written"], first["already"]) == (12_000, 0)
    again = fleetkey("fetches", "replay", str(fallback)).stdout
    assert "0 fetch records written, 12000 were already in the store" in again
    store = Store(default_url(initialized))
    try:
        assert_once_each_and_in_order(store, 12_000, batch_size=5000)
    finally:
        store.close()


def test_a_file_that_is_not_fetch_records_is_refused_with_its_line(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    bad = initialized / "bad.jsonl"
    good = "".join(json.dumps(record_json(fetch(i))) + "\n" for i in range(6000))
    bad.write_text(good + '{"path": "/x"}\n')  # a whole batch good, then one that is not
    result = fleetkey("fetches", "replay", str(bad), code=1)
    assert f"{bad} line 6001: not a fetch record" in result.stderr
    store = Store(default_url(initialized))
    try:
        assert written(store) == []  # nothing written: the file is refused whole
    finally:
        store.close()


def test_a_row_the_store_refuses_for_its_content_is_set_aside_and_the_rest_written(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad row used to hold its batch, and every later record behind it, for ever."""
    fallback = tmp_path / "fetches-unwritten.jsonl"
    bad = fetch(500)._replace(path=None)  # NOT NULL on both backends: refused for what it holds
    with caplog.at_level(logging.ERROR, logger="fleetkey.store.writer"):
        writer = FetchWriter(StoreSink(store.engine), batch_size=1000, fallback=fallback).start()
        for i in range(1000):
            writer.submit(bad if i == 500 else fetch(i), timeout=0)
        wait_until(lambda: writer.written == 999 and writer.depth == 0)
        for i in range(1000, 1100):  # later records are not held up behind it
            writer.submit(fetch(i), timeout=0)
        wait_until(lambda: writer.written == 1099)
        writer.close()
    assert sorted(written(store)) == [i for i in range(1100) if i != 500]
    assert (writer.rejected, writer.dropped, writer.episodes) == (1, 1, 0)
    rejected = tmp_path / "fetches-rejected.jsonl"
    assert [json.loads(line)["bytes"] for line in rejected.read_text().splitlines()] == [500]
    assert not fallback.exists()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "refused 1 fetch records for what they hold (IntegrityError" in messages[0]
    assert f"kept in {rejected}" in messages[0]


def test_a_damaged_spill_file_is_set_aside_and_the_writer_goes_on(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spill = tmp_path / "fetches-held.jsonl"
    head = json.dumps({"batch": 1, "writer": "w", "records": 2}) + "\n"
    good = json.dumps(record_json(fetch(1))) + "\n"
    spill.write_bytes((head + good).encode() + b"\xff not json\n" + (head + good).encode())
    with (
        caplog.at_level(logging.ERROR, logger="fleetkey.store.writer"),
        FetchWriter(StoreSink(store.engine), spill=spill, flush_interval_s=0.02) as writer,
    ):
        writer.submit(fetch(2))
        wait_until(lambda: writer.written == 1)
    assert written(store) == [2]
    assert not spill.exists()
    aside = list(tmp_path.glob("fetches-held.jsonl.damaged-*"))
    assert len(aside) == 1
    assert any(f"{spill} line 3: not a fetch record" in r.getMessage() for r in caplog.records)


def test_an_unexpected_error_does_not_end_the_writer(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    once_a_bug = RefusingSink(StoreSink(store.engine), 1, error=KeyError("a bug"))
    with caplog.at_level(logging.ERROR, logger="fleetkey.store.writer"):
        writer = FetchWriter(
            once_a_bug, flush_interval_s=0.02, retry_delay_s=0.02, retry_max_s=0.05
        ).start()
        for i in range(10):
            writer.submit(fetch(i), timeout=0)
        wait_until(lambda: writer.written == 10 and writer.failing_since is None)
        writer.close()
    assert sorted(written(store)) == list(range(10))
    assert writer.failures == 1
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)
