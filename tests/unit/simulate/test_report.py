"""What a run reports (simulate/report.py), by exact numbers: one site's storm over a server of
20 requests a second, with and without the server going down during it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fleetkey.core.features import default_catalog
from fleetkey.simulate.report import Summary, hourly, summarize
from fleetkey.simulate.simulation import Run, simulate
from fleetkey.testing import ScenarioBuilder

CATALOG = default_catalog()
STORM = datetime(2027, 1, 6, 2, 0, tzinfo=UTC)  # the first daily check after the lapse
STORM_HOUR = 5 * 24 + 2


def storm(
    *events: dict[str, object],
    days: int = 10,
    capacity: float = 20,
    headroom: float = 0.7,
    phones: int = 300,
) -> Run:
    """300 phones at one UTC site, no calls, whose license lapses: all ask at 02:00:00, 12
    requests each, 3,600 in all, at 20 a second: 180 s to answer, 60 s over three minutes."""
    server = {"capacity": capacity, "headroom": headroom, "boot_seconds": 120,
              "retry_after_s": 30}  # fmt: skip
    built = (
        ScenarioBuilder(days=days, server=server)
        .site("100000000001", phones, timezone="UTC")
        .license("current", ["corporate-directory"], "2027-01-05")
        .event("2027-01-01T00:00:00Z", post="current")
    )
    for event in events:
        built.event(**event)  # type: ignore[arg-type]
    return simulate(built.scenario(CATALOG))


@pytest.fixture(scope="module")
def summary() -> Summary:
    return summarize(storm(), CATALOG)


class TestTheSummary:
    def test_the_peaks_are_per_second_in_the_busiest_minute(self, summary: Summary) -> None:
        assert summary.peak_offered_per_s == 3600 / 60
        assert summary.peak_offered_at == STORM
        assert summary.peak_answered_per_s == pytest.approx(20.0)
        assert summary.peak_answered_at == STORM
        assert (summary.capacity_per_s, summary.budget_per_s) == (20, 14)

    def test_minutes_over_budget_count_the_load_not_the_boot_starts(self, summary: Summary) -> None:
        # the boots all start in one minute, the server answers at 20/s > 14/s for three
        assert summary.over_budget_minutes == 3

    @pytest.mark.parametrize(("phones", "over"), [(50, 0), (51, 1)], ids=["at", "one over"])
    def test_a_minute_exactly_at_the_budget_is_not_over_it(self, phones: int, over: int) -> None:
        # budget 20 x 0.5 = 10 a second, 600 a minute: 50 phones x 12 requests load it exactly,
        # all answered in the storm's minute; 51 bring 612
        summary = summarize(storm(headroom=0.5, phones=phones), CATALOG)
        assert summary.budget_per_s == 10
        assert summary.peak_answered_per_s == pytest.approx(phones * 12 / 60)
        assert summary.over_budget_minutes == over

    def test_the_longest_boot_is_the_last_phone_answered(self, summary: Summary) -> None:
        assert summary.longest_boot_s == pytest.approx(180.0)
        assert not summary.longest_boot_open
        assert summary.waiting_at_end == 0

    def test_phones_still_waiting_at_the_end_make_the_longest_boot_a_bound(self) -> None:
        # six days end 22 h after the storm; at 0.021 requests a second a boot takes 571 s,
        # so 138 are answered (the last after 78,857 s) and 162 still wait: at least 79,200 s
        run = storm(days=6, capacity=0.021)
        summary = summarize(run, CATALOG)
        assert summary.longest_boot_s == pytest.approx(22 * 3600)
        assert summary.longest_boot_open
        assert summary.waiting_at_end == 162
        document = summary.to_json()
        assert document["longest_boot_at_least"] is True
        assert document["phones_waiting_at_end"] == 162

    def test_reboots_are_counted_by_cause(self, summary: Summary) -> None:
        assert summary.reboots == {"license-expired": 300, "config-changed": 0, "check-sync": 0}
        assert summary.booted_expired_at_end == 300

    def test_the_phone_hours_lost_run_from_midnight_to_the_end(self, summary: Summary) -> None:
        (loss,) = [f for f in summary.features if f.feature == "corporate-directory"]
        assert (loss.phones_at_start, loss.phones_affected, loss.phones_without_at_end) == (
            300,
            300,
            300,
        )
        assert loss.phone_hours_lost == pytest.approx(300 * (10 - 5) * 24)


class TestTheHourlySeries:
    def test_the_storms_hour_carries_its_load_and_503s(self) -> None:
        series = hourly(storm(), CATALOG)
        assert series["answered_per_s"][STORM_HOUR] == pytest.approx(3600 / 3600)
        assert series["answered_peak_minute_per_s"][STORM_HOUR] == pytest.approx(20.0)
        assert series["offered_peak_minute_per_s"][STORM_HOUR] == pytest.approx(60.0)
        # phone k is answered at (k + 1) x 0.6 s: the last 100 wait past 120 s, in minute 2,
        # 0.6 j - 120 s each (j = 201..300), 3,030 phone-seconds: 50.5 phones on average,
        # each refused once every 30 s
        assert series["refused_peak_per_s"][STORM_HOUR] == pytest.approx(3030 / 60 / 30, abs=1e-3)
        assert series["boots"][STORM_HOUR] == 300
        assert sum(series["boots"]) == 300
        assert series["phones_with"]["corporate-directory"][STORM_HOUR - 3] == 300
        assert series["phones_with"]["corporate-directory"][STORM_HOUR] == 0
        assert series["phones_without"]["corporate-directory"][STORM_HOUR] == 300
        assert not any(series["server_down_minutes"])


class TestADeadServerDuringTheStorm:
    def test_the_phones_that_gave_up_count_in_the_longest_boot_and_the_503s(self) -> None:
        # down from 02:01: the first 100 phones are answered in minute 0, the rest give up
        run = storm({"at": "2027-01-06T02:01:00Z", "server_down_until": "2027-01-06T03:00:00Z"})
        summary = summarize(run, CATALOG)
        assert summary.longest_boot_s == pytest.approx(60 + run.scenario.server.give_up_s)
        assert int(np.count_nonzero(~np.isfinite(run.phones.boot_end_s))) == 0
        series = hourly(run, CATALOG)
        assert series["server_down_minutes"][STORM_HOUR] == 59
        # 503s came only before it went down: nobody had waited past 120 s by then
        assert series["refused_peak_per_s"][STORM_HOUR] == 0.0
        assert summary.over_budget_minutes == 1


def rollout(*events: dict[str, object]) -> Run:
    """300 phones at one UTC site with a window of 01:00-05:00; a successor posted and rolled
    out from 2 January 00:00: the planner's waves run from 01:00 to about 01:07."""
    built = (
        ScenarioBuilder(days=10, server={"capacity": 20, "headroom": 0.7})
        .site("100000000001", 300, timezone="UTC", window="01:00-05:00")
        .license("current", ["corporate-directory"], "2027-01-20")
        .license("successor", ["corporate-directory"], "2028-01-20")
        .event("2027-01-01T00:00:00Z", post="current")
        .event("2027-01-02T00:00:00Z", post="successor")
        .event("2027-01-02T00:00:00Z", rollout=True, deadline="2027-01-09T00:00:00Z")
    )
    for event in events:
        built.event(**event)  # type: ignore[arg-type]
    return simulate(built.scenario(CATALOG))


class TestRolloutCompletion:
    def test_a_rollout_finishes_when_its_last_phone_installed_the_license(self) -> None:
        run = rollout()
        (result,) = summarize(run, CATALOG).rollouts
        start = run.scenario.start
        installed = run.phones.installed_at_s
        assert result.reached == result.phones == 300
        assert installed.min() < installed.max()  # the waves take minutes
        assert result.finished == start + timedelta(seconds=float(installed.max()))
        assert abs((result.finished - result.planned_finish).total_seconds()) < 60

    def test_a_rollout_a_phone_misses_has_not_finished(self) -> None:
        # the server is down from 01:03, during the waves: the phones check-synced then give up
        # and boot from flash with the current key
        run = rollout({"at": "2027-01-02T01:03:00Z", "server_down_until": "2027-01-02T02:00:00Z"})
        (result,) = summarize(run, CATALOG).rollouts
        assert 0 < result.reached < result.phones == 300
        assert result.finished is None
        successor = run.licenses.names.index("successor")
        assert int(np.count_nonzero(run.phones.installed == successor)) == result.reached
