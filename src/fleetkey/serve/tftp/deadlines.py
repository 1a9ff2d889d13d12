"""Timeouts of many short transfers on one event-loop timer: a hashed timing wheel.

A TFTP transfer needs a retransmission timer from its first packet to its end, but most end
within milliseconds, long before the timer (one second or more) could fire. With a loop timer
per transfer, making and cancelling it cost uvloop 3.2 µs per transfer, about as much as
receiving the final ACK. Here a transfer joins the bucket of the tick its deadline falls in (a
dict insert) and leaves it by a dict removal; one loop timer, set for the earliest bucket,
fires once per tick while anything waits. Deadlines are kept to within one tick (TICK_S): the
TFTP timeout is whole seconds (RFC 2349), so 20 ms late is 2 % of the shortest one.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from typing import Final, Protocol

log = logging.getLogger(__name__)

TICK_S: Final = 0.02


class Expiring(Protocol):
    def expired(self) -> None:
        """The deadline it was scheduled for has passed (it may have moved since)."""

    def close(self) -> None:
        """End now: the deadlines are closing (the server stops)."""


class Deadlines:
    """Call ``expired()`` on each scheduled item once its deadline has passed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float = TICK_S) -> None:
        self._loop = loop
        self._tick = tick_s
        self._buckets: dict[int, dict[Expiring, None]] = {}
        self._ticks: list[int] = []  # heap of the ticks that have a bucket
        self._slots: dict[Expiring, int] = {}  # item → the tick of its bucket
        self._timer: asyncio.TimerHandle | None = None
        self._timer_tick = 0
        self._firing = False  # in _fire, which sets the timer itself when it is done

    def schedule(self, item: Expiring, deadline: float) -> None:
        """Expire ``item`` at loop time ``deadline`` (or up to a tick later); replaces any
        earlier schedule of it."""
        if item in self._slots:
            self.cancel(item)
        tick = math.ceil(deadline / self._tick)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = {}
            heapq.heappush(self._ticks, tick)
            if not self._firing and (self._timer is None or tick < self._timer_tick):
                self._arm(tick)
        bucket[item] = None
        self._slots[item] = tick

    def cancel(self, item: Expiring) -> None:
        """Forget ``item``; nothing happens if it is not scheduled."""
        tick = self._slots.pop(item, None)
        if tick is not None:
            bucket = self._buckets.get(tick)
            if bucket is not None:
                bucket.pop(item, None)

    def __contains__(self, item: object) -> bool:
        """Whether ``item`` is scheduled."""
        return item in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def close(self) -> None:
        """Cancel the loop timer and close every item still waiting (an upload's dally)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = list(self._slots)
        self._buckets.clear()
        self._ticks.clear()
        self._slots.clear()
        for item in waiting:
            item.close()

    def _arm(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_tick = tick
        self._timer = self._loop.call_at(tick * self._tick, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        ticks, buckets, slots = self._ticks, self._buckets, self._slots
        self._firing = True
        try:
            while ticks and ticks[0] * self._tick <= now:
                bucket = buckets.pop(heapq.heappop(ticks))
                for item in bucket:
                    del slots[item]
                for item in bucket:
                    try:  # one item's failure must not keep the others from expiring
                        item.expired()  # may schedule again: a later bucket, never this one
                    except Exception:
                        log.exception("a TFTP transfer's timeout failed")
        finally:
            self._firing = False
            if ticks:
                self._arm(ticks[0])
