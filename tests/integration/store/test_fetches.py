"""The fetch-record writer on both backends: batches, flushing, back-pressure, no silent loss."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetkey.errors import QueueFullError
from fleetkey.store import fetches, phonestate, texts
from fleetkey.store.fetches import StoreSink
from fleetkey.store.records import FetchRecord
from fleetkey.store.store import Store
from fleetkey.store.writer import FetchWriter

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def fetch(i: int, mac: str = "0004f2000001") -> FetchRecord:
    return FetchRecord(
        path=f"/{mac}-license.cfg",
        protocol="http",
        status=200,
        bytes=450,
        duration_ms=1.5,
        at=T0 + timedelta(milliseconds=i),
        mac=mac,
        digest="ab" * 32,
        remote_addr="127.0.0.2",
        user_agent="FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477",
    )


def stored(store: Store, **filters: object) -> list[FetchRecord]:
    with store.transaction() as session:
        return fetches.query(session, limit=None, **filters)  # type: ignore[arg-type]


def test_every_submitted_record_is_written_at_close(store: Store) -> None:
    with FetchWriter(StoreSink(store.engine), batch_size=700) as writer:
        for i in range(5000):
            writer.submit(fetch(i, mac=f"0004f2{i % 7:06x}"))
    assert writer.written == 5000
    assert writer.dropped == 0
    assert writer.batches >= 8
    assert len(stored(store)) == 5000
    assert stored(store, mac="0004f2000003")[0] == fetch(3, mac="0004f2000003")


def test_records_are_flushed_within_the_interval(store: Store) -> None:
    writer = FetchWriter(StoreSink(store.engine), flush_interval_s=0.2).start()
    try:
        writer.submit(fetch(1))
        deadline = time.monotonic() + 5
        while not stored(store) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(stored(store)) == 1
        assert writer.depth == 0
    finally:
        writer.close()


class GatedSink(StoreSink):
    """The store, writing nothing until ``gate`` is set (a store that has stalled)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.gate = threading.Event()

    def insert_batch(self, records: Sequence[FetchRecord], batch: tuple[str, int]) -> None:
        self.gate.wait(10)
        super().insert_batch(records, batch)


def test_full_queue_pushes_back_and_loses_nothing(store: Store) -> None:
    sink = GatedSink(store)
    writer = FetchWriter(sink, capacity=3, batch_size=1, flush_interval_s=0.05).start()
    submitted, refused = 0, None
    for i in range(10):
        try:
            writer.submit(fetch(i), timeout=0.2)
        except QueueFullError as exc:
            refused = exc
            break
        submitted += 1
    assert refused is not None
    assert "queue full (3 waiting)" in str(refused)
    assert writer.depth == 3
    sink.gate.set()
    writer.close()
    assert writer.written == submitted
    assert len(stored(store)) == submitted


def test_refused_records_go_to_the_fallback_file_and_are_counted(
    store_url: str, tmp_path: Path
) -> None:
    unmigrated = Store(store_url)  # no tables: every insert fails
    fallback = tmp_path / "unwritten.jsonl"
    with FetchWriter(StoreSink(unmigrated.engine), fallback=fallback, retry_delay_s=0.01) as writer:
        writer.submit(fetch(1))
        writer.submit(fetch(2))
    assert (writer.written, writer.dropped) == (0, 2)
    lines = [json.loads(line) for line in fallback.read_text().splitlines()]
    assert [line["at"] for line in lines] == [fetch(1).at.isoformat(), fetch(2).at.isoformat()]
    unmigrated.close()


def test_submit_before_start_is_an_error(store: Store) -> None:
    with pytest.raises(Exception, match="not running"):
        FetchWriter(StoreSink(store.engine)).submit(fetch(1))


def test_since_filter(store: Store) -> None:
    fetches.insert_records(store.engine, [fetch(0), fetch(5000)])
    assert len(stored(store, since=T0 + timedelta(seconds=1))) == 1


def test_fetch_times_keep_every_microsecond_and_compare_exactly(store: Store) -> None:
    moments = [
        T0 + timedelta(microseconds=1),
        T0 + timedelta(microseconds=999_999),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),  # before the epoch
        datetime(2106, 2, 7, 6, 28, 16, 123_456, tzinfo=UTC),  # past 32-bit seconds
    ]
    fetches.insert_records(store.engine, [fetch(0)._replace(at=at) for at in moments])
    assert sorted(r.at for r in stored(store)) == sorted(moments)
    # the bound of ``since`` is inclusive, to the microsecond
    assert [r.at for r in stored(store, since=moments[1])] == [moments[1], moments[3]]
    assert [r.at for r in stored(store, since=moments[1] + timedelta(microseconds=1))] == [
        moments[3]
    ]


@pytest.mark.postgres
def test_two_writers_on_postgresql_neither_lose_nor_duplicate(postgres_server) -> None:  # type: ignore[no-untyped-def]
    url = postgres_server.create_database()
    stores = [Store(url), Store(url)]
    stores[0].upgrade()

    def write(store: Store, mac: str) -> None:
        with FetchWriter(StoreSink(store.engine), batch_size=250) as writer:
            for i in range(3000):
                writer.submit(fetch(i, mac=mac))

    threads = [
        threading.Thread(target=write, args=(s, f"0004f2{n:06x}")) for n, s in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = stored(stores[0])
    assert len(records) == 6000
    assert len({(r.mac, r.at) for r in records}) == 6000
    for store in stores:
        store.close()


def test_a_batch_mixing_phones_no_phone_and_equal_times_is_written_whole(store: Store) -> None:
    """Rows are sorted by (MAC, time) before the insert: ties and MAC-less rows included."""
    same = fetch(0)
    records = [
        same,
        same._replace(digest=None),  # equal MAC and time: the tie must not compare the rest
        fetch(5)._replace(mac=None, path="/master.cfg", user_agent=None),
        fetch(1, mac="0004f2000000"),
        fetch(2)._replace(mac=None, path="/000000000000-license.cfg"),
    ]
    fetches.insert_records(store.engine, records)
    written = stored(store)
    assert sorted(written, key=lambda r: (r.at, r.path, r.digest or "")) == sorted(
        records, key=lambda r: (r.at, r.path, r.digest or "")
    )
    assert [r.digest for r in stored(store, mac=same.mac)] == [same.digest, None]


def test_a_phones_records_are_found_day_by_day_across_midnight_and_bounds(store: Store) -> None:
    midnight = datetime(2026, 3, 3, tzinfo=UTC)
    moments = [midnight + timedelta(hours=h) for h in (-49, -25, -1, 0, 0.5, 23, 50)]
    mac = "0004f2000001"
    fetches.insert_records(
        store.engine,
        [fetch(0, mac)._replace(at=at) for at in moments]
        + [fetch(0, "0004f2000002")._replace(at=at) for at in moments],
    )
    with store.transaction() as session:
        every, left = fetches.newest(session, fetches.FetchFilter(mac=mac), None)
        since = fetches.newest(session, fetches.FetchFilter(mac=mac, since=midnight), None)[0]
        window = fetches.FetchFilter(mac=mac, since=moments[1], until=midnight)
        between = fetches.newest(session, window, None)[0]
        page, older = fetches.newest(session, fetches.FetchFilter(mac=mac), 2)
        none = fetches.newest(session, fetches.FetchFilter(mac="0004f2000009"), None)[0]
    assert [r.at for r in every] == moments[::-1]
    assert left == 0
    assert all(r.mac == mac for r in every)
    assert [r.at for r in since] == moments[:2:-1]
    assert [r.at for r in between] == [moments[2], moments[1]]
    assert ([r.at for r in page], older) == (moments[:-3:-1], 5)
    assert none == []


def test_a_refused_batch_leaves_no_text_behind_and_later_records_keep_their_own(
    store: Store,
) -> None:
    """New paths and User-Agents go in with their batch: a batch refused takes its texts with
    it, and the ids its transaction had given them are not reused for other texts."""
    engine = store.engine
    first = fetch(1)._replace(user_agent="FileTransport PolycomVVX-VVX_400-UA/5.9.1.0001")
    refused = fetch(2)._replace(path=None)  # NOT NULL on both backends: the batch is refused
    with pytest.raises(Exception, match=r"(?i)null"):
        fetches.insert_records(engine, [first, refused], ("w", 1))
    assert stored(store) == []
    other = fetch(3)._replace(user_agent="FileTransport PolycomVVX-VVX_600-UA/6.0.0.0002")
    fetches.insert_records(engine, [other], ("w", 2))  # may take the refused text's id
    fetches.insert_records(engine, [first], ("w", 3))
    assert {(r.at, r.user_agent) for r in stored(store)} == {
        (other.at, other.user_agent),
        (first.at, first.user_agent),
    }


def test_texts_stored_earlier_or_twice_in_one_call_keep_one_id_each(store: Store) -> None:
    """A text another server stored first is not inserted again but looked up; one named
    twice is stored once; each id names its own text."""
    with store.engine.begin() as connection:
        earlier = texts.store(connection, ["/a.cfg", "/b.cfg"])
    with store.engine.begin() as connection:
        both = texts.store(connection, ["/b.cfg", "/c.cfg", "/c.cfg", "/a.cfg"])
    assert set(both) == {"/a.cfg", "/b.cfg", "/c.cfg"}
    assert {t: both[t] for t in earlier} == earlier
    assert len(set(both.values())) == 3
    with store.engine.connect() as connection:
        assert texts.lookup(connection, list(both)) == both


def test_a_batch_larger_than_one_statement_is_written_whole_with_every_row_its_own(
    store: Store,
) -> None:
    """On SQLite a batch goes in multi-row statements of power-of-two sizes (300 records:
    256 + 32 + 8 + 4 rows): every record keeps its own values, none is lost or doubled, and
    each phone's state is its newest record (a multi-row upsert of 150 phones)."""
    records = [
        fetch(i, mac=f"0004f2{i % 150:06x}")._replace(bytes=i, status=200 + i % 7)
        for i in range(300)
    ]
    fetches.insert_records(store.engine, records)
    written = stored(store)
    assert sorted(written, key=lambda r: r.bytes) == records
    with store.transaction() as session:
        for mac in ("0004f2000000", "0004f200004a", "0004f2000095"):
            newest = max((r for r in records if r.mac == mac), key=lambda r: r.at)
            seen = phonestate.seen(session, mac)
            assert seen is not None
            assert seen.at == newest.at
