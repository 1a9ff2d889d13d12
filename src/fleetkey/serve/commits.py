"""Answers that confirm a delivery are sent only once their fetch record is in the store.

A rollout's executor confirms a phone from the fetch records (``store/confirmation.py``): a
license file answered 200, 206 or 304 at or after it was posted. A record waiting in a server's
memory when the server is killed is lost, and a phone whose confirming record it was would be
notified again, for one more reboot. So such a record is queued before its answer is sent
(``FetchWriter.submit_urgent``: the writer starts a batch at once, or within 50 ms of the last
one, taking everything waiting with it, a group commit) and the answer waits here, on the
event loop, for that batch's commit: a killed server can only lose confirmations of answers it
never sent, and a phone that got no answer asks again (another server, behind the balancer)
and is recorded there.

Nothing blocks: :meth:`CommitGate.submit` gives a future the protocol awaits; the writer's
thread calls back after each batch (one ``call_soon_threadsafe`` per batch, not per answer),
and every future whose ticket the batch reached is resolved, in ticket order. When the store
refuses records (an outage: the writer holds them) the answers waiting go at once, without
their commit (phones are served from the view in an outage: docs/reliability.md), and so does
an answer that waited ``wait_max_s`` (a store that hangs): both counted in ``uncommitted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from fleetkey.store.records import FetchRecord

WAIT_MAX_S: Final = 5.0  # an answer waits at most this long for its record's commit
SWEEP_S: Final = 1.0  # how often waits past WAIT_MAX_S are looked for, while any wait


class UrgentQueue(Protocol):
    """What the gate needs of the record writer (``store.writer.FetchWriter``)."""

    completed: int
    failing_since: float | None
    on_commit: Callable[[], None] | None

    @property
    def alive(self) -> bool: ...

    def submit_urgent(self, record: FetchRecord) -> int: ...


class CommitGate:
    """Futures for answers waiting for their record's commit, resolved in ticket order:
    True once committed, False when sent without it (store refusing, or waited too long)."""

    def __init__(self, writer: UrgentQueue, *, wait_max_s: float = WAIT_MAX_S) -> None:
        self._writer = writer
        self._wait_max = wait_max_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: deque[tuple[int, float, asyncio.Future[bool]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.committed = 0  # answers sent after their record's commit
        self.uncommitted = 0  # answers sent without it (store refusing, wait over)
        self.wait_s = 0.0  # seconds answers spent waiting, in all

    @property
    def waiting(self) -> int:
        """Answers waiting for their commit now."""
        return len(self._waiting)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait on ``loop`` from now on (before, ``submit`` queues plainly and returns None)."""
        self._loop = loop
        self._writer.on_commit = self._from_writer

    def stop(self) -> None:
        """Release every answer still waiting (as sent without its commit)."""
        self._release(everything=True)
        self._writer.on_commit = None
        self._loop = None

    def submit(self, record: FetchRecord) -> asyncio.Future[bool] | None:
        """Queue ``record`` to be committed at once; the future to await before answering
        (None when no loop waits: the record is then queued like any other).
        Raises QueueFullError as the writer's ``submit`` does."""
        loop = self._loop
        ticket = self._writer.submit_urgent(record)
        if loop is None:
            return None
        future = loop.create_future()
        self._waiting.append((ticket, time.monotonic(), future))
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_S, self._sweep)
        return future

    def _from_writer(self) -> None:
        """On the writer's thread, after a batch: release on the event loop."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: stop() ran
                loop.call_soon_threadsafe(self._release)

    def _release(self, *, everything: bool = False) -> None:
        writer = self._writer
        refusing = everything or writer.failing_since is not None or not writer.alive
        completed = writer.completed
        waiting = self._waiting
        now = time.monotonic()
        while waiting and (refusing or waiting[0][0] <= completed):
            _, since, future = waiting.popleft()
            self._resolve(future, not refusing, now - since)

    def _sweep(self) -> None:
        """Release what the writer committed, then the answers that waited too long."""
        self._sweeper = None
        self._release()
        waiting = self._waiting
        now = time.monotonic()
        while waiting and now - waiting[0][1] >= self._wait_max:  # oldest first
            _, since, future = waiting.popleft()
            self._resolve(future, False, now - since)
        if waiting and self._loop is not None:
            self._sweeper = self._loop.call_later(SWEEP_S, self._sweep)

    def _resolve(self, future: asyncio.Future[bool], committed: bool, waited: float) -> None:
        self.wait_s += waited
        if committed:
            self.committed += 1
        else:
            self.uncommitted += 1
        if not future.done():  # cancelled: the phone went away while it waited
            future.set_result(committed)
