"""The workers' shared numbers (serve/pool.py): summed families, retired workers, totals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from fleetkey.serve.pool import Family, merge, read_totals, retire, summed_status
from fleetkey.serve.runner import Totals


def worker(fetches: float, depth: float, posted: float) -> list[Family]:
    return [
        ("fleetkey_fetches", "counter", "Answers", [
            ("fleetkey_fetches_total", {"protocol": "http", "status": "200"}, fetches),
        ]),
        ("fleetkey_fetch_records_queue_depth", "gauge", "Waiting", [
            ("fleetkey_fetch_records_queue_depth", {}, depth),
        ]),
        ("fleetkey_posted_licenses", "gauge", "Posted", [
            ("fleetkey_posted_licenses", {}, posted),
        ]),
        ("fleetkey_http_request_duration_seconds", "histogram", "Latency", [
            ("fleetkey_http_request_duration_seconds_bucket", {"le": "+Inf"}, fetches),
            ("fleetkey_http_request_duration_seconds_sum", {}, fetches / 1000),
        ]),
    ]  # fmt: skip


def values(merged: list[object]) -> dict[str, float]:
    found = {}
    for metric in merged:
        for sample in metric.samples:  # type: ignore[attr-defined]
            found[sample.name] = sample.value
    return found


class TestMerge:
    def test_counters_and_histograms_are_summed_over_running_and_retired_workers(self) -> None:
        merged = values(
            merge([(worker(10, 1, 3), True), (worker(5, 2, 3), True), (worker(7, 9, 3), False)])
        )
        assert merged["fleetkey_fetches_total"] == 22
        assert merged["fleetkey_http_request_duration_seconds_bucket"] == 22
        assert merged["fleetkey_http_request_duration_seconds_sum"] == 0.022

    def test_gauges_are_summed_over_running_workers_only(self) -> None:
        merged = values(
            merge([(worker(10, 1, 3), True), (worker(5, 2, 3), True), (worker(7, 9, 3), False)])
        )
        assert merged["fleetkey_fetch_records_queue_depth"] == 3  # not the dead one's 9
        assert merged["fleetkey_workers"] == 2

    def test_a_gauge_every_worker_reads_from_the_same_source_is_the_largest_not_the_sum(
        self,
    ) -> None:
        merged = values(merge([(worker(1, 0, 3), True), (worker(1, 0, 4), True)]))
        assert merged["fleetkey_posted_licenses"] == 4

    def test_labels_keep_samples_apart(self) -> None:
        other: list[Family] = [
            ("fleetkey_fetches", "counter", "Answers", [
                ("fleetkey_fetches_total", {"protocol": "http", "status": "404"}, 4.0),
            ]),
        ]  # fmt: skip
        merged = merge([(worker(10, 0, 1), True), (other, True)])
        fetches = next(m for m in merged if m.name == "fleetkey_fetches")
        assert sorted((s.labels["status"], s.value) for s in fetches.samples) == [
            ("200", 10.0),
            ("404", 4.0),
        ]


def snapshot(directory: Path, index: int, totals: Totals, *, final: bool, depth: int) -> None:
    body = {"pid": 1, "final": final, "depth": depth, "totals": dataclasses.asdict(totals)}
    (directory / f"worker-{index}.json").write_text(json.dumps({**body, "families": []}))


class TestTotals:
    def test_the_retired_workers_totals_are_summed(self, tmp_path: Path) -> None:
        snapshot(tmp_path, 0, Totals(10, 1, None, 10, 0, ftp_transfers=3), final=True, depth=0)
        retire(tmp_path, 0, 100)
        snapshot(tmp_path, 1, Totals(20, 0, None, 20, 0), final=True, depth=0)
        retire(tmp_path, 1, 101)
        summed = read_totals(tmp_path)
        assert summed.totals == Totals(30, 1, None, 30, 0, ftp_transfers=3)
        assert (summed.workers, summed.killed, summed.lost) == (2, 0, 0)
        assert summed.totals.complete

    def test_a_killed_workers_waiting_records_count_as_not_recorded(self, tmp_path: Path) -> None:
        snapshot(tmp_path, 1, Totals(20, 0, 4, 15, 0), final=False, depth=5)
        retire(tmp_path, 1, 101)
        snapshot(tmp_path, 1, Totals(7, 0, 1, 7, 0), final=True, depth=0)  # its successor
        retire(tmp_path, 1, 102)
        summed = read_totals(tmp_path)
        assert summed.totals == Totals(27, 0, 5, 22, 5)
        assert (summed.workers, summed.killed, summed.lost) == (2, 1, 5)
        assert not summed.totals.complete

    def test_a_worker_that_left_no_snapshot_is_not_counted(self, tmp_path: Path) -> None:
        retire(tmp_path, 0, 100)  # died before its first second
        (tmp_path / "retired-1-7.json").write_text("{not json")
        assert read_totals(tmp_path).workers == 0


def status_of(
    requests: int, written: int, licenses: int, refusing: str | None = None
) -> dict[str, Any]:
    return {
        "uptime_s": float(requests),
        "requests": requests,
        "busy_answers": 1,
        "fetch_records": {
            "written": written, "waiting": 2, "held": 0, "not_recorded": 0, "episodes": 0,
            "store_refusing_since": refusing,
        },
        "serving": {"licenses": licenses, "sites": 1, "phones": 2},
    }  # fmt: skip


class TestWholeServerStatus:
    def test_counts_are_summed_what_every_worker_reads_alike_is_the_largest(self) -> None:
        rows = [status_of(10, 8, 2), status_of(30, 25, 3), {"running": False}]
        summed = summed_status(rows)
        assert (summed["requests"], summed["busy_answers"], summed["workers_running"]) == (40, 2, 2)
        assert summed["fetch_records"]["written"] == 33
        assert summed["fetch_records"]["waiting"] == 4
        assert summed["serving"] == {"licenses": 3, "sites": 1, "phones": 2}
        assert summed["uptime_s"] == 30.0

    def test_the_earliest_refusal_of_any_worker_is_the_servers(self) -> None:
        rows = [
            status_of(1, 1, 1, "2026-11-30T11:00:05+00:00"),
            status_of(1, 1, 1, "2026-11-30T11:00:01+00:00"),
            status_of(1, 1, 1),
        ]
        assert summed_status(rows)["fetch_records"]["store_refusing_since"] == (
            "2026-11-30T11:00:01+00:00"
        )

    def test_no_worker_running_is_zeros_not_an_error(self) -> None:
        summed = summed_status([{"running": False}, {"running": False}])
        assert (summed["requests"], summed["workers_running"], summed["uptime_s"]) == (0, 0, 0.0)
