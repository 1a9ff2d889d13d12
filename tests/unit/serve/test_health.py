"""What /healthz concludes (serve/health.py): each fault a reason of its own, and the database
question asked for real, once at a time, with its timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import event

from fleetkey.serve.health import DatabaseAnswer, DatabaseProbe, QueueState, reasons
from fleetkey.store.fetches import RecordSink
from fleetkey.store.records import FetchRecord
from fleetkey.store.store import Store
from fleetkey.store.writer import FetchWriter

OK = DatabaseAnswer(True, 1.0, None)
ROOMY = QueueState(10, 1000, 900, True, None, None)


class TestReasons:
    def test_a_healthy_server_has_none(self) -> None:
        assert reasons(OK, ROOMY, 0.4) == []

    def test_each_fault_is_named(self) -> None:
        down = DatabaseAnswer(False, None, "OperationalError: connection refused")
        queue = QueueState(950, 1000, 900, False, "2026-11-30T07:00:00+00:00", "2026-…")
        assert reasons(down, queue, 7.25) == [
            "database: OperationalError: connection refused",
            "record writer: not running (answers could not be recorded)",
            "record queue: 950 of 1,000 records waiting (phones are answered busy from 900)",
            "record writer: the store refuses fetch records since 2026-11-30T07:00:00+00:00",
            "record writer: a batch has waited for the store since 2026-…",
            "posted view: last read from the store 7.2 s ago",
        ]

    def test_a_view_never_read_is_a_reason(self) -> None:
        assert reasons(OK, ROOMY, None) == ["posted view: never read from the store"]

    def test_the_queue_at_its_busy_mark_is_a_reason_and_just_below_is_not(self) -> None:
        at = QueueState(900, 1000, 900, True, None, None)
        below = QueueState(899, 1000, 900, True, None, None)
        assert len(reasons(OK, at, 0.1)) == 1
        assert reasons(OK, below, 0.1) == []


def sqlite_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'fleetkey.db'}")
    store.upgrade()
    return store


class TestDatabaseProbe:
    def test_a_store_that_answers_is_ok_with_its_latency(self, tmp_path: Path) -> None:
        store = sqlite_store(tmp_path)
        answer = DatabaseProbe(store).check()
        store.close()
        assert answer.ok
        assert answer.error is None
        assert answer.latency_ms is not None
        assert answer.latency_ms >= 0

    def test_a_query_that_hangs_is_a_timeout_and_only_one_is_in_flight(
        self, tmp_path: Path
    ) -> None:
        store = sqlite_store(tmp_path)
        release = threading.Event()
        started: list[float] = []

        def hang(*_: object) -> None:  # every statement waits until released
            started.append(time.monotonic())
            release.wait(10)

        event.listen(store.engine, "before_cursor_execute", hang)
        probe = DatabaseProbe(store, timeout_s=0.3, fresh_s=0)
        try:
            began = time.monotonic()
            first = probe.check()
            second = probe.check()  # the first query still hangs: not asked again
            took = time.monotonic() - began
        finally:
            release.set()
        assert not first.ok
        assert first.error is not None
        assert first.error.startswith("no answer within 0.3 s")
        assert not second.ok
        assert len(started) == 1
        assert took < 1.0  # the second check waits only what the first query had left
        time.sleep(0.1)
        event.remove(store.engine, "before_cursor_execute", hang)
        assert probe.check().ok
        store.close()

    def test_a_closed_database_is_said_with_its_error(self, tmp_path: Path) -> None:
        store = Store(f"sqlite:///{tmp_path / 'missing' / 'fleetkey.db'}")  # no such directory
        answer = DatabaseProbe(store).check()
        store.close()
        assert not answer.ok
        assert answer.error is not None
        assert answer.error.startswith("OperationalError: ")

    def test_a_bug_in_the_question_is_logged_and_not_healthy(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = sqlite_store(tmp_path)

        def bug(*_: object) -> None:
            raise RuntimeError("a bug")

        event.listen(store.engine, "before_cursor_execute", bug)
        answer = DatabaseProbe(store).check()
        store.close()
        assert answer == DatabaseAnswer(False, None, "internal error: RuntimeError: a bug")
        assert "failed unexpectedly" in caplog.text
        assert "Traceback" in caplog.text

    def test_an_answer_is_reused_while_fresh(self, tmp_path: Path) -> None:
        store = sqlite_store(tmp_path)
        asked: list[int] = []
        event.listen(store.engine, "before_cursor_execute", lambda *_: asked.append(1))
        probe = DatabaseProbe(store, fresh_s=60)
        assert probe.check() == probe.check()
        store.close()
        assert len(asked) == 1


class Unused:
    """A sink no record reaches (the writer is started and closed empty)."""

    def insert_batch(self, records: Sequence[FetchRecord], batch: tuple[str, int]) -> None:
        raise AssertionError("no record was submitted")

    def batch_written(self, writer: str, seq: int) -> bool:
        return False


def test_the_writer_is_alive_from_start_to_close() -> None:
    sink: RecordSink = Unused()
    writer = FetchWriter(sink)
    assert not writer.alive
    writer.start()
    assert writer.alive
    assert writer.capacity > 0
    writer.close()
    assert not writer.alive
