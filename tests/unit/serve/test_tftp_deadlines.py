"""The TFTP transfers' timing wheel, on a real uvloop event loop."""

from __future__ import annotations

import asyncio

import uvloop

from fleetkey.serve.tftp.deadlines import Deadlines

TICK = 0.01


class Item:
    def __init__(self, name: str, log: list[tuple[str, float]], loop: asyncio.AbstractEventLoop):
        self.name, self.log, self.loop = name, log, loop
        self.closed = False
        self.again: tuple[Deadlines, float] | None = None  # schedule itself once more
        self.fail = False

    def expired(self) -> None:
        self.log.append((self.name, self.loop.time()))
        if self.again is not None:
            deadlines, delay = self.again
            self.again = None
            deadlines.schedule(self, self.loop.time() + delay)
        if self.fail:
            raise RuntimeError("boom")

    def close(self) -> None:
        self.closed = True


async def _expiries(plan: list[tuple[str, float]]) -> tuple[list[tuple[str, float]], float]:
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    deadlines = Deadlines(loop, TICK)
    start = loop.time()
    for name, delay in plan:
        deadlines.schedule(Item(name, log, loop), start + delay)
    await asyncio.sleep(max(delay for _, delay in plan) + 5 * TICK)
    assert len(deadlines) == 0
    deadlines.close()
    return log, start


def test_items_expire_in_deadline_order_never_early_and_at_most_a_tick_or_so_late() -> None:
    plan = [("c", 0.15), ("a", 0.05), ("b", 0.1), ("a2", 0.05)]
    log, start = uvloop.run(_expiries(plan))
    assert [name for name, _ in log] == ["a", "a2", "b", "c"]
    wanted = dict(plan)
    for name, at in log:
        assert at >= start + wanted[name]
        assert at < start + wanted[name] + 5 * TICK  # a tick, plus a busy test machine


async def _cancelled() -> tuple[list[tuple[str, float]], int]:
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    deadlines = Deadlines(loop, TICK)
    kept, dropped = Item("kept", log, loop), Item("dropped", log, loop)
    deadlines.schedule(kept, loop.time() + 0.05)
    deadlines.schedule(dropped, loop.time() + 0.05)
    deadlines.cancel(dropped)
    deadlines.cancel(dropped)  # twice: nothing happens
    assert kept in deadlines
    assert dropped not in deadlines
    await asyncio.sleep(0.15)
    assert kept not in deadlines  # expired: no longer scheduled
    left = len(deadlines)
    deadlines.close()
    return log, left


def test_a_cancelled_item_never_expires_and_the_others_still_do() -> None:
    log, left = uvloop.run(_cancelled())
    assert [name for name, _ in log] == ["kept"]
    assert left == 0


async def _rescheduled() -> list[str]:
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    deadlines = Deadlines(loop, TICK)
    moved, late = Item("moved", log, loop), Item("late", log, loop)
    deadlines.schedule(moved, loop.time() + 0.2)
    deadlines.schedule(late, loop.time() + 0.12)
    deadlines.schedule(moved, loop.time() + 0.04)  # replaces the first: earlier now
    again = Item("again", log, loop)
    again.again = (deadlines, 0.03)  # expires, schedules itself, expires again
    deadlines.schedule(again, loop.time() + 0.02)
    await asyncio.sleep(0.35)
    deadlines.close()
    return [name for name, _ in log]


def test_scheduling_again_replaces_the_deadline_even_from_inside_an_expiry() -> None:
    assert uvloop.run(_rescheduled()) == ["again", "moved", "again", "late"]


async def _one_fails() -> tuple[list[str], bool]:
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    deadlines = Deadlines(loop, TICK)
    first, second, later = (
        Item("first", log, loop),
        Item("second", log, loop),
        Item("later", log, loop),
    )
    first.fail = True
    deadlines.schedule(first, loop.time() + 0.03)
    deadlines.schedule(second, loop.time() + 0.03)
    deadlines.schedule(later, loop.time() + 0.08)
    await asyncio.sleep(0.2)
    deadlines.close()
    return [name for name, _ in log], later.closed


def test_an_item_that_fails_keeps_no_other_from_expiring() -> None:
    names, closed = uvloop.run(_one_fails())
    assert names == ["first", "second", "later"]
    assert not closed


async def _closing() -> tuple[list[str], bool, bool]:
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    deadlines = Deadlines(loop, TICK)
    waiting, cancelled = Item("waiting", log, loop), Item("cancelled", log, loop)
    deadlines.schedule(waiting, loop.time() + 0.05)
    deadlines.schedule(cancelled, loop.time() + 0.05)
    deadlines.cancel(cancelled)
    deadlines.close()
    await asyncio.sleep(0.1)  # the loop timer is gone too: nothing expires
    return [name for name, _ in log], waiting.closed, cancelled.closed


def test_closing_closes_what_still_waits_and_expires_nothing_afterwards() -> None:
    names, waiting_closed, cancelled_closed = uvloop.run(_closing())
    assert names == []
    assert waiting_closed
    assert not cancelled_closed
