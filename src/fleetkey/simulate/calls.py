"""Phone calls as a stateless random process: who is in a call when, without a call list.

A reboot waits for the phone's calls to end (R4), so the simulator needs to know, for a million
phones at the moments that matter, whether each is in a call and until when. Time is cut in
half-hour slots; in each slot a phone has at most one call, with probability
``calls_per_hour x slot``, starting at a uniform moment of the slot and lasting a uniform time in
[0, 2 x call_minutes] (at most one slot, so a call only runs into the next slot). Every draw is a
hash of (phone key, slot): the same phone is in the same calls whichever way it is asked, which
is what lets the per-phone engine be fed exactly the calls the simulator sees.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from fleetkey.core.device.schedule import mix64, unit
from fleetkey.simulate.scenario import CALL_SLOT_S

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

_MAX_CHAIN: Final = 64  # calls chained back to back past this are a bug in the rates
# the hash of the draws is the device engine's (splitmix64, core/device/schedule.py)
mix = mix64


def slot_calls(
    keys: U64, slots: npt.NDArray[np.int64], chance: F64, mean_s: F64
) -> tuple[npt.NDArray[np.bool_], F64, F64]:
    """For each (phone key, slot): is there a call, and its start and end (seconds)."""
    h = mix(mix(keys) + slots.astype(np.uint64))
    has = unit(h) < chance
    h2 = mix(h)
    start = slots * float(CALL_SLOT_S) + unit(h2) * CALL_SLOT_S
    end = start + unit(mix(h2)) * 2.0 * mean_s
    return has, start, end


def idle_from(keys: U64, at: F64, chance: F64, mean_s: F64) -> F64:
    """The first moment at or after ``at`` when each phone is in no call (``start <= t < end``
    is in the call)."""
    t = at.copy()
    for _ in range(_MAX_CHAIN):
        slot = np.floor(t / CALL_SLOT_S).astype(np.int64)
        moved = np.zeros(t.shape, dtype=np.bool_)
        for back in (1, 0):
            has, start, end = slot_calls(keys, slot - back, chance, mean_s)
            covering = has & (start <= t) & (t < end)
            t = np.where(covering, np.maximum(t, end), t)
            moved |= covering
        if not moved.any():
            return t
    raise RuntimeError("calls chain back to back without end; the call rate is too high")


def calls_between(
    key: int, begin: float, end: float, chance: float, mean_s: float
) -> list[tuple[float, float]]:
    """One phone's calls that start in [begin, end), as (start, end) seconds: what the per-phone
    engine is fed in the agreement test."""
    first, last = int(begin // CALL_SLOT_S) - 1, int(end // CALL_SLOT_S) + 1
    slots = np.arange(first, last + 1, dtype=np.int64)
    keys = np.full(slots.shape, key, dtype=np.uint64)
    has, start, stop = slot_calls(
        keys, slots, np.full(slots.shape, chance), np.full(slots.shape, mean_s)
    )
    return [
        (float(s), float(e))
        for s, e, h in zip(start, stop, has, strict=True)
        if h and begin <= s < end and e > s
    ]
