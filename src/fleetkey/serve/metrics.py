"""Prometheus metrics of a running server, read from its counters at scrape time.

The request path only bumps plain integers (a dict entry, a bucket): a prometheus-client
``Counter.labels().inc()`` per request would cost more than the rest of a license answer. At
scrape time a custom collector turns those integers into metric families.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fleetkey.serve.tftp.server import TftpCounters

BOUNDS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Latency:
    """A histogram as plain counts: ``observe`` is a bisect and two additions."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        running, found = 0, []
        for bound, count in zip((*BOUNDS, float("inf")), self.counts, strict=True):
            running += count
            found.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return found


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the numbers live: callables, so the collector holds no server types."""

    requests: Callable[[], dict[tuple[int, str], int]]  # (status, kind) → answers
    sent_bytes: Callable[[], int]
    received_bytes: Callable[[], int]
    latency: Latency
    rejected: Callable[[], int]
    auth_failures: Callable[[], int]
    queue_depth: Callable[[], int]
    records_written: Callable[[], int]
    records_dropped: Callable[[], int]
    registered: Callable[[], int]
    posted: Callable[[], int]
    tftp: Callable[[], TftpCounters | None] = lambda: None
    recalled: Callable[[], int] = lambda: 0  # answers given from memory (serve.http.repeats)
    remembered: Callable[[], int] = lambda: 0  # answers held in memory


class ServerCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        s = self._sources
        requests = CounterMetricFamily(
            "fleetkey_http_requests", "Answers by status and kind", labels=["status", "kind"]
        )
        for (status, kind), count in sorted(s.requests().items()):
            requests.add_metric([str(status), kind], count)
        yield requests
        yield CounterMetricFamily(
            "fleetkey_http_sent_bytes", "Body bytes sent", value=s.sent_bytes()
        )
        yield CounterMetricFamily(
            "fleetkey_http_received_bytes", "Upload bytes received", value=s.received_bytes()
        )
        yield HistogramMetricFamily(
            "fleetkey_http_request_duration_seconds",
            "From the end of the request to the answer written",
            buckets=s.latency.buckets(),
            sum_value=s.latency.total,
        )
        yield CounterMetricFamily(
            "fleetkey_admission_rejections",
            "503 answers: in-flight cap, download cap, record back-pressure",
            value=s.rejected(),
        )
        yield CounterMetricFamily(
            "fleetkey_http_auth_failures", "Refused device credentials", value=s.auth_failures()
        )
        yield GaugeMetricFamily(
            "fleetkey_fetch_records_queue_depth",
            "Fetch records waiting to be written",
            value=s.queue_depth(),
        )
        yield CounterMetricFamily(
            "fleetkey_fetch_records_written", "Fetch records written", value=s.records_written()
        )
        yield CounterMetricFamily(
            "fleetkey_fetch_records_dropped",
            "Fetch records not written (queue full, or refused by the database)",
            value=s.records_dropped(),
        )
        yield CounterMetricFamily(
            "fleetkey_phones_registered", "Phones added by --unknown register", value=s.registered()
        )
        yield GaugeMetricFamily(
            "fleetkey_posted_licenses", "License files being served", value=s.posted()
        )
        yield CounterMetricFamily(
            "fleetkey_http_recalled_answers",
            "License answers given from memory (same request, same posted view)",
            value=s.recalled(),
        )
        yield GaugeMetricFamily(
            "fleetkey_http_remembered_answers",
            "License answers held in memory for repeated requests",
            value=s.remembered(),
        )
        tftp = s.tftp()
        if tftp is not None:
            yield from _tftp_families(tftp)


def _tftp_families(tftp: TftpCounters) -> Iterator[Metric]:
    transfers = CounterMetricFamily(
        "fleetkey_tftp_transfers", "TFTP transfers by outcome (HTTP-like status)", labels=["status"]
    )
    for status, count in sorted(tftp.outcomes.items()):
        transfers.add_metric([str(status)], count)
    yield transfers
    options = CounterMetricFamily(
        "fleetkey_tftp_option_requests", "TFTP options phones asked for", labels=["option"]
    )
    for name, count in sorted(tftp.options.items()):
        options.add_metric([name], count)
    yield options
    yield CounterMetricFamily(
        "fleetkey_tftp_retransmits", "DATA, ACK or OACK packets sent again", value=tftp.retransmits
    )
    yield CounterMetricFamily("fleetkey_tftp_sent_bytes", "File bytes sent", value=tftp.sent_bytes)
    yield CounterMetricFamily(
        "fleetkey_tftp_received_bytes", "Upload bytes received", value=tftp.received_bytes
    )
    yield CounterMetricFamily(
        "fleetkey_tftp_malformed_packets", "Packets refused or dropped", value=tftp.malformed
    )
    yield GaugeMetricFamily("fleetkey_tftp_active", "Transfers in progress", value=tftp.active)


def exposition(sources: Sources) -> Callable[[], bytes]:
    """The text exposition format, rendered at each call."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(sources))
    return lambda: generate_latest(registry)
