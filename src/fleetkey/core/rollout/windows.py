"""Maintenance windows: a site's local ``HH:MM-HH:MM`` as UTC intervals over a horizon.

A window may wrap past midnight (``22:00-05:00`` opens at 22:00 and closes at 05:00 the next
local day). Daylight-saving changes are the time zone's business: every opening and closing is
placed on its local day with :mod:`zoneinfo` and converted to UTC, so a window keeps its local
hours across a change (and is an hour shorter or longer in UTC that night). A local time that
does not exist (inside a spring-forward gap) is read as the offset before the gap, which is
what :mod:`datetime` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Window:
    """A daily local window; ``end <= start`` means it closes on the next local day."""

    start: time
    end: time

    @classmethod
    def parse(cls, start: str, end: str) -> Window:
        return cls(time.fromisoformat(start), time.fromisoformat(end))

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
