"""What every phone keeps between events, as arrays, and when its next timers fall due.

The fields mirror the per-phone engine's ``DeviceState`` (core/device/engine.py): the installed
site key, the slots valid at boot, whether it booted with an expired license (R8), the moment a
reboot was asked for and is waiting for calls (``pending``), its timers; and what the report
needs: the slots held now and since when, and which it ever lost.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from fleetkey.core.device.engine import Reason
from fleetkey.core.device.schedule import (
    DAY_S,
    boot_draw,
    first_poll_s,
    periodic_after,
    picked_day,
)
from fleetkey.simulate.fleet import Fleet

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
INF: Final = np.inf


class Cause(enum.IntEnum):
    """Why a phone reboots: core/device/engine.Reason as a small integer."""

    LICENSE_EXPIRED = 0
    CONFIG_CHANGED = 1
    CHECK_SYNC = 2

    @property
    def reason(self) -> Reason:
        return _REASONS[self]


_REASONS: Final = {
    Cause.LICENSE_EXPIRED: Reason.LICENSE_EXPIRED,
    Cause.CONFIG_CHANGED: Reason.CONFIG_CHANGED,
    Cause.CHECK_SYNC: Reason.CHECK_SYNC,
}


@dataclass
class Phones:
    size: int
    installed: I64 = field(init=False)
    valid_at_boot: I64 = field(init=False)
    expired_boot: npt.NDArray[np.bool_] = field(init=False)
    requested_s: F64 = field(init=False)  # when the last reboot was asked for
    boot_start_s: F64 = field(init=False)
    boot_end_s: F64 = field(init=False)
    boots: I64 = field(init=False)
    seen_config: I64 = field(init=False)
    pending_s: F64 = field(init=False)  # a reboot waiting for calls to end, due then
    pending_cause: I64 = field(init=False)
    next_r4_s: F64 = field(init=False)
    next_config_s: F64 = field(init=False)
    held: I64 = field(init=False)  # slots held until ``drop_at_s``
    drop_at_s: F64 = field(init=False)
    drop_mask: I64 = field(init=False)
    installed_at_s: F64 = field(init=False)

    def __post_init__(self) -> None:
        n = self.size
        self.installed = np.full(n, -1, dtype=np.int64)
        self.valid_at_boot = np.zeros(n, dtype=np.int64)
        self.expired_boot = np.zeros(n, dtype=np.bool_)
        for name in ("requested_s", "boot_start_s", "boot_end_s", "installed_at_s"):
            setattr(self, name, np.zeros(n))
        for name in ("pending_s", "next_r4_s", "next_config_s", "drop_at_s"):
            setattr(self, name, np.full(n, INF))
        for name in ("boots", "seen_config", "pending_cause", "held", "drop_mask"):
            setattr(self, name, np.zeros(n, dtype=np.int64))

    def held_at(self, phones: I64, t: F64) -> I64:
        """Slots held at ``t`` (after a scheduled drop that has come)."""
        dropped = self.drop_at_s[phones] <= t
        return np.where(dropped, self.held[phones] & ~self.drop_mask[phones], self.held[phones])


def next_config_poll(fleet: Fleet, phones: Phones, which: I64, after: F64) -> F64:
    """The first configuration poll strictly after ``after`` (inf: polling off), by the
    engine's rules (``core/device/config.next_config_poll``) on arrays: ``first_poll_s`` and
    ``periodic_after`` for rel and short random, ``picked_day`` on the calendar tables for abs
    and long random, each phone's draw for its current boot from ``boot_draw``."""
    sites = fleet.sites
    site = fleet.site[which]
    cal = fleet.calendar
    enabled = sites.poll_enabled[site]
    mode = sites.poll_mode[site]
    period = sites.poll_period_s[site]
    booted = phones.boot_end_s[which]
    result = np.full(which.shape[0], INF)
    random_mode = (mode == 2).astype(np.float64)
    rel = enabled & ((mode == 1) | ((mode == 2) & (period <= DAY_S)))
    if rel.any():
        first = first_poll_s(random_mode[rel], _draw(fleet, phones, which[rel]), period[rel])
        result[rel] = booted[rel] + periodic_after(first, period[rel], after[rel] - booted[rel])
    daily = enabled & ((mode == 0) | ((mode == 2) & (period > DAY_S)))
    if daily.any():
        idx = np.nonzero(daily)[0]
        random_long = mode[idx] == 2
        draw = np.where(random_long, _draw(fleet, phones, which[idx]), 0.0)
        nominal = draw * sites.poll_window_s[site[idx]]
        days = np.ceil(period[idx] / DAY_S).astype(np.int64)
        pick = np.where(random_long, fleet.mac_day[which[idx]], 0)
        opens, closes = sites.poll_time[site[idx]], sites.poll_end[site[idx]]
        wraps = sites.poll_wraps[site[idx]].astype(np.int64)

        def moment(day: I64) -> F64:  # ``schedule.window_moment`` (abs: the window's start)
            start = cal.local_at(opens, day)
            span = np.maximum(cal.local_at(closes, day + wraps) - start, 0.0)
            at: F64 = np.where(random_long, start + draw * np.nan_to_num(span), start)
            return np.where(day < 0, -INF, at)

        # as the engine: from one chosen day before the night an ordinary window gives
        _, day = cal.next_at(opens, sites.tz[site[idx]], after[idx] - nominal)
        day = picked_day(cal.base + day, days, pick) - cal.base - days
        for _ in range(2):  # the night found is at most two chosen days on
            day = np.where(moment(day) <= after[idx], day + days, day)
        result[idx] = moment(day)
    return result


def _draw(fleet: Fleet, phones: Phones, which: I64) -> F64:
    """Each phone's draw for its current boot, as the engine draws it."""
    drawn: F64 = boot_draw(fleet.draw_key[which], phones.boots[which].astype(np.uint64))
    return drawn
