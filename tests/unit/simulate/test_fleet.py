"""The fleet's calendar (simulate/fleet.py) against the device engine's own clock
(core/device/schedule.py) around DST changes: ``Calendar.next_at`` is ``next_daily`` and
``Calendar.day_of`` is the local date, in Europe/Berlin, America/New_York, Australia/Sydney and
Pacific/Auckland, at and a second either side of each change, each local midnight and each
daily moment (strictly after: at the moment itself, the next day's)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from fleetkey.core.device.schedule import daily_moment, next_daily
from fleetkey.simulate.fleet import Calendar, build_fleet
from fleetkey.testing import ScenarioBuilder

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Pacific/Auckland")
# 02:30 falls in every spring-forward gap and repeats where the clock goes back from 03:00;
# 01:30 repeats in New York, which goes back from 02:00
TIMES = (time(2, 30), time(1, 30))
START = datetime(2027, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@pytest.fixture(scope="module")
def calendar() -> Calendar:
    built = ScenarioBuilder(days=365)
    for i, zone in enumerate(ZONES):
        built.site(f"10000000000{i + 1}", 1, timezone=zone, license_polling_time="02:30",
                   polling={"enabled": True, "mode": "abs", "time": "01:30"})  # fmt: skip
    return build_fleet(built.scenario()).calendar


def changes(zone: str) -> list[datetime]:
    """The instants of 2027 at which the zone's UTC offset changes."""
    info = ZoneInfo(zone)
    hours = [START + timedelta(hours=h) for h in range(365 * 24)]
    found = []
    for before, after in itertools.pairwise(hours):
        if before.astimezone(info).utcoffset() != after.astimezone(info).utcoffset():
            found.append(after)
    return found


def moments(zone: str) -> list[datetime]:
    """Each change and second either side; each local midnight and daily moment of the days
    around it and the second either side."""
    info = ZoneInfo(zone)
    out: list[datetime] = []
    for change in changes(zone):
        out += [change - SECOND, change, change + SECOND]
        local = change.astimezone(info).date()
        for day in (local - timedelta(days=1), local, local + timedelta(days=1)):
            for at in (time(0, 0), *TIMES):
                moment = daily_moment(day, at, info)
                out += [moment - SECOND, moment, moment + SECOND]
    return out


def seconds(moment: datetime) -> float:
    return (moment - START).total_seconds()


@pytest.mark.parametrize("zone", ZONES)
def test_each_zone_changes_its_clock_twice_in_2027(zone: str) -> None:
    assert len(changes(zone)) == 2


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("at", TIMES, ids=lambda t: t.isoformat())
def test_the_next_local_moment_is_the_engines_next_daily(
    calendar: Calendar, zone: str, at: time
) -> None:
    z = calendar.zones.index(zone)
    which = calendar.times.index((z, at))
    after = moments(zone)
    found, day = calendar.next_at(
        np.full(len(after), which, dtype=np.int32),
        np.full(len(after), z, dtype=np.int32),
        np.array([seconds(a) for a in after]),
    )
    info = ZoneInfo(zone)
    for i, moment in enumerate(after):
        expected = next_daily(moment, at, info)
        assert found[i] == seconds(expected), (zone, at, moment)
        assert day[i] == daily_day(expected, at, info) - calendar.base, (zone, at, moment)


def daily_day(moment: datetime, at: time, info: ZoneInfo) -> int:
    """The local day whose ``at`` is ``moment`` (in a gap, moved forward: that same day)."""
    local = moment.astimezone(info).date()
    for day in (local, local - timedelta(days=1)):
        if daily_moment(day, at, info) == moment:
            return day.toordinal()
    raise AssertionError(f"{moment} is no daily {at}")


@pytest.mark.parametrize("zone", ZONES)
def test_the_day_of_a_moment_is_its_local_date(calendar: Calendar, zone: str) -> None:
    z = calendar.zones.index(zone)
    at = moments(zone)
    days = calendar.day_of(np.full(len(at), z, dtype=np.int32), np.array([seconds(a) for a in at]))
    info = ZoneInfo(zone)
    for i, moment in enumerate(at):
        local = moment.astimezone(info).date()
        assert days[i] == local.toordinal() - calendar.base, (zone, moment)
