"""`fleetkey rollout status|run|retry` in-process: what a waiting rollout says, in the site's
time; every failure listed; the exit status of a run whose phones failed; bad input refused
with nothing changed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fleetkey.store import rollouts
from fleetkey.store.store import Store

from tests.helpers import SITE_SERIAL, Fleetkey, add_site_fleet, issue_site_license

NEW_YORK = ZoneInfo("America/New_York")


def fleet_with_window(fleetkey: Fleetkey, data: Path, window: str, tz: str = "UTC") -> None:
    """30 phones (no SIP contact) at one site with ``window``; license 2 succeeds license 1."""
    add_site_fleet(fleetkey, data, phones=30, tz=tz, window=window)
    today = datetime.now(UTC).date()
    for days in (20, 400):
        issue_site_license(fleetkey, today + timedelta(days=days))


def closed_for_three_hours() -> tuple[str, datetime]:
    """A New York window that opens two to three hours from now (on the hour), and when."""
    opens = (datetime.now(NEW_YORK) + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    return f"{opens:%H}:00-{opens + timedelta(hours=2):%H}:00", opens


def test_a_rollout_waiting_for_a_closed_window_says_until_when_in_the_site_time(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    window, opens = closed_for_three_hours()
    fleet_with_window(fleetkey, initialized, window, tz="America/New_York")
    fleetkey("rollout", "plan", "--license", "2", "--capacity", "100")
    shown = " ".join(fleetkey("rollout", "status", "1").stdout.split())
    assert re.search(
        rf"waiting until {opens:%H}:00 America/New_York, in (2 h \d+ min|2 h|3 h): "
        rf"site {SITE_SERIAL}'s window {window} opens then",
        shown,
    ), shown
    waiting = json.loads(fleetkey("rollout", "status", "1", "--json").stdout)["waiting"]
    assert waiting["window_closed"] is True
    assert waiting["timezone"] == "America/New_York"
    assert datetime.fromisoformat(waiting["until_local"]) == opens
    assert 2 * 3600 - 60 < waiting["seconds"] <= 3 * 3600


def test_a_finished_now_run_says_its_windows_were_overridden_in_json_and_table(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    window, _ = closed_for_three_hours()
    fleet_with_window(fleetkey, initialized, window, tz="America/New_York")
    fleetkey("rollout", "plan", "--license", "2", "--capacity", "1000", "--slot", "1")
    before = datetime.now(UTC)
    fleetkey("rollout", "run", "1", "--now", "--max-attempts", "1", code=1)  # no SIP contacts
    document = json.loads(fleetkey("rollout", "status", "1", "--json").stdout)
    assert document["state"] == "failed"
    since = datetime.fromisoformat(document["windows_ignored_at"])
    assert before - timedelta(seconds=1) <= since <= datetime.now(UTC)
    table = " ".join(fleetkey("rollout", "status", "1").stdout.split())
    assert (
        f"maintenance windows overridden from {since:%Y-%m-%d %H:%M:%S} UTC (rollout run --now) "
        "until the rollout ended (failed)"
    ) in table, table
    assert "until the rollout is paused or ends" not in table


def test_a_run_whose_every_phone_fails_exits_1_and_lists_every_failure(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    now = datetime.now(UTC)
    window = f"{now - timedelta(hours=1):%H}:00-{now + timedelta(hours=6):%H}:00"
    fleet_with_window(fleetkey, initialized, window)
    fleetkey("rollout", "plan", "--license", "2", "--capacity", "1000", "--slot", "1")
    ran = fleetkey("rollout", "run", "1", "--max-attempts", "1", code=1)
    assert "error: rollout 1 failed: 30 of 30 phones failed" in ran.stderr
    assert "hint: see them with `fleetkey rollout status 1`" in ran.stderr
    table = " ".join(fleetkey("rollout", "status", "1").stdout.split())
    assert "rollout 1: license 2, failed: 30 of 30 phones failed" in table
    assert "failed phones: the first 10 of 30 (by MAC)" in table
    assert "0004f2000009" in table
    assert "0004f200000a" not in table
    assert "… and 20 more failed phones (fleetkey rollout status 1 --json lists every one)" in table
    assert "no SIP contact and no address seen" in table
    wider = " ".join(fleetkey("rollout", "status", "1", "--failures", "25").stdout.split())
    assert "the first 25 of 30" in wider
    assert "… and 5 more" in wider
    document = json.loads(fleetkey("rollout", "status", "1", "--json").stdout)
    assert [f["mac"] for f in document["failures"]] == [f"0004f2{i:06x}" for i in range(30)]
    assert document["failures"][0]["reason"] == (
        "check-sync #1: no SIP contact and no address seen for the phone"
    )
    assert json.loads(fleetkey("rollout", "list", "--json").stdout)[0]["state"] == "failed"


BUSY_WITH_ESCAPES = "486 \x1b]0;owned\x07\x1b[2J Busy"  # a phone's reason phrase, hostile


def test_a_reason_phrase_with_escape_sequences_is_shown_escaped_by_status_and_run(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    now = datetime.now(UTC)
    window = f"{now - timedelta(hours=1):%H}:00-{now + timedelta(hours=6):%H}:00"
    fleet_with_window(fleetkey, initialized, window)
    fleetkey("rollout", "plan", "--license", "2", "--capacity", "1000", "--slot", "1")
    store = Store(f"sqlite:///{initialized / 'fleetkey.db'}")
    with store.transaction() as session:
        rollouts.retry_or_fail(session, 1, "0004f2000000", BUSY_WITH_ESCAPES, retry_at=None)
    store.close()
    escaped = "486 \\x1b]0;owned\\x07\\x1b[2J Busy"
    shown = fleetkey("rollout", "status", "1").stdout
    assert "\x1b" not in shown
    assert "\x07" not in shown
    assert escaped in " ".join(shown.split())
    ran = fleetkey("rollout", "run", "1", "--max-attempts", "1", code=1)
    assert "\x1b" not in ran.stdout
    assert escaped in " ".join(ran.stdout.split())
    document = json.loads(fleetkey("rollout", "status", "1", "--json").stdout)
    assert document["failures"][0] == {"mac": "0004f2000000", "reason": BUSY_WITH_ESCAPES}


def rollout_state(fleetkey: Fleetkey) -> tuple[object, ...]:
    """What bad input must not change: the rollouts and the audit trail."""
    listed = json.loads(fleetkey("rollout", "list", "--json").stdout)
    for item in listed:
        item.pop("waiting")  # "in 3 h 12 min" moves on by itself
    events = json.loads(fleetkey("audit", "list", "--json").stdout)
    return tuple(json.dumps(r, sort_keys=True) for r in listed), len(events)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["retry", "7"], 1, "error: no rollout 7"),
        (["retry", "1"], 1, "error: rollout 1 is planned; it has no failed phones to retry"),
        (["retry"], 2, "Missing argument 'ROLLOUT_ID'"),
        (["retry", "one"], 2, "'one' is not a valid integer"),
        (["status", "1", "--failures", "-1"], 2, "-1 is not in the range x>=0"),
        (["status", "1", "--failures", "many"], 2, "'many' is not a valid integer"),
        (["run", "7", "--now"], 1, "error: no rollout 7"),
        (["pause", "1", "--json"], 1, "rollout 1 is planned; it cannot become paused"),
    ],
)
def test_bad_status_run_and_retry_input_is_refused_and_changes_nothing(
    initialized: Path, fleetkey: Fleetkey, args: list[str], code: int, message: str
) -> None:
    window, _ = closed_for_three_hours()
    fleet_with_window(fleetkey, initialized, window, tz="America/New_York")
    fleetkey("rollout", "plan", "--license", "2", "--capacity", "100")
    before = rollout_state(fleetkey)
    result = fleetkey("rollout", *args, code=code)
    assert message in result.stderr
    assert rollout_state(fleetkey) == before


def test_now_on_a_cancelled_rollout_is_refused_and_changes_nothing(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    window, _ = closed_for_three_hours()
    fleet_with_window(fleetkey, initialized, window, tz="America/New_York")
    fleetkey("rollout", "plan", "--license", "2", "--capacity", "100")
    fleetkey("rollout", "cancel", "1", "--json")
    before = rollout_state(fleetkey)
    result = fleetkey("rollout", "run", "1", "--now", code=1)
    assert "error: rollout 1 is cancelled; --now runs a planned, paused or running rollout" in (
        result.stderr
    )
    assert rollout_state(fleetkey) == before


def test_a_plot_to_a_directory_is_a_usage_error(initialized: Path, fleetkey: Fleetkey) -> None:
    window, _ = closed_for_three_hours()
    fleet_with_window(fleetkey, initialized, window, tz="America/New_York")
    fleetkey("rollout", "plan", "--license", "2", "--capacity", "100")
    result = fleetkey("rollout", "status", "1", "--plot", str(initialized), code=2)
    assert "is a directory" in result.stderr
