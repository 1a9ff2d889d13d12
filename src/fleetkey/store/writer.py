"""The fetch-record writer: records from request handlers into the store, in batches, and
never lost while the store is down.

Servers ``submit`` one record per answer from their event loop: an append to a deque (atomic
under the GIL, no lock: the lock and its condition cost more than the rest of the record).
One thread writes them a batch at a time to a ``RecordSink`` (the store's: one executemany per
transaction, ``fetches.StoreSink``) as soon as a batch is full, at least every second, and at
``close``.

When the store refuses a batch (the database unreachable, the disk full, a lock held too long)
the writer does not die and does not drop the batch: it holds it, in order, and tries again
with a growing pause (up to ``retry_max_s``), logging once when the episode starts and once
when it ends. Records keep arriving meanwhile. Past ``spill_at`` records held in memory, the
oldest are appended to a spill file on disk (JSON Lines, with their batch numbers) and read
back first when the store is back, and at the next start if the process stopped meanwhile.
Past ``capacity`` records in memory, ``submit`` refuses (``QueueFullError``; servers answer
"busy" before that) and the refusal is the caller's to count. Every batch is marked committed
in the same transaction (``fetch_batches``), so one retried after an ambiguous failure, or read
back twice from the spill file, is written once.

A record that confirms a delivery (a license file answered to a phone: what a rollout's
executor confirms a phone from) is ``submit_urgent``-ed before its answer is sent, and the
answer waits, on its event loop, for ``completed`` to reach the record's ticket
(``serve/commits.py``), so a killed server cannot have sent a license whose record is not in
the store. The writer starts a batch for it at once, or, within ``group_s`` of the last batch's
start, once that time is up or ``group_urgent`` such records wait (group commit: what else
waits rides along; other records keep their one-second batches): a batch costs per phone in
it, and a storm's batches, one per wake-up, each held a few records of hundreds of phones
(docs/serve.md, "What it costs"). ``on_commit`` is called on the writer's thread after each
batch while such a record waits, and when the store refuses (then nothing waits for it).

At ``close`` whatever the store still refuses goes to the ``fallback`` file, counted as
``dropped``; ``fleetkey fetches replay FILE`` writes it to the store later. A batch refused for
what a row holds is written in halves until each refused row is alone, set aside, ``dropped``.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final

from fleetkey.errors import FleetkeyError, HeldFileError, QueueFullError
from fleetkey.store.fetches import RecordSink, refused_for_content
from fleetkey.store.held import count_records
from fleetkey.store.records import FetchRecord
from fleetkey.store.spilling import FAILURES, SpillFile, said

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S: Final = 1.0  # issue 3: flushed at least every second
GROUP_S: Final = 0.05  # an urgent batch waits this long after the last one began (group commit)
GROUP_URGENT: Final = 32  # ... or until this many urgent records wait
BATCH_SIZE: Final = 50_000  # under load the flush interval, not the size, ends a batch
CAPACITY: Final = 200_000  # records in memory (~350 bytes each)
SPILL_AT: Final = 50_000  # records held in memory before the oldest go to the spill file
_FAILURES: Final = FAILURES


class FetchWriter(SpillFile):
    """Queue → batched inserts on a background thread. Use as a context manager or start/close."""

    def __init__(
        self,
        sink: RecordSink,
        *,
        capacity: int = CAPACITY,
        batch_size: int = BATCH_SIZE,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        group_s: float = GROUP_S,
        group_urgent: int = GROUP_URGENT,
        fallback: Path | None = None,
        spill: Path | None = None,
        spill_at: int = SPILL_AT,
        retry_delay_s: float = 0.1,
        retry_max_s: float = 2.0,  # after a refusal, the store is tried again at least this often
    ) -> None:
        self._sink = sink
        self._pending: deque[FetchRecord] = deque()
        self._held: deque[tuple[int, list[FetchRecord]]] = deque()  # refused batches, in order
        self._held_count = 0
        self._writing = 0  # records of the batch being written now (out of the deque)
        self._capacity = capacity
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._group = group_s
        self._group_urgent = group_urgent
        self._urgent = 0  # urgent records since the last batch began
        self._fallback = fallback
        self._spill = spill
        self._spill_at = spill_at
        self._retry_delay = retry_delay_s
        self._retry_max = retry_max_s
        self._wake = threading.Event()
        self._go = threading.Event()  # ends a wait for the group window: enough urgent, or close
        self._room = threading.Condition()  # producers that block (timeout != 0) wait here
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._running = False
        self.name = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._seq = itertools.count(1)
        self.written = 0
        self.dropped = 0
        self.rejected = 0  # of the dropped: refused by the store for their content
        self.failures = 0  # unexpected errors the writer survived (logged with traceback)
        self.batches = 0
        self.episodes = 0  # times the store started refusing
        self.failing_since: float | None = None  # time.time() of the current episode's start
        self.last_error = ""
        self.writing_since: float | None = None  # time.time() a batch's write began, if one is
        self.spilled = 0  # records on the spill file now
        self._cycles = 0  # writing cycles begun (the writer's thread only)
        self.completed = 0  # the last cycle after which everything queued before it was in
        self.wanted = 0  # the highest ticket given by submit_urgent
        self._told = 0  # ``completed`` when on_commit was last called
        self.on_commit: Callable[[], None] | None = None  # called on the writer's thread

    @property
    def depth(self) -> int:
        """Records in memory not yet in the store: waiting, being written, held by a refusal."""
        return len(self._pending) + self._held_count + self._writing

    @property
    def capacity(self) -> int:
        """Records in memory beyond which ``submit`` refuses."""
        return self._capacity

    @property
    def alive(self) -> bool:
        """Whether the writing thread runs (started and not ended)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def held(self) -> int:
        """Records the store refused and the writer keeps (in memory and spilled)."""
        return self._held_count + self.spilled

    def start(self) -> FetchWriter:
        if self._thread is None:
            self._stopping = False
            self._running = True
            self._go.clear()
            self._thread = threading.Thread(
                target=self._run, name="fleetkey-fetch-writer", daemon=True
            )
            self._thread.start()
        return self

    def submit(self, record: FetchRecord, timeout: float | None = None) -> None:
        """Queue a record; while ``capacity`` records are in memory, wait at most ``timeout``
        seconds (None: as long as it takes) for room, then raise QueueFullError."""
        if not self._running:
            raise FleetkeyError("the fetch writer is not running")
        pending = self._pending
        if len(pending) + self._held_count + self._writing >= self._capacity:
            self._wait_for_room(timeout)
        pending.append(record)
        if len(pending) >= self._batch_size:
            self._wake.set()

    def submit_urgent(self, record: FetchRecord) -> int:
        """Queue a record that must be in the store before its answer is sent, and start a
        batch now; returns its ticket: the record is in the store once ``completed`` is at
        least the ticket (raises QueueFullError at ``capacity``, never waits).

        The ticket is read after the append: the cycle after the one under way begins (and
        takes what waits) after this read, so it takes the record unless an earlier one did.
        """
        self.submit(record, timeout=0)
        ticket = self._cycles + 1
        if ticket > self.wanted:
            self.wanted = ticket
        self._urgent += 1
        if self._urgent >= self._group_urgent:
            self._go.set()
        self._wake.set()
        return ticket

    def _wait_for_room(self, timeout: float | None) -> None:
        if timeout == 0 or not self._room.acquire(timeout=-1 if timeout is None else timeout):
            raise QueueFullError(f"fetch-record queue full ({self._capacity} waiting)")
        try:
            if not self._room.wait_for(lambda: self.depth < self._capacity, timeout):
                raise QueueFullError(
                    f"fetch-record queue full ({self._capacity} waiting) for {timeout}s"
                )
        finally:
            self._room.release()

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued (what the store still refuses goes to the fallback file),
        then stop the thread."""
        if self._thread is None:
            return
        self._running = False
        self._stopping = True
        self._go.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> FetchWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        pause = self._interval
        if self._spill is not None and self._spill.exists():
            try:
                self.spilled = count_records(self._spill)  # a previous run's, read back first
            except HeldFileError as exc:
                self._set_aside(exc)
        group = self._group
        began = time.monotonic() - group
        while True:
            self._wake.wait(pause)
            self._wake.clear()
            early = began + group - time.monotonic()  # woken by an urgent record, soon after
            if early > 0 and not self._stopping and len(self._pending) < self._batch_size:
                self._go.wait(early)  # the last batch began: what comes meanwhile rides on
                self._wake.clear()  # this batch (taken below), not on one after it
            began = time.monotonic()
            self._urgent = 0
            if not self._stopping:
                self._go.clear()
            self._cycles += 1
            try:
                ok = self._cycle()
            except Exception as exc:  # noqa: BLE001  # never dies: _failed logs the traceback
                self._failed(exc)
                ok = False
            if ok:
                self.completed = self._cycles
            self._tell(ok)
            if ok:  # the next cycle a flush interval after this one began (or a full batch)
                pause = max(0.0, self._interval - (time.monotonic() - began))
            else:
                pause = min(self._retry_max, max(self._retry_delay, pause * 2))
            if self._stopping:
                if ok and not self._pending:
                    return
                if not ok:
                    self._give_up()
                    return

    def _tell(self, ok: bool) -> None:
        """Call ``on_commit`` after a cycle while a ticket waits for one (or the store refuses:
        the answers waiting are then sent without their commit)."""
        hook = self.on_commit
        if hook is None or self.wanted <= self._told:
            return
        if ok:
            self._told = self.completed
        try:
            hook()
        except Exception:  # a hook's bug must not stop the writing
            log.exception("the writer's on_commit hook failed")

    def _cycle(self) -> bool:
        """Write the spilled, the held, then what waits; False at the first refusal."""
        if self.spilled and not self._write_spilled():
            return self._still_failing()
        while self._held:
            seq, batch = self._held[0]
            left = self._write(seq, batch)
            if left:
                if left is not batch:  # part went in: the rest is held as a batch of its own
                    self._held[0] = (next(self._seq), left)
                    self._held_count -= len(batch) - len(left)
                return self._still_failing()
            self._held.popleft()
            self._held_count -= len(batch)
        waiting = len(self._pending)  # what came meanwhile waits for the next cycle: chasing
        while waiting:  # it made small batches, each a commit that rewrites the index pages
            take = min(waiting, self._batch_size)
            waiting -= take
            batch = [self._pending.popleft() for _ in range(take)]
            seq = next(self._seq)
            self._writing = take
            left = self._write(seq, batch)
            if left:
                self._held.append((seq if left is batch else next(self._seq), left))
                self._held_count += len(left)
            self._writing = 0
            if left:
                return self._still_failing()
        self._recovered()
        return True

    def _write(self, seq: int, batch: list[FetchRecord]) -> list[FetchRecord]:
        """Write ``batch``; what is left unwritten (``batch`` itself when nothing went in,
        an empty list when all did)."""
        self.writing_since = time.time()
        try:
            if self.failing_since is None or not self._sink.batch_written(self.name, seq):
                self._sink.insert_batch(batch, (self.name, seq))
            # else it was committed before the error that made it look refused
        except _FAILURES as exc:
            if not refused_for_content(exc):
                self._refused(exc)
                return batch
            return self._sort_out(batch, exc)
        except Exception as exc:  # noqa: BLE001  # a bug: held like a refused batch; _failed logs it
            self._failed(exc)
            return batch
        finally:
            self.writing_since = None
        self._wrote(batch)
        return []

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failing_since is None:
            log.exception("the fetch-record writer failed; holding the records, trying again")
        self._refused(exc)

    def _wrote(self, batch: list[FetchRecord]) -> None:
        self.written += len(batch)
        self.batches += 1
        with self._room:
            self._room.notify_all()

    def _sort_out(self, batch: list[FetchRecord], first: BaseException) -> list[FetchRecord]:
        """A batch refused for what a row holds: halves are written on their own until each
        refused row is alone; those go to the rejected file, counted and said in one line.
        Returns what is left when the store stops answering meanwhile (in order)."""
        parts, refused = [batch], list[FetchRecord]()
        while parts:
            part = parts.pop(0)
            try:
                self._sink.insert_batch(part, (self.name, next(self._seq)))
            except _FAILURES as exc:
                if not refused_for_content(exc):
                    self._refused(exc)
                    self._reject(refused, first)
                    return [r for p in [part, *parts] for r in p]
                if len(part) == 1:
                    refused.extend(part)
                else:
                    middle = len(part) // 2
                    parts[:0] = [part[:middle], part[middle:]]
                continue
            self._wrote(part)
        self._reject(refused, first)
        return []

    def _refused(self, exc: BaseException) -> None:
        self.last_error = said(exc)
        if self.failing_since is None:
            self.failing_since = time.time()
            self.episodes += 1
            log.error(  # one line per episode; the error is in it
                "fetch records cannot be written (%s): holding them and trying again",
                self.last_error,
            )

    def _still_failing(self) -> bool:
        if self._spill is not None and self.depth > self._spill_at:
            while self._pending:  # in batches behind the held ones, keeping the order
                take = min(len(self._pending), self._batch_size)
                self._held.append((next(self._seq), [self._pending.popleft() for _ in range(take)]))
                self._held_count += take
            self._spill_held()
        return False

    def _recovered(self) -> None:
        if self.failing_since is not None:
            log.warning(
                "fetch records are written again after %.1f s of refusals",
                time.time() - self.failing_since,
            )
            self.failing_since = None
            self.last_error = ""
