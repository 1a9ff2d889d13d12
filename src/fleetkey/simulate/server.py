"""The provisioning server as a queue: boots bring requests, a capacity answers them.

Time is cut in minutes. Each boot brings ``boot_requests`` requests when it starts; the server
answers at most ``capacity x 60`` requests a minute, oldest first, and the boot is done when its
last request is answered, and not before ``boot_s`` after it started. Requests beyond the
capacity are answered 503 with ``Retry-After``: the phone waits and asks again, so it keeps
its place without adding load, and every phone that waits past its own boot time sends one
request per ``retry_after_s`` that the server refuses (the 503 series). While the server is down
nothing answers: a phone that asks then, or is still waiting when it goes down, gives up after
``give_up_s`` and boots from its flash with the keys it has (R2: nothing downloaded changes
nothing), which is how a server outage during a storm leaves phones booted with an expired
license, and R8 then keeps them so. Their waits count in the longest boot, and a phone that
was refused before the server went down counts in the 503s until then. A boot not answered by
the end of the period counts from its start to the end, and the longest boot is then at least
that (``longest_open``); ``waiting_at_end`` counts the boots not done when the period ended.

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
    period_s: float | None = None  # when the period ends; None: at the end of the last minute
    down: B = field(init=False)
    capacity_per_min: F64 = field(init=False)  # requests the server can answer
    answered_per_min: F64 = field(init=False)
    offered_per_min: F64 = field(init=False)  # requests boots brought
    # phone-seconds spent waiting past their own boot time, per minute: whole minutes as
    # deltas of a count (``waiting_minutes``), the parts of minutes as seconds (``waiting_s``)
    waiting_minutes: F64 = field(init=False)
    waiting_s: F64 = field(init=False)
    longest_wait_s: float = 0.0
    longest_open: bool = False  # a boot was still waiting at the end: the longest is a bound
    waiting_at_end: int = 0  # boots not done when the period ended

    def __post_init__(self) -> None:
        self.down = np.zeros(self.minutes, dtype=np.bool_)
        self.capacity_per_min = np.full(self.minutes, self.server.capacity_per_s * MINUTE)
        self.answered_per_min = np.zeros(self.minutes)
        self.offered_per_min = np.zeros(self.minutes)
        self.waiting_minutes = np.zeros(self.minutes + 1)
        self.waiting_s = np.zeros(self.minutes + 1)

    def take_down(self, start_s: float, until_s: float) -> None:
        lo = max(int(start_s // MINUTE), 0)
        hi = min(int(-(-until_s // MINUTE)), self.minutes)
        self.down[lo:hi] = True
        self.capacity_per_min[lo:hi] = 0.0

    def admit(self, starts: F64) -> Admission:
        """Boots starting at ``starts`` (seconds, ascending): when each is done."""
        n = starts.shape[0]
        ends = np.full(n, np.inf)
        served = np.ones(n, dtype=np.bool_)
        if n == 0:
            return Admission(ends, served)
        cost = self.server.boot_requests
        minute = np.clip((starts // MINUTE).astype(np.int64), 0, self.minutes - 1)
        np.add.at(self.offered_per_min, minute, cost)
        now_down = self.down[minute]
        served[now_down] = False
        ends[now_down] = starts[now_down] + self.server.give_up_s
        live = np.nonzero(~now_down)[0]
        done, through_down = self._serve(starts[live], minute[live], commit=False)
        if through_down.any():  # waiting when the server went down: they give up
            gave_up = live[through_down]
            served[gave_up] = False
            outage_s = np.maximum(starts[gave_up], self._next_down(minute[gave_up]) * MINUTE)
            ends[gave_up] = outage_s + self.server.give_up_s
            self._count_refusals(starts[gave_up], outage_s)  # refused until it went down
            live = live[~through_down]
        done, _ = self._serve(starts[live], minute[live], commit=True)
        ends[live] = np.maximum(done, starts[live] + self.server.boot_s)
        self._count_refusals(starts[live], ends[live])
        self._note_waits(starts, ends)
        return Admission(ends, served)

    def _note_waits(self, starts: F64, ends: F64) -> None:
        """Every boot's wait, those that gave up on a dead server too; one never answered
        within the period waited at least until its end."""
        period = self.minutes * MINUTE if self.period_s is None else self.period_s
        never = ~np.isfinite(ends)
        waited = np.where(never, np.maximum(period - starts, 0.0), ends - starts)
        self.longest_wait_s = max(self.longest_wait_s, float(waited.max()))
        self.longest_open = self.longest_open or bool(never.any())
        self.waiting_at_end += int(np.count_nonzero(ends > period))

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
            free = self.capacity_per_min[lo:hi] - self.answered_per_min[lo:hi]
            cumulative = np.concatenate([[0.0], np.cumsum(free)])
            order = np.arange(n, dtype=np.float64)
            base = cumulative[minute - lo] - order * cost
            end = np.maximum.accumulate(base) + (order + 1) * cost
            if end[-1] <= cumulative[-1] + 1e-9 or hi == self.minutes:
                break
            span *= 2
        inside = end <= cumulative[-1] + 1e-9
        k = np.clip(np.searchsorted(cumulative, end - 1e-9, side="left") - 1, 0, hi - lo - 1)
        # within minute k, after what earlier batches took of it (first come, first served),
        # at the minute's capacity; and never sooner than its requests take at the capacity
        capacity = self.capacity_per_min[lo:hi][k]
        answered = self.answered_per_min[lo:hi][k] + (end - cumulative[k])
        within = MINUTE * answered / np.where(capacity > 0, capacity, 1.0)
        alone = starts + self.server.boot_requests / self.server.capacity_per_s
        done = np.where(inside, np.maximum((lo + k) * MINUTE + within, alone), np.inf)
        downs = np.concatenate([[0], np.cumsum(self.down[lo:hi])])
        through = downs[np.minimum(k, hi - lo - 1) + 1] - downs[minute - lo] > 0
        if commit:
            self._consume(lo, cumulative, end - cost, end)
        return done, through

    def _consume(self, lo: int, cumulative: F64, begin: F64, end: F64) -> None:
        """Add to ``answered_per_min`` what the intervals [begin, end) of free capacity take."""
        last = int(np.searchsorted(cumulative, end[-1], side="left"))
        grid = cumulative[: min(last + 1, cumulative.shape[0])]
        full = np.searchsorted(end, grid, side="right")
        partial_index = np.minimum(full, end.shape[0] - 1)
        partial = np.where(
            full < end.shape[0], np.clip(grid - begin[partial_index], 0.0, None), 0.0
        )
        taken = full * self.server.boot_requests + partial
        self.answered_per_min[lo : lo + grid.shape[0] - 1] += np.diff(taken)

    def _next_down(self, minute: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        down_at = np.nonzero(self.down)[0]
        index = np.searchsorted(down_at, minute, side="left")
        return down_at[np.minimum(index, down_at.shape[0] - 1)]

    def _count_refusals(self, starts: F64, until: F64) -> None:
        """Phones still waiting past their own boot time until ``until`` ask again every
        Retry-After and are refused: the seconds each waits, added to the minutes they fall in."""
        late = starts + self.server.boot_s
        slow = until > late + 1e-6
        horizon = self.minutes * MINUTE
        begin = np.minimum(late[slow], horizon)
        end = np.minimum(until[slow], horizon)  # inf: waits to the end of the period
        first = (begin // MINUTE).astype(np.int64)
        last = (end // MINUTE).astype(np.int64)
        same = first == last
        # inside one minute: its seconds; across minutes: the tail of the first, the whole
        # minutes between, the head of the last
        np.add.at(self.waiting_s, first, np.where(same, end - begin, (first + 1) * MINUTE - begin))
        np.add.at(self.waiting_s, last[~same], end[~same] - last[~same] * MINUTE)
        np.add.at(self.waiting_minutes, first[~same] + 1, 1.0)
        np.add.at(self.waiting_minutes, last[~same], -1.0)

    def refused_per_s(self) -> F64:
        """503s a second in each minute: the phones waiting in it (on average over the minute)
        asking again every Retry-After; none while the server is down."""
        phone_s = np.cumsum(self.waiting_minutes) * MINUTE + self.waiting_s
        waiting = phone_s[: self.minutes] / MINUTE
        return np.where(self.down, 0.0, waiting / self.server.retry_after_s)
