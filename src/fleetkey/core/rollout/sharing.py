"""The server is shared: the load other rollouts plan, and what it leaves a new plan per slot.

Every rollout in one store is rolled out by the same provisioning servers (several ``serve``
processes behind one balancer share one measured capacity), so a plan made while others are
planned, running or paused must leave room for them. Their load enters as :class:`Load`
intervals (requests per second from ``start`` to ``end``); the new plan's slot may then carry
what ``capacity x headroom`` leaves above the *highest* load of the others at any moment of the
slot. Plans share one slot grid (multiples of ``slot_s`` seconds since the Unix epoch), so a
plan with the same slot length sees another's waves exactly; a load straddling two slots counts
whole in each, which may leave a little capacity unused but never overloads the server.

Pure: no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)  # the slot grid every plan shares
EPSILON: Final = 1e-9  # a budget met exactly is not exceeded by rounding


@dataclass(frozen=True, slots=True)
class Load:
    """``rate`` requests per second that another rollout (``rollout``, when known) puts on
    the server from ``start`` to ``end``."""

    start: datetime
    end: datetime
    rate: float
    rollout: int | None = None


def grid_start(moment: datetime, slot_s: int) -> datetime:
    """The start of the grid slot of ``slot_s`` seconds that holds ``moment``."""
    offset = (moment - EPOCH).total_seconds() % slot_s
    return moment - timedelta(seconds=offset)


def peak_by_slot(
    loads: Iterable[Load], origin: datetime, slot_s: int, until: datetime
) -> dict[int, float]:
    """Slot index (slot 0 starts at ``origin``) → the highest summed rate of ``loads`` at any
    moment of that slot, for the slots before ``until`` that carry any."""
    steps: dict[datetime, float] = {}
    for load in loads:
        if load.rate > 0 and load.end > load.start:
            steps[load.start] = steps.get(load.start, 0.0) + load.rate
            steps[load.end] = steps.get(load.end, 0.0) - load.rate
    found: dict[int, float] = {}
    level = 0.0
    horizon = (until - origin).total_seconds()
    for begin, end in itertools.pairwise(sorted(steps)):
        level += steps[begin]
        if level <= EPSILON:
            continue
        first = max(math.floor((begin - origin).total_seconds() / slot_s), 0)
        last = math.ceil(min((end - origin).total_seconds(), horizon) / slot_s) - 1
        for index in range(first, last + 1):
            found[index] = max(found.get(index, 0.0), level)
    return found


def room_by_slot(
    busy: dict[int, float], per_slot: float, slot_s: int, cost: float
) -> dict[int, int]:
    """Slot index → check-syncs (each ``cost`` requests) a slot may hold where ``busy`` leaves
    less than ``per_slot`` (the budget in check-syncs per slot, unrounded)."""
    scale = slot_s / cost  # req/s → check-syncs per slot
    whole = math.floor(per_slot)
    return {
        slot: max(0, min(whole, math.floor(per_slot - rate * scale + EPSILON)))
        for slot, rate in busy.items()
    }
