"""The workers' shared numbers (serve/pool.py): summed families, retired workers, totals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from fleetkey.serve.pool import Family, merge, read_totals, retire
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
