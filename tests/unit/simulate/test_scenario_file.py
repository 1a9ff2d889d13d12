"""Scenario files: what they say, and every malformed one refused with where and what."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time

import pytest

from fleetkey.core.device.config import PollMode
from fleetkey.core.features import default_catalog
from fleetkey.errors import InputError, ScenarioError
from fleetkey.simulate.scenario import ConfigChange, Post, Rollout, Scenario, ServerDown
from fleetkey.simulate.scenariofile import parse_scenario

CATALOG = default_catalog()
GOOD = """
[simulation]
start = 2027-01-01T00:00:00Z
days = 30
[server]
capacity = 100
[[sites]]
serial = "100000000001"
count = 2
phones = 10
timezones = ["Europe/Berlin", "Asia/Tokyo"]
window = "22:00-05:00"
license_polling_time = "03:15"
phone_features = ["vqmon"]
[sites.polling]
enabled = true
mode = "random"
period_s = 172800
time = "02:00"
random_end = "04:00"
[[licenses]]
name = "a"
features = ["corporate-directory"]
expires = 2027-01-20
[[licenses]]
name = "forever"
features = ["call-recording"]
expires = "never"
[[events]]
at = 2027-01-02T00:00:00+01:00
post = "a"
[[events]]
at = 2027-01-01T00:00:00Z
post = "forever"
sites = ["100000000002"]
[[events]]
at = 2027-01-05T00:00:00Z
rollout = true
deadline = 2027-01-10T00:00:00Z
[[events]]
at = 2027-01-06T00:00:00Z
config_change = true
[[events]]
at = 2027-01-07T00:00:00Z
server_down_until = 2027-01-07T01:00:00Z
"""


def test_a_scenario_reads_as_written() -> None:
    scenario = parse_scenario(GOOD, "dir/good.toml", CATALOG)
    assert scenario.name == "good.toml"
    assert scenario.days == 30
    assert scenario.phones == 20
    assert scenario.server.capacity_per_s == 100
    (group,) = scenario.groups
    assert group.serials() == ["100000000001", "100000000002"]
    assert group.timezones == ("Europe/Berlin", "Asia/Tokyo")
    assert group.license_polling_time == time(3, 15)
    assert group.polling.mode is PollMode.RANDOM
    assert group.phone_slots == {CATALOG.slot_of("vqmon")}
    assert scenario.licenses["a"].expires == date(2027, 1, 20)
    assert scenario.licenses["forever"].expires is None
    kinds = [type(e) for e in scenario.events]  # in time order
    assert kinds == [Post, Post, Rollout, ConfigChange, ServerDown]
    assert scenario.events[1].at == datetime(2027, 1, 1, 23, 0, tzinfo=UTC)


def replaced(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


BAD = [
    ("not toml", "[simulation", "not TOML"),
    ("no simulation", replaced("[simulation]\n", "[simulatio]\n"), "unknown key 'simulatio'"),
    (
        "naive start",
        replaced("00:00:00Z\ndays", "00:00:00\ndays"),
        "start must be a date-time with an offset",
    ),
    ("zero days", replaced("days = 30", "days = 0"), "days must be from 1 to 3660, not 0"),
    ("days a string", replaced("days = 30", "days = '30'"), "days must be an integer, not '30'"),
    (
        "negative capacity",
        replaced("capacity = 100", "capacity = -1"),
        "capacity must be at least 0.001",
    ),
    (
        "unknown server key",
        replaced("capacity = 100", "capacity = 100\nspeed = 3"),
        "[server]: unknown key 'speed'",
    ),
    (
        "short serial",
        replaced('serial = "100000000001"', 'serial = "1001"'),
        "serial must be 12 hex digits",
    ),
    (
        "serials overflow",
        replaced('serial = "100000000001"', 'serial = "ffffffffffff"'),
        "run past ffffffffffff",
    ),
    ("no phones", replaced("phones = 10\n", ""), "[[sites]] 1: phones is missing"),
    ("bad zone", replaced('"Asia/Tokyo"', '"Mars/Olympus"'), "unknown time zone 'Mars/Olympus'"),
    ("bad window", replaced('"22:00-05:00"', '"22-05"'), "window '22-05' is not HH:MM-HH:MM"),
    (
        "bad polling time",
        replaced('"03:15"', '"25:00"'),
        "license_polling_time must be a local time HH:MM",
    ),
    (
        "short period",
        replaced("period_s = 172800", "period_s = 60"),
        "period_s must be at least 3600, not 60",
    ),
    (
        "random without end",
        replaced('random_end = "04:00"', ""),
        "needs prov.polling.timeRandomEnd",
    ),
    ("bad mode", replaced('mode = "random"', 'mode = "often"'), "mode must be abs, rel or random"),
    ("unknown feature", replaced('["vqmon"]', '["teleport"]'), "unknown feature 'teleport'"),
    (
        "call rate",
        replaced("phone_features", "calls_per_hour = 5\nphone_features"),
        "calls_per_hour must be from 0 to 2",
    ),
    (
        "license no features",
        replaced('features = ["corporate-directory"]', "features = []"),
        "features must name at least one",
    ),
    (
        "license date-time",
        replaced("expires = 2027-01-20", "expires = 2027-01-20T00:00:00Z"),
        "expires must be a date",
    ),
    ("license twice", replaced('name = "forever"', 'name = "a"'), "license 'a' is named twice"),
    ("post unknown", replaced('post = "a"', 'post = "b"'), "post names license 'b'"),
    (
        "two kinds",
        replaced('post = "a"', 'post = "a"\nconfig_change = true'),
        "needs exactly one of",
    ),
    (
        "unknown site",
        replaced('sites = ["100000000002"]', 'sites = ["100000000009"]'),
        "site 100000000009 is not one of",
    ),
    (
        "deadline first",
        replaced("deadline = 2027-01-10", "deadline = 2027-01-04"),
        "[[events]] 3: the rollout's deadline 2027-01-04 00:00 UTC is not after its start "
        "2027-01-05 00:00 UTC; expected a later deadline",
    ),
    (
        "down backwards",
        replaced("until = 2027-01-07T01", "until = 2027-01-06T01"),
        "[[events]] 5: server_down_until 2027-01-06 01:00:00 UTC is not after at "
        "2027-01-07 00:00:00 UTC; expected a later moment",
    ),
    (
        "event after the period",
        replaced("at = 2027-01-07T00:00:00Z", "at = 2027-01-31T00:00:00Z").replace(
            "until = 2027-01-07T01", "until = 2027-02-07T01"
        ),
        "[[events]] 5: at 2027-01-31 00:00 UTC is not before the end of the period "
        "2027-01-31 00:00 UTC",
    ),
    ("post not a name", replaced('post = "a"', "post = 3"), "post must name a license, not 3"),
    (
        "two sites one serial",
        GOOD + '[[sites]]\nserial = "100000000002"\nphones = 1\n',
        "site 100000000002 is in the scenario twice",
    ),
    (
        "rollout key on post",
        replaced('post = "a"', 'post = "a"\nreboot = true'),
        "unknown key 'reboot'",
    ),
]


@pytest.mark.parametrize(("text", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_malformed_scenario_is_refused_saying_where_and_what(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_scenario(text, "s.toml", CATALOG)
    assert str(caught.value).startswith("s.toml")
    assert message in str(caught.value)


def test_an_event_after_the_period_says_how_to_bring_it_in() -> None:
    late = replaced("at = 2027-01-06T00:00:00Z", "at = 2027-03-06T00:00:00Z")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(late, "s.toml", CATALOG)
    assert "it would never happen" in str(caught.value)
    assert caught.value.hint is not None
    assert "[simulation] days" in caught.value.hint


class TestScenariosBuiltInCode:
    """A scenario made in code (the storm forecast, --from-store) passes the parser's checks."""

    def good(self) -> Scenario:
        return parse_scenario(GOOD, "good.toml", CATALOG)

    def test_two_groups_of_one_site_are_refused(self) -> None:
        scenario = self.good()
        twice = (*scenario.groups, replace(scenario.groups[0], count=1))
        with pytest.raises(ScenarioError, match="site 100000000001 is in the scenario twice"):
            replace(scenario, groups=twice)

    def test_a_post_of_a_license_it_lacks_is_refused_with_the_licenses_it_has(self) -> None:
        scenario = self.good()
        post = Post(scenario.start, "missing", None)
        with pytest.raises(ScenarioError, match="post names license 'missing'") as caught:
            replace(scenario, events=(*scenario.events, post))
        assert caught.value.hint == "the licenses are 'a', 'forever'"

    def test_an_event_past_the_end_is_refused(self) -> None:
        scenario = self.good()
        late = ConfigChange(scenario.end, None)
        with pytest.raises(ScenarioError, match="not before the end of the period"):
            replace(scenario, events=(*scenario.events, late))

    def test_shortening_the_period_past_an_event_is_refused(self) -> None:
        with pytest.raises(ScenarioError, match="event config change at 2027-01-06 00:00 UTC: at"):
            replace(self.good(), days=5)

    def test_a_site_named_by_an_event_must_be_one_of_its_sites(self) -> None:
        scenario = self.good()
        change = ConfigChange(scenario.start, ("100000000009",))
        with pytest.raises(ScenarioError, match="site 100000000009 is not one of"):
            replace(scenario, events=(change,))


class TestScenarioErrorsSayWhatWasExpected:
    """Each check of a scenario says the value it found, what it expected, and how to fix it."""

    def good(self) -> Scenario:
        return parse_scenario(GOOD, "good.toml", CATALOG)

    def refused(self, **changes: object) -> ScenarioError:
        with pytest.raises(ScenarioError) as caught:
            replace(self.good(), **changes)  # type: ignore[arg-type]
        assert caught.value.hint
        return caught.value

    def test_a_site_group_without_phones(self) -> None:
        scenario = self.good()
        caught = self.refused(groups=(replace(scenario.groups[0], phones=0),))
        assert "sites from 100000000001: count is 2 and phones is 0; expected at least 1" in str(
            caught
        )
        assert "count sites" in (caught.hint or "")

    def test_a_license_filed_under_another_name(self) -> None:
        scenario = self.good()
        licenses = {**scenario.licenses, "b": scenario.licenses["a"]}
        caught = self.refused(licenses=licenses)
        assert "license 'a' is filed under the name 'b'; expected its own name" in str(caught)

    def test_phones_held_at_the_start_of_a_license_it_lacks(self) -> None:
        scenario = self.good()
        caught = self.refused(groups=(replace(scenario.groups[0], held=(("gone", 3),)),))
        assert "the phones held at the start name license 'gone', which the scenario lacks" in str(
            caught
        )
        assert caught.hint == "the licenses are 'a', 'forever'"

    def test_more_phones_held_at_the_start_than_the_site_has(self) -> None:
        scenario = self.good()
        held = (("a", 6), ("forever", 5))
        caught = self.refused(groups=(replace(scenario.groups[0], held=held),))
        assert "11 phones hold a license at the start; expected at most the site's 10" in str(
            caught
        )

    def test_an_event_before_the_start(self) -> None:
        early = ConfigChange(datetime(2026, 12, 31, 23, 0, tzinfo=UTC), None)
        caught = self.refused(events=(early,))
        assert (
            "at 2026-12-31 23:00 UTC is before the start 2027-01-01 00:00 UTC; expected the "
            "start or later"
        ) in str(caught)
        assert "[simulation] start" in (caught.hint or "")

    def test_a_rollout_whose_deadline_is_not_after_its_start(self) -> None:
        at = datetime(2027, 1, 5, tzinfo=UTC)
        caught = self.refused(events=(Rollout(at, at, None, reboot=False),))
        assert "deadline 2027-01-05 00:00 UTC is not after its start 2027-01-05 00:00 UTC" in str(
            caught
        )
        assert "deadline after at" in (caught.hint or "")

    def test_an_outage_that_ends_before_it_begins(self) -> None:
        at = datetime(2027, 1, 5, tzinfo=UTC)
        caught = self.refused(
            events=(ServerDown(at, datetime(2027, 1, 4, 23, 59, 30, tzinfo=UTC)),)
        )
        assert (
            "server_down_until 2027-01-04 23:59:30 UTC is not after at 2027-01-05 00:00:00"
            in str(caught)
        )
        assert "answers again" in (caught.hint or "")
