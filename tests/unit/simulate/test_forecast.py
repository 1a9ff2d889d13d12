"""The storm forecast of ``fleetkey alerts`` from the simulator (ops/forecast.py): sites of one
time zone storm in the same minute, and the server answers them at its capacity."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from fleetkey.core.alerts import LastSiteFetch, LicenseFacts, SiteFacts, Snapshot, evaluate
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.rollout.plan import BootCost, Plan, PlanInput, SitePhones, plan_rollout
from fleetkey.core.rollout.windows import Window
from fleetkey.core.verdicts import SignatureStatus
from fleetkey.ops.forecast import forecast_plan, forecast_storms

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
LAPSE = date(2027, 3, 20)  # the last valid day; the storm is on the 21st at 02:00 local
SITES = {"100000000001": "Europe/Berlin", "100000000002": "Europe/Paris", "100000000003": "UTC"}


def license_of(id: int, serial: str) -> LicenseFacts:
    return LicenseFacts(
        id, LicenseType.SITE, serial, {0: LAPSE, 5: LAPSE}, LAPSE, LicenseState.POSTED,
        NOW - timedelta(days=30), None, f"{id:064x}", SignatureStatus.VALID,
    )  # fmt: skip


def snapshot(capacity: float | None) -> Snapshot:
    phones = {s: tuple(f"0004f2{i:02x}{n:04x}" for n in range(300)) for i, s in enumerate(SITES)}
    return Snapshot(
        now=NOW,
        licenses=[license_of(i + 1, s) for i, s in enumerate(SITES)],
        sites=[SiteFacts(s, zone, phones[s]) for s, zone in SITES.items()],
        last_fetches=[
            LastSiteFetch(m, NOW - timedelta(days=1), 200, f"{i + 1:064x}")
            for i, s in enumerate(SITES)
            for m in phones[s]
        ],
        boot_requests=12,
        boot_s=120,
        capacity=capacity,
    )


def storms(capacity: float | None) -> dict[str, tuple[str, str, dict[str, object]]]:
    state = snapshot(capacity)
    found = forecast_storms(evaluate(state), state)
    return {a.subject: (a.severity, a.message, a.details) for a in found if a.kind == "storm"}


def test_sites_of_one_offset_storm_together_and_wait_for_the_capacity() -> None:
    found = storms(capacity=20)
    severity, message, details = found["Site 100000000001"]
    simulated = details["simulated"]
    assert isinstance(simulated, dict)
    # Berlin and Paris are both UTC+1: 600 phones x 12 requests in the minute of 01:00 UTC
    assert simulated["minute"] == "2027-03-21T01:00:00+00:00"
    assert simulated["requests_in_minute"] == 7200
    assert simulated["phones_in_minute"] == 600
    # at 20 req/s the last of 7,200 requests is answered after 360 s
    assert simulated["longest_boot_s"] == pytest.approx(360)
    assert simulated["last_answered"] == "2027-03-21T01:06:00+00:00"
    assert severity == "critical"
    assert "reboot at 2027-03-21 02:00 Europe/Berlin when license 1 lapses" in message
    assert "with 300 phones of other sites" in message
    assert "7,200 requests arrive in the minute of 01:00 UTC" in message
    # UTC storms an hour later, alone: 3,600 requests, 180 s
    utc = found["Site 100000000003"][2]["simulated"]
    assert isinstance(utc, dict)
    assert utc["requests_in_minute"] == 3600
    assert utc["longest_boot_s"] == pytest.approx(180)


def test_a_capacity_that_holds_the_storm_leaves_boots_their_own_length() -> None:
    simulated = storms(capacity=1000)["Site 100000000002"][2]["simulated"]
    assert isinstance(simulated, dict)
    assert simulated["longest_boot_s"] == pytest.approx(120)


def test_without_a_measured_capacity_it_says_so() -> None:
    severity, message, details = storms(capacity=None)["Site 100000000001"]
    assert "capacity not measured" in message
    simulated = details["simulated"]
    assert isinstance(simulated, dict)
    assert simulated["longest_boot_s"] is None
    assert simulated["requests_in_minute"] == 7200
    assert severity == "warning"


def test_alerts_other_than_storms_are_left_alone() -> None:
    state = snapshot(20)
    before = evaluate(state)
    after = forecast_storms(before, state)
    assert [a.key for a in after] == [a.key for a in before]
    assert [a for a in after if a.kind != "storm"] == [a for a in before if a.kind != "storm"]


def make_plan() -> Plan:
    sites = tuple(
        SitePhones(serial, zone, Window.parse("01:00-05:00"),
                   tuple(f"0004f2{i}{n:05d}" for n in range(300)))
        for i, (serial, zone) in enumerate(SITES.items())
    )  # fmt: skip
    cost = BootCost(12, 40_000, 120, "test")
    return plan_rollout(PlanInput(sites, cost, 50, NOW, NOW + timedelta(days=10)))


class TestPlanForecast:
    def test_without_calls_the_plan_holds(self) -> None:
        plan = make_plan()
        forecast = forecast_plan(plan, 0.0, 3.0, reboot=True)
        assert (forecast.phones, forecast.rebooted, forecast.waited_for_calls) == (900, 900, 0)
        assert forecast.finish is not None
        # the last phone is notified inside the plan's last slot and boots 120 s
        assert plan.finish - timedelta(seconds=60) <= forecast.finish <= plan.finish

    def test_calls_hold_reboots_and_the_rollout_ends_later(self) -> None:
        plan = make_plan()
        forecast = forecast_plan(plan, 2.0, 15.0, reboot=True)
        assert forecast.waited_for_calls > 50
        assert forecast.finish is not None
        assert forecast.finish > plan.finish
        assert "reboots wait for a call to end" in forecast.text()

    def test_without_reboot_phones_that_keep_their_configuration_do_not_reboot(self) -> None:
        forecast = forecast_plan(make_plan(), 0.0, 3.0, reboot=False)
        assert forecast.rebooted == 0
        assert forecast.finish is None
        assert "only 0 of 900 phones reboot (R9" in forecast.text()


class TestOneNumberForTheStorm:
    def test_the_peak_in_the_details_is_the_rate_the_message_says(self) -> None:
        for _, message, details in storms(capacity=20).values():
            simulated = details["simulated"]
            assert isinstance(simulated, dict)
            rate = simulated["requests_in_minute"] / 60
            assert details["peak_per_s"] == pytest.approx(rate)
            assert f"({rate:,.0f} req/s over it)" in message


class TestTwoSiteLicensesOnOneSite:
    def snapshot(self) -> Snapshot:
        state = snapshot(20)
        earlier = LAPSE - timedelta(days=5)  # a shorter one, posted too, with a higher id
        second = replace(
            license_of(9, "100000000003"),
            terms={0: earlier, 5: earlier},
            expires_on=earlier,
            digest=f"{9:064x}",
        )
        return replace(state, licenses=[*state.licenses, second])

    def test_the_forecast_simulates_the_license_its_phones_keep_and_leaves_the_other(
        self,
    ) -> None:
        state = self.snapshot()
        before = {a.key: a for a in evaluate(state)}
        found = {a.key: a for a in forecast_storms(list(before.values()), state)}
        kept, shadowed = found["storm:100000000003:3"], found["storm:100000000003:9"]
        assert shadowed == before["storm:100000000003:9"]  # left as core/alerts estimated it
        simulated = kept.details["simulated"]
        assert isinstance(simulated, dict)
        # R7: the phones keep the longer license 3 and storm when it lapses, at 02:00 UTC alone
        assert simulated["minute"] == "2027-03-21T02:00:00+00:00"
        assert simulated["phones_in_minute"] == 300
        assert simulated["requests_in_minute"] == 3600
        # the sites with one license are forecast as before
        assert found["storm:100000000001:1"].details["simulated"]["requests_in_minute"] == 7200
