"""What the workers of ``fleetkey serve --workers N`` share: their counters, one view of them.

Each worker writes a snapshot of its metric families and its totals to ``worker-<i>.json`` in
the supervisor's directory, every second (the runner's tick, on the event loop: the counters
are plain dicts the loop writes) and once more when it stops, written whole and renamed into
place. ``/metrics``, answered by whichever worker the kernel gave the connection, renders its
own families as they are now, summed with the other workers' latest snapshots (at most a
second old) and the counters of workers that ended (``retired-<i>-<pid>.json``: the
supervisor renames a dead worker's last snapshot), so a counter does not fall back when a
worker is killed and started again. Gauges are summed over the running workers (queue depth,
transfers in progress), except those every worker reads from the same source (the posted
licenses, the tree), which are the largest any worker reports.

``/healthz`` and ``/api/status`` describe the whole server the same way: each snapshot carries
its worker's own health (record queue, writer, view: ``observe.local_health``, which never
blocks) and status; the answering worker asks the database itself and adds the others'
(``WorkerShare.health``, ``WorkerShare.status``). The server is healthy when every worker is
running, reported within ``REPORT_STALE_S`` and healthy: the kernel steers an address to one
worker, so one worker that cannot record leaves its phones unserved.

Why not prometheus-client's multiprocess mode: it counts through ``Counter`` objects whose
values live in memory-mapped files, one per process, and metrics.py keeps plain integers on
the request path because a ``Counter.labels().inc()`` costs more than the rest of a license
answer. Snapshots keep the request path as it is and cost one small file a second.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from fleetkey.serve.metrics import ServerCollector, Sources
from fleetkey.serve.runner import Totals

# gauges every worker reads from the same source: the largest, not the sum
SAME_EVERYWHERE: Final = frozenset(
    {"fleetkey_posted_licenses", "fleetkey_tree_files_indexed", "fleetkey_fetch_store_refusing"}
)
SUMMED: Final = frozenset({"counter", "histogram", "summary"})  # kept from retired workers too
REPORT_STALE_S: Final = 5.0  # a worker's snapshot older than this: its event loop is stuck

log = logging.getLogger(__name__)

Document = dict[str, Any]
Sample = tuple[str, dict[str, str], float]
Family = tuple[str, str, str, list[Sample]]  # name, type, help, samples


def families(collector: Collector) -> list[Family]:
    """A collector's families as plain data (JSON-ready)."""
    return [
        (m.name, m.type, m.documentation, [(s.name, dict(s.labels), s.value) for s in m.samples])
        for m in collector.collect()
    ]


class WorkerShare:
    """One worker's side: publish its snapshot, render the view over every worker."""

    def __init__(
        self,
        directory: Path,
        index: int,
        sources: Sources,
        totals: Callable[[], Totals],
        *,
        workers: int = 1,
        observed: Callable[[], Document] | None = None,  # {"health": …, "status": …}
    ) -> None:
        self.directory, self.index, self.workers = directory, index, workers
        self._observed = observed
        self._collector = ServerCollector(sources)
        self._depth = sources.queue_depth
        self._totals = totals
        self._path = directory / f"worker-{index}.json"
        self._failing = False  # logged once a failing episode

    def publish(self, totals: Totals | None = None) -> None:
        """Write this worker's snapshot (``totals`` given: its last, when it has stopped)."""
        final = totals is not None
        snapshot = {
            "pid": os.getpid(),
            "final": final,
            "depth": 0 if final else self._depth(),
            "totals": dataclasses.asdict(totals if totals is not None else self._totals()),
            "families": families(self._collector),
            "at": time.time(),
            **(self._observed() if self._observed is not None and not final else {}),
        }
        partial = self._path.with_suffix(".part")
        try:
            partial.write_text(json.dumps(snapshot))
            partial.replace(self._path)
        except OSError:  # the disk full, the directory gone: the next second tries again
            if not self._failing:
                log.exception("writing worker %d's metrics snapshot failed", self.index + 1)
            self._failing = True
            return
        self._failing = False

    def _running(self) -> dict[int, Document | None]:
        """Every worker's latest snapshot by index (None: not running now, being started
        again); this worker's is read too, and replaced by the caller's fresh one."""
        found: dict[int, Document | None] = {}
        for index in range(self.workers):
            found[index] = _read(self.directory / f"worker-{index}.json")
        return found

    def health(
        self, own: Callable[[], tuple[bool, Document]]
    ) -> Callable[[], tuple[bool, Document]]:
        """``/healthz`` over every worker: ``own`` is this worker's (with the database's
        answer); the others' from their snapshots."""

        def whole() -> tuple[bool, Document]:
            _, mine = own()
            now = time.time()
            why = [r for r in mine["reasons"] if r.startswith("database: ")]
            rows = []
            for index, snapshot in self._running().items():
                name = f"worker {index + 1}"
                if index == self.index:
                    row = {k: v for k, v in mine.items() if k not in ("database", "healthy")}
                    row["reasons"] = [r for r in mine["reasons"] if not r.startswith("database: ")]
                    row |= {"worker": index + 1, "pid": os.getpid(), "report_age_s": 0.0}
                elif snapshot is None or "health" not in snapshot:
                    row = {"worker": index + 1, "reasons": ["not running (being started again)"]}
                else:
                    age = round(now - float(snapshot["at"]), 3)
                    row = {**snapshot["health"], "worker": index + 1, "pid": snapshot["pid"]}
                    row["report_age_s"] = age
                    if age > REPORT_STALE_S:
                        row["reasons"] = [*row["reasons"], f"no report for {age:.1f} s"]
                row["healthy"] = not row["reasons"]
                why += [f"{name}: {reason}" for reason in row["reasons"]]
                rows.append(row)
            return not why, {
                "healthy": not why,
                "reasons": why,
                "database": mine["database"],
                "worker": self.index + 1,
                "workers": rows,
            }

        return whole

    def status(self, own: Callable[[], Document]) -> Callable[[], Document]:
        """``/api/status`` over every worker: the sums, and each worker's own (``workers``)."""

        def whole() -> Document:
            now = time.time()
            rows = []
            for index, snapshot in self._running().items():
                if index == self.index:
                    row = {**own(), "report_age_s": 0.0, "pid": os.getpid()}
                elif snapshot is None or "status" not in snapshot:
                    row = {"running": False}
                else:
                    row = {**snapshot["status"], "pid": snapshot["pid"]}
                    row["report_age_s"] = round(now - float(snapshot["at"]), 3)
                rows.append({"worker": index + 1, "running": True, **row})
            return {"worker": self.index + 1, **summed_status(rows), "workers": rows}

        return whole

    def exposition(self) -> bytes:
        """The text exposition over every worker, rendered now."""
        others = []
        for path in sorted(self.directory.glob("*.json")):
            if path != self._path:
                snapshot = _read(path)
                if snapshot is not None:
                    others.append((snapshot["families"], path.name.startswith("worker-")))
        merged = merge([(families(self._collector), True), *others])
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(merged))
        return generate_latest(registry)


def summed_status(rows: list[Document]) -> Document:
    """The running workers' status documents as one: counts summed, what every worker
    serves from the same store the largest, uptime the longest."""
    running = [row for row in rows if row.get("running", True) and "requests" in row]
    records: dict[str, Any] = {}
    for name in ("written", "waiting", "held", "not_recorded", "episodes"):
        records[name] = sum(int(row["fetch_records"][name]) for row in running)
    refusing = [r["fetch_records"]["store_refusing_since"] for r in running]
    records["store_refusing_since"] = min((t for t in refusing if t), default=None)
    return {
        "uptime_s": max((float(row["uptime_s"]) for row in running), default=0.0),
        "requests": sum(int(row["requests"]) for row in running),
        "busy_answers": sum(int(row["busy_answers"]) for row in running),
        "fetch_records": records,
        "serving": {
            name: max((int(row["serving"][name]) for row in running), default=0)
            for name in ("licenses", "sites", "phones")
        },
        "workers_running": len(running),
    }


def merge(snapshots: Iterable[tuple[list[Family], bool]]) -> list[Metric]:
    """Families of several workers as one: ``(families, running)``; a worker that is not
    running any more brings its counters and histograms, not its gauges."""
    kinds: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    running = 0
    for found, alive in snapshots:
        running += alive
        for name, kind, text, samples in found:
            if kind not in SUMMED and not alive:
                continue
            kinds.setdefault(name, (kind, text))
            family = values.setdefault(name, {})
            for sample, labels, value in samples:
                key = (sample, tuple(sorted(labels.items())))
                if name in SAME_EVERYWHERE:
                    family[key] = max(family.get(key, value), value)
                else:
                    family[key] = family.get(key, 0.0) + value
    merged = []
    for name, (kind, text) in kinds.items():
        metric = Metric(name, text, kind)
        for (sample, pairs), value in values[name].items():
            metric.add_sample(sample, dict(pairs), value)
        merged.append(metric)
    workers = Metric("fleetkey_workers", "Serving processes counted in this view", "gauge")
    workers.add_sample("fleetkey_workers", {}, float(running))
    merged.append(workers)
    return merged


class _Fixed(Collector):
    def __init__(self, found: list[Metric]) -> None:
        self._found = found

    def collect(self) -> Iterator[Metric]:
        return iter(self._found)


def retire(directory: Path, index: int, pid: int) -> None:
    """The supervisor's side, when worker ``index`` (process ``pid``) has ended: its last
    snapshot stays in the sums as a retired worker's, and its successor starts afresh."""
    path = directory / f"worker-{index}.json"
    if path.exists():
        path.replace(directory / f"retired-{index}-{pid}.json")


@dataclasses.dataclass(frozen=True, slots=True)
class PoolTotals:
    """What every worker did, for the line the supervisor prints at the end."""

    totals: Totals
    workers: int  # processes started in all (restarts included)
    killed: int  # ended without their last snapshot (killed, crashed)
    lost: int  # fetch records in the killed workers' queues at their last snapshot


def read_totals(directory: Path) -> PoolTotals:
    """Sum the retired workers' totals (call once every worker has ended and been retired).
    A killed worker's are those of its last snapshot (at most a second old); the records
    then waiting in its queue count as not recorded."""
    sums: dict[str, int | None] = {}
    workers = killed = lost = 0
    for path in sorted(directory.glob("retired-*.json")):
        snapshot = _read(path)
        if snapshot is None:
            continue
        workers += 1
        if not snapshot["final"]:
            killed += 1
            lost += int(snapshot["depth"])
        for name, value in snapshot["totals"].items():
            if value is not None:
                sums[name] = (sums.get(name) or 0) + int(value)
            else:
                sums.setdefault(name, None)
    sums["not_recorded"] = (sums.get("not_recorded") or 0) + lost
    fields = {f.name for f in dataclasses.fields(Totals)}
    totals = Totals(**{name: sums.get(name, 0) for name in fields})  # type: ignore[arg-type]
    return PoolTotals(totals, workers, killed, lost)


def _read(path: Path) -> dict[str, Any] | None:
    """A snapshot, or None when it is gone (retired meanwhile) or was never written whole."""
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found
