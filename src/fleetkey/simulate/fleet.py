"""The fleet as arrays: one row per phone (its site, time zone, settings), and the calendar
tables that turn local times into seconds since the scenario's start.

Phones of a site behave alike but for their MAC, their calls and their random draws, so every
per-site setting is an array gathered by site index, and every local-time question (the next
02:00 in Europe/Berlin after this moment) is a lookup in a table computed once per (time zone,
local time) by the engine's own ``core/device/schedule.daily_moment`` (DST gaps and repeated
hours as the engine places them); the MAC-chosen day and the random window are the engine's
``mac_day`` and ``window_s``, the per-boot draws its ``boot_draw`` of ``draw_key``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from fleetkey.core.device.config import ConfigPolling, PollMode
from fleetkey.core.device.schedule import (
    DAY_S,
    daily_moment,
    draw_key,
    mac_day,
    window_s,
    window_wraps,
)
from fleetkey.simulate.scenario import CALL_SLOT_S, Scenario, SiteGroup

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
INF: Final = np.inf
MARGIN_DAYS: Final = 3  # tables start two days before the start and run past the end


@dataclass(frozen=True)
class Sites:
    """Per site: serial, time zone, settings; phones of site i are rows first[i]:first[i+1]."""

    serials: tuple[str, ...]
    timezones: tuple[str, ...]
    first: I64
    tz: I32  # index into Calendar.zones
    license_time: I32  # index into Calendar.times (license.polling.time)
    poll_time: I32  # index into Calendar.times (prov.polling.time)
    poll_end: I32  # index into Calendar.times (random mode's timeRandomEnd, else poll_time)
    poll_wraps: npt.NDArray[np.bool_]  # random mode: the window ends the next day
    poll_enabled: npt.NDArray[np.bool_]
    poll_mode: I32  # 0 abs, 1 rel, 2 random
    poll_period_s: F64
    poll_window_s: F64  # random mode: timeRandomEnd - time
    always_reboot: npt.NDArray[np.bool_]
    call_chance: F64
    call_mean_s: F64
    phone_mask: I64  # perpetual phone licenses (a slot bitmask)
    windows: tuple[object, ...]  # Window | None, for the rollout planner


@dataclass(frozen=True)
class Calendar:
    """Local days as indices (``ordinal - base``) and, per (zone, local time), the moment of that
    local time on each day, in seconds since the start; per zone, each local midnight."""

    base: int  # date ordinal of day index 0
    zones: tuple[str, ...]
    times: tuple[tuple[int, time], ...]  # (zone index, local time)
    at_s: F64  # [times index, day index] seconds since the start
    midnight_s: F64  # [zone index, day index] seconds since the start

    def day_of(self, zone: I32, t: F64) -> I64:
        """The local day index of each moment in its zone."""
        last = self.midnight_s.shape[1] - 1
        guess = np.floor((t - self.midnight_s[zone, 0]) / DAY_S).astype(np.int64)
        guess = np.clip(guess, 0, last - 1)
        guess = np.where(t < self.midnight_s[zone, guess], guess - 1, guess)
        after = self.midnight_s[zone, np.clip(guess + 1, 0, last)]
        day: I64 = np.where(t >= after, guess + 1, guess)
        return day

    def local_at(self, which: I32, day: I64) -> F64:
        """The moment of local time ``which`` on day index ``day`` (inf past the tables)."""
        inside = (day >= 0) & (day < self.at_s.shape[1])
        values = self.at_s[which, np.clip(day, 0, self.at_s.shape[1] - 1)]
        return np.where(inside, values, INF)

    def next_at(self, which: I32, zone: I32, after: F64) -> tuple[F64, I64]:
        """The first local ``which`` strictly after ``after``, and its day index."""
        day = self.day_of(zone, after)
        moment = self.local_at(which, day)
        day = np.where(moment <= after, day + 1, day)
        return self.local_at(which, day), day


@dataclass(frozen=True)
class Fleet:
    sites: Sites
    calendar: Calendar
    site: I32  # per phone
    key: npt.NDArray[np.uint64]  # per phone: the seed of its calls
    draw_key: npt.NDArray[np.uint64]  # per phone: the engine's draw key (schedule.draw_key)
    mac_day: I64  # per phone: random mode's MAC-chosen day (mod period days), domain.md §5.4
    macs_first: int  # MAC of phone 0; phone i has macs_first + i

    @property
    def size(self) -> int:
        return int(self.site.shape[0])

    def mac(self, phone: int) -> str:
        return f"{self.macs_first + phone:012x}"


FIRST_MAC: Final = 0x0004F2000000  # Polycom's OUI, as the emulator numbers its phones


def build_fleet(scenario: Scenario, seed: int = 0) -> Fleet:
    serials: list[str] = []
    zones: list[str] = []
    groups: list[SiteGroup] = []
    counts: list[int] = []
    for group in scenario.groups:
        for i, serial in enumerate(group.serials()):
            serials.append(serial)
            zones.append(group.timezones[i % len(group.timezones)])
            counts.append(group.phones)
            groups.append(group)
    zone_names = tuple(sorted(set(zones)))
    times: dict[tuple[int, time], int] = {}

    def time_index(zone: str, at: time) -> int:
        return times.setdefault((zone_names.index(zone), at), len(times))

    license_time = [
        time_index(z, g.license_polling_time) for z, g in zip(zones, groups, strict=True)
    ]
    poll_time = [time_index(z, g.polling.at) for z, g in zip(zones, groups, strict=True)]
    poll_end = [
        time_index(z, g.polling.random_end or g.polling.at)
        for z, g in zip(zones, groups, strict=True)
    ]
    first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    sites = Sites(
        serials=tuple(serials),
        timezones=tuple(zones),
        first=first,
        tz=np.array([zone_names.index(z) for z in zones], dtype=np.int32),
        license_time=np.array(license_time, dtype=np.int32),
        poll_time=np.array(poll_time, dtype=np.int32),
        poll_end=np.array(poll_end, dtype=np.int32),
        poll_wraps=np.array([_wraps(g.polling) for g in groups], dtype=np.bool_),
        poll_enabled=np.array([g.polling.enabled for g in groups], dtype=np.bool_),
        poll_mode=np.array([_MODES[g.polling.mode] for g in groups], dtype=np.int32),
        poll_period_s=np.array([g.polling.period_s for g in groups], dtype=np.float64),
        poll_window_s=np.array([_window_s(g.polling) for g in groups], dtype=np.float64),
        always_reboot=np.array([g.always_reboot for g in groups], dtype=np.bool_),
        call_chance=np.array([g.calls_per_hour * CALL_SLOT_S / 3600 for g in groups]),
        call_mean_s=np.array([g.call_minutes * 60.0 for g in groups]),
        phone_mask=np.array([mask(g.phone_slots) for g in groups], dtype=np.int64),
        windows=tuple(g.window for g in groups),
    )
    calendar = _calendar(scenario, zone_names, tuple(sorted(times, key=times.__getitem__)))
    total = int(first[-1])
    site = np.repeat(np.arange(len(serials), dtype=np.int32), counts)
    keys = np.arange(total, dtype=np.uint64) + np.uint64(seed) * np.uint64(1 << 40)
    macs = np.arange(total, dtype=np.uint64) + np.uint64(FIRST_MAC)
    draws = draw_key(macs, seed)
    return Fleet(sites, calendar, site, keys, draws, _mac_days(total, sites), FIRST_MAC)


_MODES: Final = {PollMode.ABS: 0, PollMode.REL: 1, PollMode.RANDOM: 2}


def mask(slots: frozenset[int]) -> int:
    return sum(1 << slot for slot in slots)


def _window_s(polling: ConfigPolling) -> float:
    end = polling.random_end
    return 0.0 if end is None else window_s(polling.at, end)


def _wraps(polling: ConfigPolling) -> bool:
    end = polling.random_end
    return end is not None and window_wraps(polling.at, end)


def _calendar(
    scenario: Scenario, zones: tuple[str, ...], times: tuple[tuple[int, time], ...]
) -> Calendar:
    first_day = scenario.start.date() - timedelta(days=2)
    days = scenario.days + 2 * MARGIN_DAYS
    origin = scenario.start
    at = np.empty((len(times), days), dtype=np.float64)
    midnight = np.empty((len(zones), days), dtype=np.float64)
    infos = [ZoneInfo(z) for z in zones]
    for d in range(days):
        day: date = first_day + timedelta(days=d)
        for z, info in enumerate(infos):
            midnight[z, d] = _seconds(daily_moment(day, time(0, 0), info), origin)
        for i, (z, local) in enumerate(times):
            at[i, d] = _seconds(daily_moment(day, local, infos[z]), origin)
    return Calendar(first_day.toordinal(), zones, times, at, midnight)


def _seconds(moment: datetime, origin: datetime) -> float:
    return (moment.astimezone(UTC) - origin).total_seconds()


def _mac_days(total: int, sites: Sites) -> I64:
    """Random mode with a period over a day: the day (ordinal mod period days) the engine's
    ``mac_day`` chooses from each phone's MAC."""
    days = np.zeros(total, dtype=np.int64)
    long_random = (sites.poll_mode == 2) & (sites.poll_period_s > DAY_S) & sites.poll_enabled
    for s in np.nonzero(long_random)[0]:
        period_days = -(-int(sites.poll_period_s[s]) // DAY_S)
        for phone in range(int(sites.first[s]), int(sites.first[s + 1])):
            days[phone] = mac_day(f"{FIRST_MAC + phone:012x}", period_days)
    return days
