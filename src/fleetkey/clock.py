"""Time as a dependency: only :class:`SystemClock` calls ``datetime.now()``.

Every function that depends on "now" or "today" takes a :class:`Clock` (or the date it derives),
so tests and simulations can run at any instant and at any speed; the emulator's
``VirtualClock`` is one, running days in minutes. What is not a moment is not a clock's
business: durations and rates are timed with monotonic counters (``time.monotonic``,
``perf_counter``, the event loop's time), and the two plain ``time.time`` readings left are
epoch seconds no calendar depends on (the Digest nonces' age in ``serve/http/auth.py``, given
as an injectable ``now``; the provisioning server's uptime).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where fleetkey gets the current time from."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


def today(clock: Clock) -> date:
    """The current UTC calendar day by ``clock``: the day license terms are checked against."""
    return clock.now().date()


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FixedClock:
    """A clock that stands still until told to move; for tests and simulations."""

    at: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self.at += delta

    def set(self, at: datetime) -> None:
        """Put the clock at ``at`` (timezone-aware)."""
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self.at = at
