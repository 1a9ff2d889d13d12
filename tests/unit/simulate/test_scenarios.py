"""The scenarios of spec §3-§4 through the simulator: a lapse without a successor, a successor
posted 30 days early and rolled out, a shorter successor, the server down during the storm."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from fleetkey.core.features import default_catalog
from fleetkey.simulate.phones import Cause
from fleetkey.simulate.report import FeatureLoss, Summary, summarize
from fleetkey.simulate.simulation import Run, simulate
from fleetkey.testing import ScenarioBuilder

START = datetime(2027, 1, 1, tzinfo=UTC)
ZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo")
CATALOG = default_catalog()
FEATURES = ["corporate-directory", "call-recording"]


def fleet(
    *events: Mapping[str, object], capacity: float = 200, calls: float = 0.5, days: int = 40
) -> Run:
    built = (
        ScenarioBuilder(days=days, server={"capacity": capacity, "headroom": 0.7})
        .site("100000000001", 300, count=3, timezones=list(ZONES), window="00:00-06:00",
              calls_per_hour=calls, call_minutes=5)
        .license("current", FEATURES, "2027-01-31")
        .license("successor", FEATURES, "2028-01-31")
        .license("shorter", FEATURES, "2027-01-25")
        .license("wider", [*FEATURES, "vqmon"], "2027-01-31")
        .event("2027-01-01T00:00:00Z", post="current")
    )  # fmt: skip
    for event in events:
        built.event(**event)  # type: ignore[arg-type]
    return simulate(built.scenario(CATALOG), record=True)


def reboots(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    log = run.tally.reboot_log
    if not log:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty.astype(np.int64)
    return tuple(np.concatenate([entry[i] for entry in log]) for i in range(3))  # type: ignore[return-value]


def started_with(summary: Summary) -> list[FeatureLoss]:
    """The features the phones had at the start (the scenario's catalog also has vqmon)."""
    held = [loss for loss in summary.features if loss.phones_at_start]
    assert [loss.feature for loss in held] == ["corporate-directory", "call-recording"]
    return held


class TestLapseWithoutSuccessor:
    def test_every_phone_reboots_once_at_two_in_the_morning_local_then_never_again(self) -> None:
        run = fleet()
        phones, begin, cause = reboots(run)
        assert sorted(phones.tolist()) == list(range(900))  # once each: R8 keeps them down
        assert set(cause.tolist()) == {Cause.LICENSE_EXPIRED}
        for phone, at in zip(phones, begin, strict=True):
            zone = ZoneInfo(ZONES[int(run.fleet.site[phone])])
            local = (START + timedelta(seconds=float(at))).astimezone(zone)
            assert local.date().isoformat() == "2027-02-01"
            assert time(2, 0) <= local.time() < time(3, 0)  # 02:00, or when its calls end
        exact = np.isclose(begin % 60, 0)
        assert exact.mean() > 0.9  # most were in no call at 02:00
        assert run.tally.waited_for_calls == np.count_nonzero(~exact) > 0

    def test_phone_hours_lost_run_from_local_midnight_to_the_end(self) -> None:
        run = fleet()
        summary = summarize(run, CATALOG)
        end = START + timedelta(days=40)
        expected = sum(
            300 * (end - datetime(2027, 2, 1, tzinfo=ZoneInfo(zone))).total_seconds() / 3600
            for zone in ZONES
        )
        for loss in started_with(summary):
            assert loss.phones_affected == 900
            assert loss.phone_hours_lost == pytest.approx(expected, rel=1e-9)
        assert summary.booted_expired_at_end == 900


class TestSuccessorThirtyDaysEarlyRolledOut:
    EVENTS = (
        {"at": "2027-01-01T12:00:00Z", "post": "successor"},
        {"at": "2027-01-02T00:00:00Z", "rollout": True, "deadline": "2027-01-20T00:00:00Z"},
    )

    def test_no_phone_hour_is_lost_and_the_load_stays_under_the_budget(self) -> None:
        run = fleet(*self.EVENTS)
        summary = summarize(run, CATALOG)
        assert all(loss.phone_hours_lost == 0 for loss in summary.features)
        assert all(loss.phones_affected == 0 for loss in summary.features)
        assert summary.reboots == {"license-expired": 0, "config-changed": 0, "check-sync": 900}
        assert 0 < summary.peak_offered_per_s <= summary.budget_per_s
        assert summary.over_budget_minutes == 0
        (rollout,) = summary.rollouts
        assert rollout.license == "successor"
        assert rollout.reached == 900
        assert rollout.finished is not None
        assert rollout.finished < rollout.deadline

    def test_each_phone_reboots_inside_its_sites_window(self) -> None:
        run = fleet(*self.EVENTS)
        phones, begin, _ = reboots(run)
        for phone, at in zip(phones, begin, strict=True):
            zone = ZoneInfo(ZONES[int(run.fleet.site[phone])])
            local = (START + timedelta(seconds=float(at))).astimezone(zone)
            assert local.time() < time(6, 0)


class TestShorterSuccessor:
    def test_phones_ignore_it_and_the_storm_comes_when_the_current_key_lapses(self) -> None:
        run = fleet(
            {"at": "2027-01-02T00:00:00Z", "post": "shorter"},
            {"at": "2027-01-03T00:00:00Z", "rollout": True, "deadline": "2027-01-20T00:00:00Z"},
        )
        current = run.licenses.names.index("current")
        assert (run.phones.installed == current).all()  # R7: the longer installed key stays
        _, _, cause = reboots(run)
        assert np.count_nonzero(cause == Cause.CHECK_SYNC) == 900
        assert np.count_nonzero(cause == Cause.LICENSE_EXPIRED) == 900
        assert summarize(run, CATALOG).features[0].phones_affected == 900


class TestSuccessorOfTheSameTerm:
    def test_phones_take_it_on_a_tie_and_gain_its_features(self) -> None:
        run = fleet(
            {"at": "2027-01-02T00:00:00Z", "post": "wider"},
            {"at": "2027-01-03T00:00:00Z", "rollout": True, "deadline": "2027-01-20T00:00:00Z"},
        )
        assert (run.phones.installed == run.licenses.names.index("wider")).all()  # R7: a tie
        series = np.cumsum(run.tally.held_changes, axis=0)
        vqmon = run.tally.slots.index(CATALOG.slot_of("vqmon"))
        assert series[0, vqmon] == 0
        assert series[24 * 20, vqmon] == 900


POSTED_BEFORE_THE_LAPSE: Final = MappingProxyType(
    {"at": "2027-01-20T00:00:00Z", "post": "successor"}
)


class TestServerDownDuringTheStorm:
    POSTED = POSTED_BEFORE_THE_LAPSE

    def test_with_the_server_up_the_storm_brings_the_successor(self) -> None:
        summary = summarize(fleet(self.POSTED), CATALOG)
        assert summary.booted_expired_at_end == 0
        assert all(loss.phones_without_at_end == 0 for loss in summary.features)
        # two hours a phone at most: from local midnight to its 02:00 reboot and boot
        assert all(loss.phone_hours_lost < 900 * 2.2 for loss in summary.features)

    def test_phones_that_cannot_reach_it_boot_expired_and_stay_without_features(self) -> None:
        # Berlin's storm is at 01:00 UTC on 2027-02-01; the server is down from 00:30 to 04:00
        down = {"at": "2027-02-01T00:30:00Z", "server_down_until": "2027-02-01T04:00:00Z"}
        run = fleet(self.POSTED, down)
        summary = summarize(run, CATALOG)
        berlin = run.fleet.site == ZONES.index("Europe/Berlin")
        assert run.phones.expired_boot[berlin].all()  # R8: nothing brings them back
        assert not run.phones.expired_boot[~berlin].any()
        assert summary.booted_expired_at_end == 300
        assert all(loss.phones_without_at_end == 300 for loss in started_with(summary))


class TestStormOverCapacity:
    def test_the_queue_answers_at_most_the_capacity_and_every_boot_in_the_end(self) -> None:
        run = fleet(capacity=20, calls=0.0)
        summary = summarize(run, CATALOG)
        queue = run.queue
        assert (queue.answered_per_min <= 20 * 60 + 1e-6).all()
        assert queue.answered_per_min.sum() == pytest.approx(queue.offered_per_min.sum())
        # 300 phones x 12 requests at 20/s: the last answered after 180 s
        assert 179 < summary.longest_boot_s < 185
        assert summary.peak_offered_per_s == 300 * 12 / 60
        assert queue.refused_per_s().max() > 0
