"""Maintenance windows: a site's local ``HH:MM-HH:MM`` as UTC intervals over a horizon, and
what a rollout waiting for one says (``waiting until 01:00 America/New_York, in 3 h 12 min``).

A window may wrap past midnight (``22:00-05:00`` opens at 22:00 and closes at 05:00 the next
local day). Daylight-saving changes are the time zone's business: every opening and closing is
placed on its local day with :mod:`zoneinfo` and converted to UTC, so a window keeps its local
hours across a change (and is an hour shorter or longer in UTC that night). A local time that
does not exist (inside a spring-forward gap) is read as the offset before the gap, which is
what :mod:`datetime` does.

:class:`Window` is the one form a window takes in fleetkey: operators' ``HH:MM-HH:MM`` text is
parsed into it once, where it comes in (the CLI, the admin API; the store reads its two
columns), and passed as the value everywhere else.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from fleetkey.errors import InputError

_TEXT: Final = re.compile(
    r"(?P<start>(?:[01]\d|2[0-3]):[0-5]\d)-(?P<end>(?:[01]\d|2[0-3]):[0-5]\d)"
)


@dataclass(frozen=True, slots=True)
class Window:
    """A daily local window, to the minute; ``end < start``: it closes on the next local day."""

    start: time
    end: time

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment.second or moment.microsecond or moment.tzinfo is not None:
                raise InputError(f"a maintenance window is whole local minutes, not {moment}")
        if self.start == self.end:
            raise InputError(f"maintenance window {self} is empty: it opens as it closes")

    @classmethod
    def parse(cls, text: str, end: str | None = None) -> Window:
        """``22:00-05:00`` as operators write it (it may wrap past midnight).

        ``parse("22:00", "05:00")`` is read as ``parse("22:00-05:00")`` until bench/plan.py,
        in another change in flight, passes one text.
        """
        if end is not None:
            text = f"{text}-{end}"
        match = _TEXT.fullmatch(text.strip())
        if match is None or match["start"] == match["end"]:
            raise InputError(f"maintenance window {text!r} is not HH:MM-HH:MM (e.g. 22:00-05:00)")
        return cls(time.fromisoformat(match["start"]), time.fromisoformat(match["end"]))

    def hours(self) -> float:
        """Nominal length in hours (without daylight-saving changes)."""
        minutes = (self.end.hour * 60 + self.end.minute) - (
            self.start.hour * 60 + self.start.minute
        )
        return (minutes if minutes > 0 else minutes + 24 * 60) / 60

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def open_intervals(
    window: Window, timezone: str, begin: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    """The window's openings (UTC, clipped to ``[begin, until)``), in time order."""
    zone = ZoneInfo(timezone)
    first = begin.astimezone(zone).date() - timedelta(days=1)
    last = until.astimezone(zone).date()
    intervals: list[tuple[datetime, datetime]] = []
    day: date = first
    while day <= last:
        opens = datetime.combine(day, window.start, zone).astimezone(UTC)
        close_day = day if window.end > window.start else day + timedelta(days=1)
        closes = datetime.combine(close_day, window.end, zone).astimezone(UTC)
        lo, hi = max(opens, begin), min(closes, until)
        if lo < hi:
            intervals.append((lo, hi))
        day += timedelta(days=1)
    return intervals


@dataclass(frozen=True, slots=True)
class Wait:
    """What a rollout waits for: its next check-sync, due at ``until`` (UTC), at ``site``.

    ``closed`` says that the site's maintenance window is why: it is closed now, or closes
    before a boot started now would end, and ``until`` is when it opens.
    """

    site: str
    until: datetime
    timezone: str
    seconds: float
    closed: bool
    window: Window | None

    @property
    def local(self) -> datetime:
        return self.until.astimezone(ZoneInfo(self.timezone))

    def to_json(self) -> dict[str, object]:
        return {
            "site": self.site,
            "until": self.until.isoformat(),
            "until_local": self.local.isoformat(),
            "timezone": self.timezone,
            "seconds": round(self.seconds, 3),
            "window_closed": self.closed,
            "text": self.text(),
        }

    def text(self) -> str:
        """``waiting until 01:00 America/New_York, in 3 h 12 min: …`` as operators read it."""
        local = self.local
        clock = "%H:%M" if local.second == 0 else "%H:%M:%S"
        shown = local.strftime(clock if self.seconds < 24 * 3600 else f"%Y-%m-%d {clock}")
        when = f"{shown} {self.timezone}, in {span_text(self.seconds)}"
        if self.closed:
            return f"waiting until {when}: site {self.site}'s window {self.window} opens then"
        return f"next check-sync at {when} (site {self.site})"


def wait_for(
    site: str, timezone: str, window: Window | None, due: datetime | None, now: datetime
) -> Wait | None:
    """The wait for a site's next check-sync, due at ``due``; None when it can go now.

    When the site's window is closed now, or closes before ``due``, the wait is until the
    opening that holds ``due``, or the next one after it (a phone due while the window is
    closed is sent at its next opening). A phone due in the past (re-queued by ``rollout
    retry``, or overdue) is due now: it goes now only if the window is open.
    """
    if due is None:
        return None
    due = max(due, now)
    if window is None:
        return (
            None
            if due <= now
            else Wait(site, due, timezone, (due - now).total_seconds(), False, window)
        )
    spans = open_intervals(window, timezone, now, due + timedelta(days=2))
    if any(lo <= now and due < hi for lo, hi in spans):
        if due <= now:
            return None
        return Wait(site, due, timezone, (due - now).total_seconds(), False, window)
    until = next((lo for lo, hi in spans if due < hi), due)
    return Wait(site, until, timezone, (until - now).total_seconds(), True, window)


def span_text(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 12 min``, ``2 d 3 h``: a wait, to the unit that matters."""
    if seconds < 60:
        return f"{max(math.ceil(seconds), 1)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
