"""fleetkey.testing.ScenarioBuilder: the scenario fleets of the tests and bench/simulate.py,
written as the TOML an operator writes and parsed with its checks."""

from __future__ import annotations

import pytest

from fleetkey.errors import ScenarioError
from fleetkey.testing import ScenarioBuilder


class TestFleet:
    @pytest.mark.parametrize("phones", [1000, 1500, 1001, 999_999, 12_345])
    def test_every_phone_asked_for_is_in_the_scenario(self, phones: int) -> None:
        built = ScenarioBuilder(days=1).fleet("100000000000", phones, 1000)
        scenario = built.scenario()
        assert scenario.phones == phones
        assert sum(group.count for group in scenario.groups) == 1000
        sizes = {group.phones for group in scenario.groups}
        assert max(sizes) - min(sizes) <= 1  # as even as it divides

    def test_the_sites_serials_count_up_without_a_gap(self) -> None:
        built = ScenarioBuilder(days=1).fleet("1000000000fe", 7, 3)
        assert built.serials() == ["1000000000fe", "1000000000ff", "100000000100"]
        assert [g.phones for g in built.scenario().groups] == [3, 2]

    def test_fewer_phones_than_sites_is_refused(self) -> None:
        with pytest.raises(ValueError, match="2 phones cannot fill 3 sites"):
            ScenarioBuilder().fleet("100000000000", 2, 3)


class TestToml:
    def test_settings_dates_and_events_read_back(self) -> None:
        built = (
            ScenarioBuilder(start="2027-03-01T00:00:00Z", days=30, name='a "quoted" name')
            .site("100000000001", 5, timezone="Europe/Berlin", license_polling_time="02:30",
                  polling={"enabled": True, "mode": "rel", "period_s": 7200})
            .license("a", ["vqmon"], "2027-03-20")
            .event("2027-03-02T00:00:00Z", post="a")
        )  # fmt: skip
        scenario = built.scenario()
        assert scenario.name == 'a "quoted" name'
        (group,) = scenario.groups
        assert (group.timezones, group.license_polling_time.isoformat()) == (
            ("Europe/Berlin",),
            "02:30:00",
        )
        assert group.polling.period_s == 7200
        assert scenario.licenses["a"].expires is not None
        assert scenario.events[0].at.isoformat() == "2027-03-02T00:00:00+00:00"

    def test_it_goes_through_the_parsers_checks(self) -> None:
        built = (
            ScenarioBuilder(days=1)
            .site("100000000001", 5)
            .event("2027-01-01T00:00:00Z", post="missing")
        )
        with pytest.raises(ScenarioError, match="post names license 'missing'"):
            built.scenario()
