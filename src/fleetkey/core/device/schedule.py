"""When a phone's timers fall due: the one definition the engine and the simulator both use.

The daily license check (R3, ``license.polling.time``) and the configuration polls
(``prov.polling.*``, domain.md §5.4) are placed here. The calendar part works on dates and
time zones: ``daily_moment`` is the moment of a local time on a local day (a time in a DST gap
is moved forward by the gap, a repeated time is its first occurrence: a daily timer fires once
a local day), and ``next_daily`` the first such moment strictly after another, compared as
instants, never as wall-clock times. The arithmetic part (``periodic_after``, ``picked_day``,
``first_poll_s``, ``lapse_check_day``, the per-boot draws) is written with operators only, so the
per-phone engine calls it with numbers and the simulator with numpy arrays of a million phones:
one rule, two callers. Pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, cast, overload
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # the simulator's arrays; the core imports no numpy when it runs
    from numpy.typing import NDArray

DAY_S: Final = 86400
# the arithmetic rules below take numbers (the engine) or numpy arrays of them (the simulator,
# a million phones at once) and give the first operand's kind back: a number for numbers, an
# array for arrays (the simulator passes an array first, the engine numbers only)
Array: TypeAlias = "NDArray[Any]"
Num = TypeVar("Num", int, float, "NDArray[Any]")
Bits = TypeVar("Bits", int, "NDArray[Any]")  # 64-bit hashes: ints, or uint64 arrays
Operand: TypeAlias = "int | float | NDArray[Any]"
Mask = TypeVar("Mask", int, "NDArray[Any]")  # slot masks and flags: ints, bools, or arrays
Flags: TypeAlias = "int | NDArray[Any]"

_MASK: Final = (1 << 64) - 1
_GOLDEN: Final = 0x9E3779B97F4A7C15  # splitmix64 (Steele, Lea, Flood 2014)
_M1: Final = 0xBF58476D1CE4E5B9
_M2: Final = 0x94D049BB133111EB


def daily_moment(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The moment (UTC) of local time ``at`` on local ``day``: in a DST gap, moved forward by
    the gap (02:30 on a spring-forward night is 03:30 summer time); when the clock repeats the
    hour, the first occurrence."""
    local = datetime.combine(day, at, tzinfo=zone)  # fold=0: the offset before the change
    return local.astimezone(UTC)


def next_daily(after: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first ``daily_moment`` strictly after ``after``, in UTC (compared as instants)."""
    return daily_moment(next_daily_day(after, at, zone), at, zone)


def next_daily_day(after: datetime, at: time, zone: ZoneInfo) -> date:
    """The local day of ``next_daily(after, at, zone)``."""
    instant = after.astimezone(UTC)
    today = after.astimezone(zone).date()
    day = today - timedelta(days=1)
    while daily_moment(day, at, zone) <= instant:
        day += timedelta(days=1)
    return day


def window_moment(day: date, start: time, end: time, zone: ZoneInfo, draw: float) -> datetime:
    """Random polling's moment on local ``day``: ``draw`` (in [0, 1)) of the way through that
    night's window [start, end) as the clock runs that night, its ends placed by
    ``daily_moment`` (past midnight when end <= start): an hour shorter when the clocks go
    forward in it, an hour longer when they go back, so the moment is always inside the local
    window (domain.md §5.4), never an hour past it nor short of its last hour."""
    opens = daily_moment(day, start, zone)
    closes = daily_moment(day + timedelta(days=int(window_wraps(start, end))), end, zone)
    return opens + timedelta(seconds=draw * max((closes - opens).total_seconds(), 0.0))


def window_wraps(start: time, end: time) -> bool:
    """Whether the local window [start, end) ends the next day."""
    return end <= start


def window_s(start: time, end: time) -> float:
    """The length of the local window [start, end) in seconds; past midnight when end <= start."""
    span = (end.hour * 3600 + end.minute * 60 + end.second) - (
        start.hour * 3600 + start.minute * 60 + start.second
    )
    return float(span if span > 0 else span + DAY_S)


def mac_day(mac: str, days: int) -> int:
    """Random polling over a day: the day (ordinal modulo ``days``) the MAC chooses, stable
    across reboots (sha256 of the lowercase MAC)."""
    digest = hashlib.sha256(mac.lower().encode()).digest()
    return int.from_bytes(digest[:4], "big") % days


# per-boot draws: a hash of (the phone's key, its boot number), the same whoever asks
def mix64(x: Bits) -> Bits:
    """splitmix64's finaliser, on a Python int or a numpy uint64 array (wrapping at 2**64)."""
    z = (x + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


@overload
def unit(x: int) -> float: ...
@overload
def unit(x: Array) -> Array: ...
def unit(x: int | Array) -> float | Array:
    """A uniform draw in [0, 1) from a 64-bit hash."""
    return (x >> 11) / float(1 << 53)


def mac_value(mac: str) -> int:
    """A MAC as the integer its hex digits spell (a name that is not hex: a hash of it)."""
    try:
        return int(mac, 16) & _MASK
    except ValueError:
        return int.from_bytes(hashlib.sha256(mac.encode()).digest()[:8], "big")


def draw_key(mac_value: Bits, seed: int = 0) -> Bits:
    """A phone's key for its draws, from its MAC as an integer and a run's seed: the MAC mixed
    with a hash of the seed, so any two seeds give other draws and none overflows 64 bits."""
    return mix64(mac_value ^ mix64(seed & _MASK))


@overload
def boot_draw(key: int, boots: int) -> float: ...
@overload
def boot_draw(key: Array, boots: int | Array) -> Array: ...
def boot_draw(key: int | Array, boots: int | Array) -> float | Array:
    """The phone's draw for its ``boots``-th boot (random polling's moment), in [0, 1)."""
    summed: Any = key
    drawn: float | Array = unit(mix64((summed + boots) & _MASK))
    return drawn


# the configuration poll rules, in seconds and day ordinals
def first_poll_s(random_mode: Operand, draw: Num, period_s: Operand) -> Num:
    """Seconds from boot to the first poll of ``rel`` (one period) or of ``random`` with a
    period of a day or less (a moment drawn at boot in the first period)."""
    return cast(Num, period_s * (draw * random_mode + (1 - random_mode)))


def periodic_after(first: Num, period_s: Operand, after: Operand) -> Num:
    """The first of ``first``, ``first + period``, … strictly after ``after``."""
    steps = (after - first) // period_s + 1
    return cast(Num, first + steps * (steps > 0) * period_s)


def picked_day(day: Num, days: Operand, pick: Operand) -> Num:
    """The first day ordinal on or after ``day`` that is ``pick`` modulo ``days`` (every
    ``days`` days: ``abs`` with ``pick`` 0, ``random`` with the MAC's day)."""
    return cast(Num, day + (pick - day) % days)


def lapse_check_day(check_day: Num, lapse_day: Operand) -> Num:
    """R3/R4: the daily check that finds a lapse is the first one on or after the lapse's day
    (the day after the key's last valid day)."""
    return cast(Num, check_day + (lapse_day - check_day) * (lapse_day > check_day))
