"""A phone's configuration as the license rules see it, and when its polls fall due.

Parameters and defaults follow domain.md §5.4 and spec §3: ``license.polling.time`` (02:00
local), ``prov.polling.enabled/mode/period/time/timeRandomEnd`` (abs, rel, random; period at
least 3600 s, rounded up to whole days in abs and random modes), and
``voIpProt.SIP.specialEvent.checkSync.alwaysReboot``. Times are computed in the phone's time
zone and returned in UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from fleetkey.core.device.schedule import (
    DAY_S,
    daily_moment,
    first_poll_s,
    mac_day,
    next_daily_day,
    periodic_after,
    picked_day,
    window_moment,
    window_s,
)
from fleetkey.errors import InputError

LEGACY_BEFORE: Final = (3, 1, 2)  # firmware before SIP 3.1.2: license files only when needed


class PollMode(enum.StrEnum):
    ABS = "abs"  # daily at prov.polling.time
    REL = "rel"  # every period seconds after boot
    RANDOM = "random"  # a random moment in [time, timeRandomEnd]; the day from the MAC


@dataclass(frozen=True, slots=True)
class ConfigPolling:
    enabled: bool = False
    mode: PollMode = PollMode.ABS
    period_s: int = DAY_S
    at: time = time(3, 0)
    random_end: time | None = None

    def __post_init__(self) -> None:
        if self.period_s < 3600:
            raise InputError(f"prov.polling.period {self.period_s} is below 3600 seconds")
        if self.mode is PollMode.RANDOM and self.random_end is None:
            raise InputError("prov.polling.mode random needs prov.polling.timeRandomEnd")


@dataclass(frozen=True, slots=True)
class PhoneConfig:
    mac: str
    model: str = "VVX_500"
    firmware: str = "5.9.7.4477"
    timezone: str = "UTC"
    license_polling_time: time = time(2, 0)
    polling: ConfigPolling = field(default_factory=ConfigPolling)
    always_reboot: bool = False  # checkSync.alwaysReboot
    enabled_features: frozenset[int] = frozenset()  # licensable features switched on (slots)
    config_files: tuple[str, ...] = ()  # CONFIG_FILES of the master configuration
    tag_serial: bool = False  # device.prov.tagSerialNo: (SN:<mac>) in the User-Agent; 0 by default

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def legacy(self) -> bool:
        """R2's legacy case: firmware before 3.1.2."""
        return firmware_tuple(self.firmware) < LEGACY_BEFORE

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)


def firmware_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def next_config_poll(
    config: PhoneConfig, booted: datetime, after: datetime, draw: float
) -> datetime | None:
    """When the next configuration poll falls due after ``after`` (None when polling is off).

    ``rel``: every period after boot. ``abs``: daily (or every ``period`` days) at ``time``.
    ``random``: with a period of a day or less, a moment in the first period after boot and
    then every period; longer, on a day chosen from the MAC (stable across reboots) at a time
    in [time, timeRandomEnd] (domain.md §5.4). ``draw`` (in [0, 1)) is the phone's draw for
    this boot (``schedule.boot_draw``): it places the random moment, again at each boot.
    """
    polling = config.polling
    if not polling.enabled:
        return None
    random_mode = polling.mode is PollMode.RANDOM
    if polling.mode is PollMode.REL or (random_mode and polling.period_s <= DAY_S):
        first = first_poll_s(int(random_mode), draw, polling.period_s)
        elapsed = (after - booted).total_seconds()
        moment = booted + timedelta(seconds=periodic_after(first, polling.period_s, elapsed))
        if moment <= after:  # ``after`` was a poll, rounded to the microsecond below it
            moment = booted + timedelta(
                seconds=periodic_after(first, polling.period_s, elapsed + 1e-3)
            )
        return moment
    days = -(-polling.period_s // DAY_S)  # rounded up to whole days
    zone = config.zone
    if not random_mode:
        day = next_daily_day(after, polling.at, zone).toordinal()
        return daily_moment(date.fromordinal(picked_day(day, days, 0)), polling.at, zone)
    end = polling.random_end
    assert end is not None  # noqa: S101  # checked in ConfigPolling
    # the MAC's day whose moment comes first after ``after``: from the night an ordinary
    # window would give, one chosen day earlier (a night an hour longer may still be ahead)
    nominal = timedelta(seconds=draw * window_s(polling.at, end))
    day = next_daily_day(after - nominal, polling.at, zone).toordinal()
    day = picked_day(day, days, mac_day(config.mac, days)) - days
    while (moment := window_moment(date.fromordinal(day), polling.at, end, zone, draw)) <= after:
        day += days
    return moment
