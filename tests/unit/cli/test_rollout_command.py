"""`fleetkey rollout …`: a plan saved, shown and plotted; bad input refused with nothing saved."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import Build, Fleetkey, add_site_fleet, issue_site_license

SITE = "100000000001"


def thirty_phones(fleetkey: Fleetkey, data: Path) -> None:
    """A site open around now with 30 phones; a license, and its longer successor (license 2)."""
    now = datetime.now(UTC)
    window = f"{now - timedelta(hours=1):%H}:00-{now + timedelta(hours=6):%H}:00"
    add_site_fleet(fleetkey, data, phones=30, tz="UTC", window=window)
    for days in (20, 400):
        issue_site_license(fleetkey, now.date() + timedelta(days=days))


@pytest.fixture
def fleet(data_dir: Path, built_once: Callable[[Build], Path]) -> Path:
    """This test's own copy of ``thirty_phones`` (built once)."""
    shutil.copytree(built_once(thirty_phones), data_dir, symlinks=True)
    return data_dir


def test_a_plan_is_shown_saved_plotted_and_listed(fleet: Path, fleetkey: Fleetkey) -> None:
    plot = fleet.parent / "load.png"
    shown = fleetkey("rollout", "plan", "--license", "2", "--capacity", "100", "--plot", str(plot))
    assert "30 phones at 1 site(s)" in shown.stdout
    assert "saved as rollout 1" in shown.stdout
    assert plot.read_bytes().startswith(b"\x89PNG")
    planned = json.loads(
        fleetkey(
            "rollout", "plan", "--license", "2", "--capacity", "100", "--dry-run", "--json"
        ).stdout
    )
    assert planned["rollout"] is None
    assert sorted(m for w in planned["waves"] for m in w["macs"]) == [
        f"0004f2{i:06x}" for i in range(30)
    ]
    assert planned["peak_load"] <= 100 * 0.7
    status = json.loads(fleetkey("rollout", "status", "1", "--json").stdout)
    assert (status["state"], status["phones"]) == ("planned", {"pending": 30})
    listed = json.loads(fleetkey("rollout", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [1]
    assert "rollout 1 is cancelled" in fleetkey("rollout", "cancel", "1").stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["plan", "--license", "2", "--capacity", "fast"], 2, "neither a number of requests/s"),
        (["plan", "--license", "2", "--capacity", "0"], 2, "capacity must be above 0"),
        (["plan", "--license", "2"], 1, "none has been measured (--capacity)"),
        (["plan", "--license", "1", "--capacity", "9"], 1, "is superseded; only a posted"),
        (["plan", "--license", "99", "--capacity", "9"], 1, "99"),
        (["plan", "--license", "2", "--capacity", "9", "--headroom", "2"], 1, "headroom must be"),
        (
            ["plan", "--license", "2", "--capacity", "9", "--deadline", "2020-01-01"],
            1,
            "has passed",
        ),
        (["plan", "--license", "2", "--capacity", "0.001"], 1, "more than a 60-second slot"),
        (["run", "7"], 1, "no rollout 7"),
        (["status", "7"], 1, "no rollout 7"),
        (["pause", "7"], 1, "no rollout 7"),
        (["run", "7", "--sip-user", "1001"], 1, "--sip-user needs the password"),
    ],
)
def test_bad_rollout_input_is_refused_and_nothing_is_saved(
    fleet: Path, fleetkey: Fleetkey, args: list[str], code: int, message: str
) -> None:
    result = fleetkey("rollout", *args, code=code)
    assert message in result.stderr
    assert json.loads(fleetkey("rollout", "list", "--json").stdout) == []


def test_a_plan_without_any_capacity_says_how_to_measure_or_give_one(
    fleet: Path, fleetkey: Fleetkey
) -> None:
    result = fleetkey("rollout", "plan", "--license", "2", code=1)
    assert result.stderr == (
        "error: no capacity was given and none has been measured (--capacity)\n"
        "hint: measure the server's capacity with `fleetkey capacity measure --server URL` "
        "(then plan again), or give what it takes: --capacity REQ_PER_S\n"
    )
    assert result.stdout == ""


def test_a_finished_rollout_cannot_be_resumed(fleet: Path, fleetkey: Fleetkey) -> None:
    fleetkey("rollout", "plan", "--license", "2", "--capacity", "100")
    fleetkey("rollout", "cancel", "1")
    result = fleetkey("rollout", "resume", "1", code=1)
    assert "rollout 1 is cancelled; it cannot become running" in result.stderr
    assert (
        "rollout 1 is cancelled; it does not run" in fleetkey("rollout", "run", "1", code=1).stderr
    )


def test_a_given_boot_cost_overrides_the_measured_one(fleet: Path, fleetkey: Fleetkey) -> None:
    planned = json.loads(
        fleetkey(
            "rollout",
            "plan",
            "--license",
            "2",
            "--capacity",
            "100",
            "--boot-requests",
            "50",
            "--boot-seconds",
            "300",
            "--dry-run",
            "--json",
        ).stdout
    )
    assert planned["boot"]["requests"] == 50
    assert planned["boot"]["seconds"] == 300
    assert planned["boot"]["source"].startswith("given: 50 requests, 300 s; otherwise default")
    assert planned["per_slot"] == 84  # 100 x 0.7 x 60 / 50
