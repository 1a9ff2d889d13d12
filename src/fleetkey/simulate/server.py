"""The provisioning server as a queue: boots bring requests, a capacity answers them.

Time is cut in minutes. Each boot brings ``boot_requests`` requests when it starts; the server
answers at most ``capacity x 60`` requests a minute, oldest first, and the boot is done when its
last request is answered, and not before ``boot_seconds`` after it started. Requests beyond the
capacity are answered 503 with ``Retry-After``: the phone waits and asks again, so it keeps
its place without adding load, and every phone that waits past its own boot time sends one
request per ``retry_after_s`` that the server refuses (the 503 series). While the server is down
nothing answers: a phone that asks then, or is still waiting when it goes down, gives up after
``give_up_s`` and boots from its flash with the keys it has (R2: nothing downloaded changes
nothing), which is how a server outage during a storm leaves phones booted with an expired
license, and R8 then keeps them so.

Boots are admitted in batches (the simulator's steps, in time order); each batch takes the
capacity earlier batches left, first come first served within it, by a running maximum
rather than a loop over boots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from fleetkey.simulate.scenario import Server

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
MINUTE: Final = 60.0
FIRST_WINDOW: Final = 240  # minutes of free capacity looked at first; doubled when too few


@dataclass
class Admission:
    ends: F64  # when each boot finished (inf: not within the horizon)
    served: B  # False: it gave up (server down) and booted from its flash


@dataclass
class ServerQueue:
    server: Server
    minutes: int
    down: B = field(init=False)
    capacity: F64 = field(init=False)  # requests per minute
    used: F64 = field(init=False)  # requests answered, per minute
    offered: F64 = field(init=False)  # requests boots brought, per minute
    waiting: F64 = field(init=False)  # phones waiting past their boot time (deltas, then counts)
    longest_wait_s: float = 0.0

    def __post_init__(self) -> None:
        self.down = np.zeros(self.minutes, dtype=np.bool_)
        self.capacity = np.full(self.minutes, self.server.capacity * MINUTE)
        self.used = np.zeros(self.minutes)
        self.offered = np.zeros(self.minutes)
        self.waiting = np.zeros(self.minutes + 1)

    def take_down(self, start_s: float, until_s: float) -> None:
        lo = max(int(start_s // MINUTE), 0)
        hi = min(int(-(-until_s // MINUTE)), self.minutes)
        self.down[lo:hi] = True
        self.capacity[lo:hi] = 0.0

    def admit(self, starts: F64) -> Admission:
        """Boots starting at ``starts`` (seconds, ascending): when each is done."""
        n = starts.shape[0]
        ends = np.full(n, np.inf)
        served = np.ones(n, dtype=np.bool_)
        if n == 0:
            return Admission(ends, served)
        cost = self.server.boot_requests
        minute = np.clip((starts // MINUTE).astype(np.int64), 0, self.minutes - 1)
        np.add.at(self.offered, minute, cost)
        now_down = self.down[minute]
        served[now_down] = False
        ends[now_down] = starts[now_down] + self.server.give_up_s
        live = np.nonzero(~now_down)[0]
        done, through_down = self._serve(starts[live], minute[live], commit=False)
        if through_down.any():  # waiting when the server went down: they give up
            gave_up = live[through_down]
            served[gave_up] = False
            outage = self._next_down(minute[gave_up])
            ends[gave_up] = np.maximum(starts[gave_up], outage * MINUTE) + self.server.give_up_s
            live = live[~through_down]
        done, _ = self._serve(starts[live], minute[live], commit=True)
        ends[live] = np.maximum(done, starts[live] + self.server.boot_seconds)
        self._count_waits(starts[live], ends[live])
        return Admission(ends, served)

    def _serve(self, starts: F64, minute: npt.NDArray[np.int64], *, commit: bool) -> tuple[F64, B]:
        """First come first served over the capacity left: when each is answered, and whether
        its wait runs into an outage."""
        n = starts.shape[0]
        if n == 0:
            return np.zeros(0), np.zeros(0, dtype=np.bool_)
        cost = self.server.boot_requests
        lo = int(minute[0])
        span = FIRST_WINDOW
        while True:
            hi = min(lo + span, self.minutes)
            free = self.capacity[lo:hi] - self.used[lo:hi]
            cumulative = np.concatenate([[0.0], np.cumsum(free)])
            order = np.arange(n, dtype=np.float64)
            base = cumulative[minute - lo] - order * cost
            end = np.maximum.accumulate(base) + (order + 1) * cost
            if end[-1] <= cumulative[-1] + 1e-9 or hi == self.minutes:
                break
            span *= 2
        inside = end <= cumulative[-1] + 1e-9
        k = np.clip(np.searchsorted(cumulative, end - 1e-9, side="left") - 1, 0, hi - lo - 1)
        room = np.where(free[k] > 0, free[k], 1.0)
        done = np.where(inside, (lo + k) * MINUTE + MINUTE * (end - cumulative[k]) / room, np.inf)
        downs = np.concatenate([[0], np.cumsum(self.down[lo:hi])])
        through = downs[np.minimum(k, hi - lo - 1) + 1] - downs[minute - lo] > 0
        if commit:
            self._consume(lo, cumulative, end - cost, end)
        return done, through

    def _consume(self, lo: int, cumulative: F64, begin: F64, end: F64) -> None:
        """Add to ``used`` what the intervals [begin, end) of free capacity take per minute."""
        last = int(np.searchsorted(cumulative, end[-1], side="left"))
        grid = cumulative[: min(last + 1, cumulative.shape[0])]
        full = np.searchsorted(end, grid, side="right")
        partial_index = np.minimum(full, end.shape[0] - 1)
        partial = np.where(
            full < end.shape[0], np.clip(grid - begin[partial_index], 0.0, None), 0.0
        )
        taken = full * self.server.boot_requests + partial
        self.used[lo : lo + grid.shape[0] - 1] += np.diff(taken)

    def _next_down(self, minute: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        down_at = np.nonzero(self.down)[0]
        index = np.searchsorted(down_at, minute, side="left")
        return down_at[np.minimum(index, down_at.shape[0] - 1)]

    def _count_waits(self, starts: F64, ends: F64) -> None:
        waited = ends - starts
        if waited.shape[0]:
            finite = waited[np.isfinite(waited)]
            if finite.shape[0]:
                self.longest_wait_s = max(self.longest_wait_s, float(finite.max()))
        late = starts + self.server.boot_seconds
        slow = ends > late + 1e-6
        first = np.clip((late[slow] // MINUTE).astype(np.int64), 0, self.minutes)
        last = np.clip(
            np.where(np.isfinite(ends[slow]), ends[slow] // MINUTE, self.minutes), 0, self.minutes
        ).astype(np.int64)
        np.add.at(self.waiting, first, 1.0)
        np.add.at(self.waiting, last, -1.0)

    def refused_per_s(self) -> F64:
        """503s a second in each minute: waiting phones asking again every Retry-After."""
        waiting = np.cumsum(self.waiting)[: self.minutes]
        return np.where(self.down, 0.0, waiting / self.server.retry_after_s)
