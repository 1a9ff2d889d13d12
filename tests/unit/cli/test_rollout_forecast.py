"""`fleetkey rollout plan --calls-per-hour`: the plan simulated with phones making calls."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import Build, Fleetkey, add_site_fleet, issue_site_license


def two_hundred_phones(fleetkey: Fleetkey, data: Path) -> None:
    """A site open around now with 200 phones, a license and its longer successor (license 2)."""
    now = datetime.now(UTC)
    window = f"{now - timedelta(hours=1):%H}:00-{now + timedelta(hours=6):%H}:00"
    add_site_fleet(fleetkey, data, phones=200, tz="UTC", window=window)
    for days in (20, 400):
        issue_site_license(fleetkey, now.date() + timedelta(days=days))


@pytest.fixture
def fleet(data_dir: Path, built_once: Callable[[Build], Path]) -> Path:
    """This test's own copy of ``two_hundred_phones`` (built once)."""
    shutil.copytree(built_once(two_hundred_phones), data_dir, symlinks=True)
    return data_dir


def plan(fleetkey: Fleetkey, *args: str, code: int = 0) -> str:
    base = ("rollout", "plan", "--license", "2", "--capacity", "20", "--dry-run")
    return str(fleetkey(*base, *args, code=code).stdout)


def test_calls_make_the_simulated_rollout_end_after_the_plan(
    fleet: Path, fleetkey: Fleetkey
) -> None:
    document = json.loads(plan(fleetkey, "--calls-per-hour", "2", "--call-minutes", "15", "--json"))
    simulated = document["simulated"]
    assert simulated["phones"] == simulated["rebooted"] == 200
    assert simulated["waited_for_calls"] > 0
    assert simulated["finish"] > simulated["planned_finish"]
    shown = plan(fleetkey, "--calls-per-hour", "2", "--call-minutes", "15")
    assert "reboots wait for a call to end" in shown


def test_without_reboot_the_simulation_says_phones_may_not_reboot(
    fleet: Path, fleetkey: Fleetkey
) -> None:
    shown = plan(fleetkey, "--calls-per-hour", "0", "--no-reboot")
    assert "only 0 of 200 phones reboot (R9" in shown


def test_no_simulation_unless_asked(fleet: Path, fleetkey: Fleetkey) -> None:
    assert "simulated" not in json.loads(plan(fleetkey, "--json"))


@pytest.mark.parametrize(
    "args",
    [("--calls-per-hour", "-1"), ("--calls-per-hour", "3"), ("--calls-per-hour", "x"),
     ("--calls-per-hour", "1", "--call-minutes", "20")],
    ids=["negative", "over two", "text", "calls too long"],
)  # fmt: skip
def test_bad_call_rates_are_usage_errors(
    fleet: Path, fleetkey: Fleetkey, args: tuple[str, ...]
) -> None:
    plan(fleetkey, *args, code=2)
    assert json.loads(fleetkey("rollout", "list", "--json").stdout) == []
