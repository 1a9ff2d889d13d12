"""A phone's configuration as the license rules see it, and when its polls fall due.

Parameters and defaults follow domain.md §5.4 and spec §3: ``license.polling.time`` (02:00
local), ``prov.polling.enabled/mode/period/time/timeRandomEnd`` (abs, rel, random; period at
least 3600 s, rounded up to whole days in abs and random modes), and
``voIpProt.SIP.specialEvent.checkSync.alwaysReboot``. Times are computed in the phone's time
zone and returned in UTC.
"""

from __future__ import annotations

import enum
import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from fleetkey.errors import InputError

LEGACY_BEFORE: Final = (3, 1, 2)  # firmware before SIP 3.1.2: license files only when needed
DAY_S: Final = 86400


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


def next_daily(after: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first local ``at`` strictly after ``after``, in UTC (DST gaps move it forward)."""
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(UTC)


def next_config_poll(
    config: PhoneConfig, booted: datetime, after: datetime, rng: random.Random
) -> datetime | None:
    """When the next configuration poll falls due after ``after`` (None when polling is off).

    ``rel``: every period after boot. ``abs``: daily (or every ``period`` days) at ``time``.
    ``random``: with a period of a day or less, a random moment in the first period after boot
    and then every period; longer, on a day chosen from the MAC (stable across reboots) at a
    time in [time, timeRandomEnd] drawn again at each boot (domain.md §5.4).
    """
    polling = config.polling
    if not polling.enabled:
        return None
    if polling.mode is PollMode.REL:
        elapsed = (after - booted).total_seconds()
        periods = int(elapsed // polling.period_s) + 1
        return booted + timedelta(seconds=periods * polling.period_s)
    days = -(-polling.period_s // DAY_S)  # rounded up to whole days
    zone = config.zone
    if polling.mode is PollMode.ABS:
        moment = next_daily(after, polling.at, zone)
        while days > 1 and _day_number(moment, zone) % days != 0:
            moment = next_daily(moment, polling.at, zone)
        return moment
    assert polling.random_end is not None  # noqa: S101  # checked in ConfigPolling
    if polling.period_s <= DAY_S:
        first = booted + timedelta(seconds=rng.uniform(0, polling.period_s))
        if first > after:
            return first
        periods = int((after - first).total_seconds() // polling.period_s) + 1
        return first + timedelta(seconds=periods * polling.period_s)
    offset = rng.uniform(0, _window_s(polling.at, polling.random_end))
    pick = _mac_day(config.mac, days)
    moment = next_daily(after - timedelta(seconds=offset), polling.at, zone)
    while _day_number(moment, zone) % days != pick:
        moment = next_daily(moment, polling.at, zone)
    return moment + timedelta(seconds=offset)


def _window_s(start: time, end: time) -> float:
    span = (end.hour * 3600 + end.minute * 60) - (start.hour * 3600 + start.minute * 60)
    return float(span if span > 0 else span + DAY_S)


def _day_number(moment: datetime, zone: ZoneInfo) -> int:
    return moment.astimezone(zone).date().toordinal()


def _mac_day(mac: str, days: int) -> int:
    digest = hashlib.sha256(mac.lower().encode()).digest()
    return int.from_bytes(digest[:4], "big") % days
