"""Whether this server should be given phones: what ``/healthz`` answers a load balancer.

Several ``fleetkey serve`` share one PostgreSQL behind HAProxy (docs/deploy.md); HAProxy asks
each server's ``/healthz`` every second and sends phones only to those answering 200. A server
is healthy when every one of these holds, and each that does not is a reason in the 503's body:

- **the database answers**: a real query (the audit head, what the view reads every second)
  within :data:`DB_TIMEOUT_S`, on a thread of its own so that a database that hangs (a host
  gone, a lock) costs the check its timeout and never a thread per check; one query in flight
  at a time, its answer reused for :data:`PROBE_FRESH_S` (several balancers may ask);
- **the record writer runs** (its thread alive) and **the record queue has room**: below the
  mark where the recorder answers phones busy (``serve/recorder.py``), the store neither
  refusing batches nor keeping one waiting over ``SLOW_WRITE_S``;
- **the posted view is fresh**: read from the store within :data:`VIEW_STALE_S` (a server that
  cannot read it serves what was posted before, and a successor would not reach its phones).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from fleetkey.store import audit
from fleetkey.store.store import Store

log = logging.getLogger(__name__)

DB_TIMEOUT_S: Final = 2.0  # HAProxy's check timeout (docs/deploy/haproxy.cfg) is 3 s
PROBE_FRESH_S: Final = 0.5  # an answer reused this long: balancers ask every second each
VIEW_STALE_S: Final = 5.0  # the view is refreshed every second; five missed is a fault


@dataclass(frozen=True, slots=True)
class DatabaseAnswer:
    """What the last query said: its time, or why there was none."""

    ok: bool
    latency_ms: float | None
    error: str | None

    def json(self) -> dict[str, Any]:
        return {"ok": self.ok, "latency_ms": self.latency_ms, "error": self.error}


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"


class _Query:
    """One query on a daemon thread (a hung database keeps it, never the server's exit)."""

    def __init__(self, store: Store, timeout_s: float) -> None:
        self.began = time.monotonic()
        self.done = threading.Event()
        self.answer: DatabaseAnswer | None = None
        self._store, self._timeout_s = store, timeout_s
        threading.Thread(target=self._run, name="fleetkey-health-query", daemon=True).start()

    def _run(self) -> None:
        try:
            with self._store.transaction() as session:
                if session.get_bind().dialect.name == "postgresql":  # the server gives up too
                    ms = int(self._timeout_s * 1000)
                    session.execute(text(f"SET LOCAL statement_timeout = {ms}"))
                audit.head_seq(session)
            latency = round((time.monotonic() - self.began) * 1000, 2)
            self.answer = DatabaseAnswer(True, latency, None)
        except (SQLAlchemyError, OSError) as exc:  # the database's answer: said in the body
            self.answer = DatabaseAnswer(False, None, _said(exc))
        except Exception as exc:  # a bug of ours: logged with its traceback, and not healthy
            log.exception("the health check's database question failed unexpectedly")
            self.answer = DatabaseAnswer(False, None, f"internal error: {_said(exc)}")
        finally:
            self.done.set()


class DatabaseProbe:
    """Asks the store a real question, with a timeout; one question in flight at a time."""

    def __init__(
        self, store: Store, *, timeout_s: float = DB_TIMEOUT_S, fresh_s: float = PROBE_FRESH_S
    ) -> None:
        self._store, self._timeout_s, self._fresh_s = store, timeout_s, fresh_s
        self._lock = threading.Lock()
        self._query: _Query | None = None
        self._last: tuple[float, DatabaseAnswer] | None = None

    def check(self) -> DatabaseAnswer:
        """The database's answer now (blocking up to the timeout: call it off the event loop)."""
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self._fresh_s:
                return self._last[1]
            if self._query is None or self._query.done.is_set():
                self._query = _Query(self._store, self._timeout_s)
            query = self._query
        query.done.wait(max(0.0, self._timeout_s - (time.monotonic() - query.began)))
        answer = query.answer
        if answer is None:
            waited = time.monotonic() - query.began
            answer = DatabaseAnswer(
                False, None, f"no answer within {self._timeout_s:g} s (asked {waited:.1f} s ago)"
            )
        with self._lock:
            self._last = (time.monotonic(), answer)
        return answer


@dataclass(frozen=True, slots=True)
class QueueState:
    """The fetch-record queue as the health check sees it."""

    depth: int
    capacity: int
    busy_at: int  # the depth from which phones are answered busy
    writer_alive: bool
    refusing_since: str | None  # ISO time the store began refusing batches
    slow_since: str | None  # ISO time the batch being written began, if over the slow mark

    def json(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "capacity": self.capacity,
            "busy_at": self.busy_at,
            "writer_alive": self.writer_alive,
        }


def reasons(
    database: DatabaseAnswer | None, queue: QueueState, view_age_s: float | None
) -> list[str]:
    """Why the server should not be given phones now (empty: healthy); ``database`` None:
    not asked (a worker's own parts, serve/pool.py)."""
    found = []
    if database is not None and not database.ok:
        found.append(f"database: {database.error}")
    if not queue.writer_alive:
        found.append("record writer: not running (answers could not be recorded)")
    if queue.depth >= queue.busy_at:
        found.append(
            f"record queue: {queue.depth:,} of {queue.capacity:,} records waiting "
            f"(phones are answered busy from {queue.busy_at:,})"
        )
    if queue.refusing_since is not None:
        found.append(f"record writer: the store refuses fetch records since {queue.refusing_since}")
    if queue.slow_since is not None:
        found.append(f"record writer: a batch has waited for the store since {queue.slow_since}")
    if view_age_s is None:
        found.append("posted view: never read from the store")
    elif view_age_s > VIEW_STALE_S:
        found.append(f"posted view: last read from the store {view_age_s:.1f} s ago")
    return found
