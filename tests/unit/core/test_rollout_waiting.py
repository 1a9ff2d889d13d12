"""What a waiting rollout says: until when, in the site's time zone, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetkey.core.rollout.windows import Window, span_text, wait_for

NOW = datetime(2027, 2, 1, 2, 48, tzinfo=UTC)  # 21:48 in New York (EST, UTC-5)
NEW_YORK = "America/New_York"
NIGHT = Window.parse("01:00-05:00")
OPENS = datetime(2027, 2, 1, 6, 0, tzinfo=UTC)  # 01:00 in New York


def test_a_closed_window_says_until_when_in_the_site_time_zone() -> None:
    wait = wait_for("100000000003", NEW_YORK, NIGHT, OPENS + timedelta(seconds=7.5), NOW)
    assert wait is not None
    assert wait.closed
    assert wait.until == OPENS
    assert wait.text() == (
        "waiting until 01:00 America/New_York, in 3 h 12 min: "
        "site 100000000003's window 01:00-05:00 opens then"
    )


def test_a_wait_beyond_a_day_names_the_local_date() -> None:
    wait = wait_for("100000000003", NEW_YORK, NIGHT, OPENS + timedelta(days=2), NOW)
    assert wait is not None
    assert wait.text().startswith("waiting until 2027-02-03 01:00 America/New_York, in 2 d 3 h")


def test_a_phone_due_while_the_window_is_closed_waits_for_the_next_opening() -> None:
    after_close = OPENS + timedelta(hours=5)  # 06:00 in New York: closed
    wait = wait_for("100000000003", NEW_YORK, NIGHT, after_close, NOW)
    assert wait is not None
    assert wait.until == OPENS + timedelta(days=1)


def test_an_open_window_waits_only_for_the_schedule() -> None:
    inside = OPENS + timedelta(minutes=30)
    wait = wait_for("100000000003", NEW_YORK, NIGHT, inside + timedelta(seconds=45), inside)
    assert wait is not None
    assert not wait.closed
    assert (
        wait.text() == "next check-sync at 01:30:45 America/New_York, in 45 s (site 100000000003)"
    )


def test_a_window_that_closes_before_the_check_sync_is_the_reason() -> None:
    late = OPENS + timedelta(hours=3, minutes=59)
    wait = wait_for("100000000003", NEW_YORK, NIGHT, OPENS + timedelta(days=1), late)
    assert wait is not None
    assert wait.closed


INSIDE = OPENS + timedelta(minutes=30)  # 01:30 in New York: open


@pytest.mark.parametrize("due", [None, INSIDE, INSIDE - timedelta(hours=5)])
def test_nothing_is_waited_for_when_a_check_sync_is_due_in_an_open_window(
    due: datetime | None,
) -> None:
    assert wait_for("100000000003", NEW_YORK, NIGHT, due, INSIDE) is None


@pytest.mark.parametrize("due", [NOW, NOW - timedelta(hours=30)])
def test_a_phone_due_already_waits_for_a_closed_window_to_open(due: datetime) -> None:
    """As after `rollout retry`: the re-queued phones are due now, the window is closed."""
    wait = wait_for("100000000003", NEW_YORK, NIGHT, due, NOW)
    assert wait is not None
    assert wait.closed
    assert wait.until == OPENS
    assert wait.text().startswith("waiting until 01:00 America/New_York, in 3 h 12 min")


def test_a_phone_due_already_goes_now_when_windows_are_ignored() -> None:
    assert wait_for("100000000003", "UTC", None, NOW - timedelta(minutes=5), NOW) is None


def test_windows_ignored_wait_only_for_the_schedule() -> None:
    wait = wait_for("100000000003", "UTC", None, NOW + timedelta(minutes=3), NOW)
    assert wait is not None
    assert not wait.closed
    assert wait.text() == "next check-sync at 02:51 UTC, in 3 min (site 100000000003)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "1 s"), (45, "45 s"), (59.5, "60 s"), (60, "1 min"), (11_520, "3 h 12 min"),
     (7200, "2 h"), (183_600, "2 d 3 h"), (172_800, "2 d")],
)  # fmt: skip
def test_spans_are_said_to_the_unit_that_matters(seconds: float, text: str) -> None:
    assert span_text(seconds) == text
