"""Prometheus metrics of a running server, read from its counters at scrape time.

The request path only bumps plain integers (a dict entry, a bucket): a prometheus-client
``Counter.labels().inc()`` per request would cost more than the rest of a license answer. At
scrape time a custom collector turns those integers into metric families.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

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


class TftpNumbers(Protocol):
    """What the TFTP server counts of its own (its outcomes are the recorder's)."""

    @property
    def options(self) -> Mapping[str, int]: ...

    @property
    def retransmits(self) -> int: ...

    @property
    def sent_bytes(self) -> int: ...

    @property
    def received_bytes(self) -> int: ...

    @property
    def malformed(self) -> int: ...

    @property
    def active(self) -> int: ...


class FtpNumbers(Protocol):
    """What the FTP server counts of its own (its transfers' outcomes are the recorder's)."""

    @property
    def sessions(self) -> int: ...

    @property
    def active(self) -> int: ...

    @property
    def refused(self) -> int: ...

    @property
    def sent_bytes(self) -> int: ...

    @property
    def received_bytes(self) -> int: ...

    @property
    def logins(self) -> Mapping[str, int]: ...

    @property
    def proxy_refused(self) -> Mapping[str, int]: ...


_HTTP: Final = frozenset({"http", "https"})
_FTP: Final = frozenset({"ftp", "ftps"})


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the numbers live: callables, so the collector holds no server types."""

    answers: Callable[[], Mapping[tuple[str, int, str], int]]  # (protocol, status, kind) → n
    operator: Callable[[], Mapping[int, int]]  # admin API and /metrics answers by status
    identified: Callable[[], Mapping[str, int]]  # answers by how the phone was known
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
    addresses: Callable[[], int] = lambda: 0  # addresses that named a phone recently
    tree_files: Callable[[], int] = lambda: 0  # tree files answered from memory
    held: Callable[[], int] = lambda: 0  # fetch records held while the store refuses them
    refusing: Callable[[], bool] = lambda: False  # the store refuses fetch records now
    episodes: Callable[[], int] = lambda: 0  # times the store started refusing
    recalled: Callable[[], int] = lambda: 0  # answers given from memory (serve.http.repeats)
    remembered: Callable[[], int] = lambda: 0  # answers held in memory
    committed_first: Callable[[], int] = lambda: 0  # license answers sent after their commit
    uncommitted: Callable[[], int] = lambda: 0  # sent without it (store refusing, 5 s over)
    commit_wait_s: Callable[[], float] = lambda: 0.0  # seconds those answers waited, in all
    tftp: Callable[[], TftpNumbers | None] = lambda: None
    ftp: Callable[[], FtpNumbers | None] = lambda: None
    failures: Callable[[], Mapping[str, int]] = dict  # background work's failures, by work
    pruned: Callable[[], int] = lambda: 0  # fetch records the retention removed
    into_spares: Callable[[], int] = lambda: 0  # logs written into their spare (serve.spares)
    spared: Callable[[], int] = lambda: 0  # replaced logs kept as their phone's spare
    swept: Callable[[], int] = lambda: 0  # files killed servers left beside the uploads, freed


class ServerCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        s = self._sources
        answers = s.answers()
        fetches = CounterMetricFamily(
            "fleetkey_fetches",
            "Answers to phones by protocol, status and kind",
            labels=["protocol", "status", "kind"],
        )
        http: dict[tuple[int, str], int] = {}
        for (protocol, status, kind), count in sorted(answers.items()):
            fetches.add_metric([protocol, str(status), kind], count)
            if protocol in _HTTP:
                http[(status, kind)] = http.get((status, kind), 0) + count
        for status, count in s.operator().items():
            http[(status, "api")] = http.get((status, "api"), 0) + count
        yield fetches
        requests = CounterMetricFamily(
            "fleetkey_http_requests", "Answers by status and kind", labels=["status", "kind"]
        )
        for (status, kind), count in sorted(http.items()):
            requests.add_metric([str(status), kind], count)
        yield requests
        identified = CounterMetricFamily(
            "fleetkey_fetches_identified",
            "Answers to phones by how the phone was known (agent, name, login, address, "
            "ambiguous, none)",
            labels=["via"],
        )
        for via, count in sorted(s.identified().items()):
            identified.add_metric([via], count)
        yield identified
        yield HistogramMetricFamily(
            "fleetkey_http_request_duration_seconds",
            "From the end of the request to the answer written",
            buckets=s.latency.buckets(),
            sum_value=s.latency.total,
        )
        for family, name, text, read in (
            (CounterMetricFamily, "fleetkey_http_sent_bytes", "Body bytes sent", s.sent_bytes),
            (CounterMetricFamily, "fleetkey_http_received_bytes", "Upload bytes received",
             s.received_bytes),
            (CounterMetricFamily, "fleetkey_admission_rejections",
             "503 answers: in-flight cap, download cap, record back-pressure", s.rejected),
            (CounterMetricFamily, "fleetkey_http_auth_failures", "Refused device credentials",
             s.auth_failures),
            (GaugeMetricFamily, "fleetkey_fetch_records_queue_depth",
             "Fetch records waiting to be written", s.queue_depth),
            (CounterMetricFamily, "fleetkey_fetch_records_written", "Fetch records written",
             s.records_written),
            (CounterMetricFamily, "fleetkey_fetch_records_dropped",
             "Fetch records not written (queue full, or refused by the database)",
             s.records_dropped),
            (CounterMetricFamily, "fleetkey_phones_registered",
             "Phones added by --unknown register", s.registered),
            (GaugeMetricFamily, "fleetkey_posted_licenses", "License files being served",
             s.posted),
            (GaugeMetricFamily, "fleetkey_addresses_remembered",
             "Addresses that named a phone within the hold time (identity by address)",
             s.addresses),
            (GaugeMetricFamily, "fleetkey_tree_files_indexed",
             "Provisioning-tree and upload files answered from the index", s.tree_files),
            (GaugeMetricFamily, "fleetkey_fetch_records_held",
             "Fetch records held (in memory and on disk) while the store refuses them", s.held),
            (GaugeMetricFamily, "fleetkey_fetch_store_refusing",
             "1 while the store refuses fetch records", lambda: int(s.refusing())),
            (CounterMetricFamily, "fleetkey_fetch_store_refusals",
             "Episodes of the store refusing fetch records", s.episodes),
            (CounterMetricFamily, "fleetkey_http_recalled_answers",
             "License answers given from memory (same request, same posted view)", s.recalled),
            (GaugeMetricFamily, "fleetkey_http_remembered_answers",
             "License answers held in memory for repeated requests", s.remembered),
            (CounterMetricFamily, "fleetkey_confirmations_committed_first",
             "License answers sent once their fetch record was committed", s.committed_first),
            (CounterMetricFamily, "fleetkey_confirmations_uncommitted",
             "License answers sent without waiting for their record (store refusing, or 5 s)",
             s.uncommitted),
            (CounterMetricFamily, "fleetkey_confirmations_wait_seconds",
             "Seconds license answers waited for their record's commit, in all",
             s.commit_wait_s),
            (CounterMetricFamily, "fleetkey_fetch_records_pruned",
             "Fetch records past --fetch-retention removed (rolled up into daily counts first)",
             s.pruned),
            (CounterMetricFamily, "fleetkey_uploads_into_spares",
             "Phones' logs written into the log they replaced last time (no file created)",
             s.into_spares),
            (CounterMetricFamily, "fleetkey_uploads_spared",
             "Replaced logs kept beside the new one as the phone's spare", s.spared),
            (CounterMetricFamily, "fleetkey_uploads_swept",
             "Files of killed servers found beside the uploads and freed", s.swept),
        ):  # fmt: skip
            yield family(name, text, value=read())
        failures = CounterMetricFamily(
            "fleetkey_background_failures",
            "Failures of the server's background work (logged with their traceback)",
            labels=["work"],
        )
        for work, count in sorted(s.failures().items()):
            failures.add_metric([work], count)
        yield failures
        tftp = s.tftp()
        if tftp is not None:
            yield from _tftp_families(tftp, answers)
        ftp = s.ftp()
        if ftp is not None:
            yield from _ftp_families(ftp, answers)


def _tftp_families(
    tftp: TftpNumbers, answers: Mapping[tuple[str, int, str], int]
) -> Iterator[Metric]:
    transfers = CounterMetricFamily(
        "fleetkey_tftp_transfers", "TFTP transfers by outcome (HTTP-like status)", labels=["status"]
    )
    outcomes: dict[int, int] = {}
    for (protocol, status, _), count in answers.items():
        if protocol == "tftp":
            outcomes[status] = outcomes.get(status, 0) + count
    for status, count in sorted(outcomes.items()):
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


def _ftp_families(ftp: FtpNumbers, answers: Mapping[tuple[str, int, str], int]) -> Iterator[Metric]:
    transfers = CounterMetricFamily(
        "fleetkey_ftp_transfers",
        "FTP RETR/STOR/APPE by protocol and outcome (HTTP-like status)",
        labels=["protocol", "status"],
    )
    outcomes: dict[tuple[str, int], int] = {}
    for (protocol, status, _), count in answers.items():
        if protocol in _FTP:
            outcomes[protocol, status] = outcomes.get((protocol, status), 0) + count
    for (protocol, status), count in sorted(outcomes.items()):
        transfers.add_metric([protocol, str(status)], count)
    yield transfers
    logins = CounterMetricFamily("fleetkey_ftp_logins", "FTP logins by outcome", labels=["outcome"])
    for outcome, count in sorted(dict(ftp.logins).items()):
        logins.add_metric([outcome], count)
    yield logins
    refused = CounterMetricFamily(
        "fleetkey_ftp_proxy_headers_refused",
        "Connections from --ftp-proxy-protocol addresses closed for their PROXY header, by reason",
        labels=["reason"],
    )
    for reason, count in sorted(dict(ftp.proxy_refused).items()):
        refused.add_metric([reason], count)
    yield refused
    yield CounterMetricFamily(
        "fleetkey_ftp_sessions", "FTP control connections", value=ftp.sessions
    )
    yield GaugeMetricFamily("fleetkey_ftp_sessions_active", "FTP sessions open", value=ftp.active)
    yield CounterMetricFamily(
        "fleetkey_ftp_refused_connections",
        "FTP connections answered 421 (too many, or too many logins in progress)",
        value=ftp.refused,
    )
    yield CounterMetricFamily("fleetkey_ftp_sent_bytes", "File bytes sent", value=ftp.sent_bytes)
    yield CounterMetricFamily(
        "fleetkey_ftp_received_bytes", "Upload bytes received", value=ftp.received_bytes
    )


def exposition(sources: Sources) -> Callable[[], bytes]:
    """The text exposition format, rendered at each call."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(sources))
    return lambda: generate_latest(registry)
