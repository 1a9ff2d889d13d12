"""What a running server tells operators: its status, its health and its metrics.

Read from the parts ``serve.runner`` built (the record writer, the recorders, the adapters'
counters), at each request of the admin API, ``/healthz`` or ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from fleetkey.serve.health import QueueState, reasons
from fleetkey.serve.metrics import Sources, exposition

if TYPE_CHECKING:
    from fleetkey.serve.runner import ServerRunner

SLOW_WRITE_S: Final = 5.0  # a batch written for longer: /healthz says the store is slow
K = TypeVar("K")


def status(runner: ServerRunner) -> dict[str, Any]:
    """The running server's counters, for the admin API's status."""
    view = runner.view.view
    return {
        "uptime_s": round(time.time() - runner._started, 3),
        "requests": runner.http.requests,
        "busy_answers": runner.http.rejected,
        "fetch_records": _records(runner),
        "serving": {
            "licenses": len(view.licenses),
            "sites": len(view.sites),
            "phones": len(view.phone_sites),
        },
    }


def _records(runner: ServerRunner) -> dict[str, Any]:
    writer = runner.writer
    return {
        "written": writer.written,
        "waiting": writer.depth,
        "held": writer.held,
        "not_recorded": not_recorded(runner),
        "store_refusing_since": (
            datetime.fromtimestamp(writer.failing_since, UTC).isoformat()
            if writer.failing_since is not None
            else None
        ),
        "last_error": writer.last_error or None,
        "episodes": writer.episodes,
        "store_slow_since": _slow_since(writer.writing_since),
    }


def health(runner: ServerRunner) -> tuple[bool, dict[str, Any]]:
    """Whether the server should be given phones now (``serve/health.py``), with the reasons
    when not, and what it knows about its database, record queue and view."""
    database = runner.probe.check()
    own = local_health(runner)
    why = [f"database: {database.error}"] if not database.ok else []
    why += own["reasons"]
    return not why, {
        "healthy": not why,
        "reasons": why,
        "database": database.json(),
        **{k: v for k, v in own.items() if k not in ("healthy", "reasons")},
    }


def local_health(runner: ServerRunner) -> dict[str, Any]:
    """The health of this process's own parts, without the database's question (which may
    block): its record queue and writer and its view. Never blocks (a worker publishes it
    every second from its event loop, serve/pool.py)."""
    records = _records(runner)
    writer = runner.writer
    queue = QueueState(
        depth=writer.depth,
        capacity=writer.capacity,
        busy_at=runner.recorder.busy_at,
        writer_alive=writer.alive,
        refusing_since=records["store_refusing_since"],
        slow_since=records["store_slow_since"],
    )
    read_at = runner.view.read_at
    age = None if read_at is None else round(time.monotonic() - read_at, 3)
    why = reasons(None, queue, age)
    return {
        "healthy": not why,
        "reasons": why,
        "record_queue": queue.json(),
        "view_age_s": age,
        "fetch_records": records,
        "failing": sorted(runner._failing),
    }


def metrics(runner: ServerRunner) -> Callable[[], bytes]:
    """The Prometheus exposition of this server, rendered at each call."""
    return exposition(sources(runner))


def sources(runner: ServerRunner) -> Sources:
    """Where this server's metrics are read from (serve/pool.py reads them for its workers)."""
    http, recorder, writer = runner.http, runner.recorder, runner.writer
    trash = http.trash  # replaced uploads and spares, shared by HTTP, TFTP and FTP
    tftp, ftp = runner.tftp, runner.ftp
    both = (recorder,) if ftp is None else (recorder, ftp.recorder)
    return Sources(
        answers=lambda: merged(r.answers for r in both),
        operator=lambda: http.operator_answers,
        identified=lambda: merged(r.identified for r in both),
        sent_bytes=lambda: http.bytes_sent,
        received_bytes=lambda: http.bytes_received,
        latency=http.latency,
        rejected=lambda: http.rejected,
        auth_failures=lambda: runner.auth.failures,
        queue_depth=lambda: writer.depth,
        records_written=lambda: writer.written,
        records_dropped=lambda: not_recorded(runner),
        registered=lambda: recorder.sightings.registered,
        posted=lambda: len(runner.view.view.licenses),
        addresses=lambda: len(runner.pipeline.addresses),
        tree_files=lambda: len(runner.tree) + len(runner.uploads),
        held=lambda: writer.held,
        refusing=lambda: writer.failing_since is not None,
        episodes=lambda: writer.episodes,
        recalled=lambda: http.repeats.recalled,
        remembered=lambda: len(http.repeats),
        committed_first=lambda: runner.gate.committed,
        uncommitted=lambda: runner.gate.uncommitted,
        commit_wait_s=lambda: runner.gate.wait_s,
        tftp=lambda: tftp.counters if tftp is not None else None,
        ftp=lambda: ftp.counters if ftp is not None else None,
        failures=lambda: runner.failures | {"writing fetch records": writer.failures},
        pruned=lambda: runner.pruned,
        into_spares=lambda: trash.reused if trash is not None else 0,
        spared=lambda: trash.spared if trash is not None else 0,
        swept=lambda: trash.swept if trash is not None else 0,
    )


def not_recorded(runner: ServerRunner) -> int:
    ftp = runner.ftp.recorder.unrecorded + runner.ftp.not_queued if runner.ftp is not None else 0
    return runner.writer.dropped + runner.recorder.unrecorded + ftp


def merged(counts: Iterable[Mapping[K, int]]) -> dict[K, int]:
    """Counters of several recorders (the FTP thread's copied at once: it may be adding)."""
    total: dict[K, int] = {}
    for count in counts:
        for key, n in dict(count).items():
            total[key] = total.get(key, 0) + n
    return total


def _slow_since(began: float | None) -> str | None:
    """When the batch being written began, if it has taken over ``SLOW_WRITE_S`` (a lock held
    elsewhere makes SQLite wait up to its busy timeout, 30 s, before it refuses)."""
    if began is None or time.time() - began < SLOW_WRITE_S:
        return None
    return datetime.fromtimestamp(began, UTC).isoformat()
