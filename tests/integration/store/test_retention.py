"""Fetch history that ages out, on both backends: exactly the old records go, in small batches,
after their days are rolled up per site; the roll-ups keep the totals; export and prune refuse
bad input and change nothing."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from fleetkey.cli import exporting
from fleetkey.clock import FixedClock
from fleetkey.errors import InputError
from fleetkey.store import fetches, pruner, retention
from fleetkey.store.store import Store

from tests.fetchtraffic import NOW, PATHS, PHONES, SITES, counts, traffic, with_phones
from tests.helpers import Fleetkey


def test_retention_removes_exactly_the_old_records_and_the_roll_ups_keep_their_totals(
    store: Store,
) -> None:
    with_phones(store)
    written = traffic(range(0, 12))
    fetches.insert_records(store.engine, written)
    cutoff = datetime(2026, 6, 3, tzinfo=UTC)  # midnight, 7 whole days back
    old = [r for r in written if r.at < cutoff]
    sleeps: list[float] = []
    done = retention.prune(store.engine, NOW, 7, batch=4, sleep=sleeps.append)
    assert done.cutoff == cutoff
    assert done.deleted == len(old)
    with store.transaction() as session:
        kept = fetches.query(session, limit=None)
        days = retention.fetch_days(session)
    assert sorted(r.at for r in kept) == sorted(r.at for r in written if r.at >= cutoff)
    assert sum(d.requests for d in days) == len(old)
    assert sum(d.bytes for d in days) == sum(r.bytes for r in old)
    assert sum(sum(d.by_answer.values()) for d in days) == len(old)
    assert sum(d.boots for d in days) == sum(r.path == PATHS[0] for r in old)
    assert {d.site for d in days} == {*SITES, retention.NO_SITE}
    if store.engine.dialect.name == "postgresql":  # each day's partition dropped whole
        assert done.partitions == len(done.days) == 4
    else:
        assert done.batches > len(done.days)  # several small batches a day
        assert len(sleeps) == done.batches - len(done.days)  # a pause between two batches
    one = next(d for d in days if d.day == date(2026, 6, 1) and d.site == SITES[0])
    expected = [r for r in old if r.at.date() == one.day and PHONES.get(r.mac or "") == SITES[0]]
    assert one.requests == len(expected)
    assert one.phones == len({r.mac for r in expected})
    durations = sorted(r.duration_ms for r in expected)
    assert one.p50_ms == durations[(len(durations) + 1) // 2 - 1]
    assert one.p99_ms == durations[-1]


def test_late_records_of_a_rolled_up_day_are_added_once(store: Store) -> None:
    with_phones(store)
    fetches.insert_records(store.engine, traffic(range(9, 10)))
    retention.prune(store.engine, NOW, 7)
    assert counts(store) == (0, 9)
    late = traffic(range(9, 10), per_day=2)
    fetches.insert_records(store.engine, late)
    retention.prune(store.engine, NOW, 7)
    retention.prune(store.engine, NOW, 7)
    assert counts(store) == (0, 11)


def test_retention_zero_keeps_every_record_and_a_negative_one_is_refused(store: Store) -> None:
    fetches.insert_records(store.engine, traffic(range(100, 102)))
    assert retention.prune(store.engine, NOW, 0).deleted == 0
    with pytest.raises(InputError, match=r"fetch retention -1 days is negative: expected 0"):
        retention.prune(store.engine, NOW, -1)
    assert counts(store) == (18, 0)


@pytest.fixture
def cli_store(
    store: Store, store_url: str, initialized: Path, monkeypatch: pytest.MonkeyPatch
) -> Store:
    monkeypatch.setenv("FLEETKEY_DB", store_url)
    return store


def test_prune_and_days_commands(cli_store: Store, fleetkey: Fleetkey) -> None:
    recent = datetime.now(UTC)
    records = [r._replace(at=r.at - NOW + recent) for r in traffic(range(0, 5), per_day=4)]
    fetches.insert_records(cli_store.engine, records)
    done = json.loads(fleetkey("fetches", "prune", "--retention", "2", "--json").stdout)
    assert done["deleted"] == sum(r.at.date() < recent.date() - timedelta(days=2) for r in records)
    days = json.loads(fleetkey("fetches", "days", "--json").stdout)
    assert sum(d["requests"] for d in days) == done["deleted"]
    table = fleetkey("fetches", "days").stdout
    assert "requests" in table
    assert days[0]["day"] in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["fetches", "prune", "--retention", "-1"],
            "Invalid value for '--retention': -1 is not in the range x>=0.",
        ),
        (
            ["fetches", "prune", "--retention", "ninety"],
            "Invalid value for '--retention': 'ninety' is not a valid integer range.",
        ),
        (
            ["fetches", "export", "--since", "2026-13-01", "--until", "2026-06-01"],
            "Invalid value for '--since': '2026-13-01' is neither an ISO date or date-time "
            "(2026-05-01, 2026-05-01T02:00) nor a time ago (30s, 15m, 2h, 7d; 0s is now)",
        ),
        (
            ["fetches", "export", "--since", "2026-06-01", "--until", "yesterday"],
            "Invalid value for '--until': 'yesterday' is neither an ISO date or date-time "
            "(2026-05-01, 2026-05-01T02:00) nor a time ago (30s, 15m, 2h, 7d; 0s is now)",
        ),
        (
            ["fetches", "export", "--since", "2026-06-02", "--until", "2026-06-01"],
            "--since 2026-06-02 is not before --until 2026-06-01",
        ),
        (["fetches", "export", "--until", "2026-06-01"], "Missing option '--since'."),
        (  # the CLI's times have no `now`: `0s` is, and the error says so
            ["fetches", "export", "--since", "7d", "--until", "now"],
            "Invalid value for '--until': 'now' is neither an ISO date or date-time "
            "(2026-05-01, 2026-05-01T02:00) nor a time ago (30s, 15m, 2h, 7d; 0s is now)",
        ),
        (
            ["fetches", "export", "--since", "1d", "--until", "0s", "--format", "xml"],
            "Invalid value for '--format': 'xml' is not one of 'csv', 'parquet'.",
        ),
        (["fetches", "days", "--since", "June"], "Invalid value for '--since': 'June' does not"),
        (
            ["serve", "--fetch-retention", "-7"],
            "Invalid value for '--fetch-retention': -7 is not in the range x>=0.",
        ),
    ],
)
def test_bad_option_values_are_usage_errors_that_change_nothing(
    cli_store: Store, fleetkey: Fleetkey, tmp_path: Path, args: list[str], message: str
) -> None:
    fetches.insert_records(cli_store.engine, traffic(range(100, 102)))
    out = tmp_path / "out.csv"
    failed = fleetkey(*args, "--output", str(out), code=2) if "export" in args else None
    failed = failed or fleetkey(*args, code=2)
    assert message in failed.stderr.replace("\n", " ").replace("  ", " ")
    assert counts(cli_store) == (18, 0)
    assert not out.exists()


def test_export_writes_exactly_the_records_of_the_range_as_csv(
    cli_store: Store, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    written = traffic(range(100, 103))
    fetches.insert_records(cli_store.engine, written)
    since, until = NOW - timedelta(days=102), NOW - timedelta(days=100, minutes=30)
    out = tmp_path / "old.csv"
    done = fleetkey(
        "fetches", "export", "--since", since.isoformat(), "--until", until.isoformat(),
        "--output", str(out),
    )  # fmt: skip
    wanted = sorted(r.at for r in written if since <= r.at < until)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("at (UTC),mac,method,path")
    assert [datetime.fromisoformat(line.split(",", 1)[0]) for line in lines[1:]] == wanted
    assert f"{len(wanted)} fetch records written to {out}" in done.stderr
    assert counts(cli_store) == (27, 0)  # exporting removes nothing


def test_export_json_says_what_was_written_and_needs_a_file(
    cli_store: Store, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    written = traffic(range(100, 103))
    fetches.insert_records(cli_store.engine, written)
    since, until = NOW - timedelta(days=102), NOW - timedelta(days=100, minutes=30)
    out = tmp_path / "old.csv"
    args = ["fetches", "export", "--since", since.isoformat(), "--until", until.isoformat()]
    refused = fleetkey(*args, "--json", code=2)  # the CSV would go to stdout too
    assert "--json prints the summary on stdout: give --output FILE" in refused.stderr
    assert refused.stdout == ""
    done = fleetkey(*args, "--output", str(out), "--json")
    assert json.loads(done.stdout) == {
        "written": sum(1 for r in written if since <= r.at < until),
        "output": str(out),
        "format": "csv",
        "since": since.isoformat(),
        "until": until.isoformat(),
    }
    assert done.stderr == ""
    assert len(out.read_text().splitlines()) == 1 + json.loads(done.stdout)["written"]


def test_export_writes_exactly_the_records_of_the_range_as_parquet(
    cli_store: Store, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    parquet = pytest.importorskip("pyarrow.parquet")  # the test extra installs it
    written = [
        r._replace(user_agent="UA/1 (SN:0004f2000001)", remote_addr="10.0.0.1", digest="ab" * 32)
        if n % 2
        else r
        for n, r in enumerate(traffic(range(100, 103)))
    ]
    fetches.insert_records(cli_store.engine, written)
    since, until = NOW - timedelta(days=102), NOW - timedelta(days=100, minutes=30)
    out = tmp_path / "old.parquet"
    done = fleetkey(
        "fetches", "export", "--since", since.isoformat(), "--until", until.isoformat(),
        "--format", "parquet", "--output", str(out),
    )  # fmt: skip
    table = parquet.read_table(out)
    assert table.column_names == [name for name, _ in exporting.PARQUET_FIELDS]
    wanted = sorted((r for r in written if since <= r.at < until), key=lambda r: r.at)
    assert table.to_pylist() == [
        {name: getattr(r, name) for name, _ in exporting.PARQUET_FIELDS} for r in wanted
    ]
    assert f"{len(wanted)} fetch records written to {out}" in done.stderr
    assert not list(tmp_path.glob(".*partial"))
    assert counts(cli_store) == (27, 0)  # exporting removes nothing


def test_parquet_export_without_pyarrow_is_a_clear_error_that_writes_nothing(
    cli_store: Store, fleetkey: Fleetkey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetches.insert_records(cli_store.engine, traffic(range(100, 102)))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as when it is not installed
    out = tmp_path / "old.parquet"
    failed = fleetkey(
        "fetches", "export", "--since", "200d", "--until", "0s", "--format", "parquet",
        "--output", str(out), code=1,
    )  # fmt: skip
    assert "error: Parquet export needs pyarrow, which is not installed" in failed.stderr
    assert "pip install 'fleetkey[parquet]'" in failed.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial"))
    assert counts(cli_store) == (18, 0)


def test_parquet_export_to_stdout_is_a_usage_error(cli_store: Store, fleetkey: Fleetkey) -> None:
    failed = fleetkey(
        "fetches", "export", "--since", "2d", "--until", "0s", "--format", "parquet", code=2
    )
    assert "--format parquet writes a file: give --output FILE" in failed.stderr
    assert failed.stdout == ""


def test_a_servers_pruning_thread_prunes_soon_after_start_says_it_and_stops_when_told(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=pruner.__name__)
    with_phones(store)
    written = traffic(range(0, 12))
    fetches.insert_records(store.engine, written)
    old = sum(1 for r in written if r.at < datetime(2026, 6, 3, tzinfo=UTC))
    old_days = sorted({r.at.date() for r in written if r.at < datetime(2026, 6, 3, tzinfo=UTC)})
    results: list[retention.PruneResult] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=pruner.keep_pruning,
        args=(store.engine, FixedClock(NOW), 7, stop),
        kwargs={"first_s": 0.05, "every_s": 0.05, "done": results.append},
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while counts(store)[1] < old and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert counts(store) == (len(written) - old, old)  # the old ones rolled up and removed
    # the prune that did it said so in one line (the later ones, with nothing to do, said
    # nothing), and handed its result on (the server's fleetkey_fetch_records_pruned)
    assert sum(r.deleted for r in results) == old
    lines = [r.getMessage() for r in caplog.records if r.name == pruner.__name__]
    assert lines == [
        f"retention: {old:,} fetch records from before 2026-06-03 removed; "
        f"{len(old_days)} days rolled up ({old_days[0]} to {old_days[-1]}) into the daily "
        "counts (fetches days)"
    ]


def test_retention_zero_starts_no_pruning(store: Store) -> None:
    fetches.insert_records(store.engine, traffic(range(100, 102)))
    stop = threading.Event()
    pruner.keep_pruning(store.engine, FixedClock(NOW), 0, stop, first_s=0.0)  # returns at once
    assert counts(store) == (18, 0)
