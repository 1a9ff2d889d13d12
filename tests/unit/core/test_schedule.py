"""When a phone's timers fall due (core/device/schedule.py), around DST changes: 02:30 does not
exist on a spring-forward night and comes twice on a fall-back night, in Europe/Berlin,
Australia/Sydney, Pacific/Auckland and America/New_York."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkey.core.device.config import ConfigPolling, PhoneConfig, PollMode, next_config_poll
from fleetkey.core.device.engine import DeviceEngine
from fleetkey.core.device.schedule import (
    boot_draw,
    daily_moment,
    draw_key,
    lapse_check_day,
    mac_day,
    next_daily,
    periodic_after,
    picked_day,
)
from fleetkey.testing import trusted_keys_for

AT = time(2, 30)
MAC = "0004f2000001"
T0 = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
ZONES = ("Europe/Berlin", "Australia/Sydney", "Pacific/Auckland", "America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


class TestTheDailyMomentAcrossDst:
    # (zone, after, expected): after a spring-forward night's gap the moved-forward 02:30 is
    # still ahead the same day; after the first 02:30 of a fall-back night, the next is tomorrow
    @pytest.mark.parametrize(
        ("zone", "after", "expected"),
        [
            # Berlin springs forward 2027-03-28 02:00 -> 03:00: 02:30 is 03:30 CEST (01:30 UTC)
            ("Europe/Berlin", utc(2027, 3, 28, 1, 10), utc(2027, 3, 28, 1, 30)),
            # New York springs forward 2027-03-14 02:00 -> 03:00: 02:30 is 03:30 EDT
            ("America/New_York", utc(2027, 3, 14, 7, 10), utc(2027, 3, 14, 7, 30)),
            # Sydney springs forward 2027-10-03 02:00 -> 03:00 AEDT: 02:30 is 16:30 UTC
            ("Australia/Sydney", utc(2027, 10, 2, 16, 10), utc(2027, 10, 2, 16, 30)),
            # Auckland springs forward 2027-09-26 02:00 -> 03:00 NZDT: 02:30 is 14:30 UTC
            ("Pacific/Auckland", utc(2027, 9, 25, 14, 10), utc(2027, 9, 25, 14, 30)),
        ],
    )
    def test_a_time_in_the_spring_gap_falls_due_the_same_night_moved_forward(
        self, zone: str, after: datetime, expected: datetime
    ) -> None:
        assert next_daily(after, AT, ZoneInfo(zone)) == expected

    @pytest.mark.parametrize(
        ("zone", "after", "expected"),
        [
            # Berlin falls back 2027-10-31 03:00 CEST -> 02:00 CET; 02:15 CET is 01:15 UTC,
            # after the first 02:30 (00:30 UTC): the next check is the next night, 02:30 CET
            ("Europe/Berlin", utc(2027, 10, 31, 1, 15), utc(2027, 11, 1, 1, 30)),
            # Sydney falls back 2027-04-04 03:00 AEDT -> 02:00 AEST (16:00 UTC on the 3rd)
            ("Australia/Sydney", utc(2027, 4, 3, 16, 15), utc(2027, 4, 4, 16, 30)),
            # Auckland falls back 2027-04-04 03:00 NZDT -> 02:00 NZST (14:00 UTC on the 3rd)
            ("Pacific/Auckland", utc(2027, 4, 3, 14, 15), utc(2027, 4, 4, 14, 30)),
            # New York repeats 01:00-02:00 on 2027-11-07: 02:30 comes once, 07:30 UTC
            ("America/New_York", utc(2027, 11, 7, 6, 15), utc(2027, 11, 7, 7, 30)),
        ],
    )
    def test_a_repeated_time_falls_due_once_and_never_before_the_moment_asked(
        self, zone: str, after: datetime, expected: datetime
    ) -> None:
        assert next_daily(after, AT, ZoneInfo(zone)) == expected

    @pytest.mark.parametrize("zone", ZONES)
    def test_the_first_occurrence_of_a_repeated_time_is_the_daily_moment(self, zone: str) -> None:
        info = ZoneInfo(zone)
        day = {"Europe/Berlin": date(2027, 10, 31), "America/New_York": date(2027, 11, 7)}.get(
            zone, date(2027, 4, 4)
        )
        moment = daily_moment(day, AT, info)
        assert moment.astimezone(info).time() == AT
        assert next_daily(moment - timedelta(seconds=1), AT, info) == moment


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    minutes=st.integers(min_value=0, max_value=366 * 1440),
    at=st.sampled_from([time(2, 0), time(2, 30), time(2, 59, 30), time(3, 0), time(1, 30)]),
)
def test_next_daily_is_the_first_daily_moment_strictly_after(
    zone: str, minutes: int, at: time
) -> None:
    """For any moment of 2027 in the four zones: the result is later, it is the daily moment
    of its own local day, and no daily moment lies between."""
    info = ZoneInfo(zone)
    after = utc(2027, 1, 1) + timedelta(minutes=minutes)
    found = next_daily(after, at, info)
    assert found > after
    day = found.astimezone(info).date()
    assert (
        daily_moment(day, at, info) == found
        or daily_moment(day - timedelta(days=1), at, info) == found
    )
    previous = [daily_moment(day + timedelta(days=d), at, info) for d in (-2, -1, 0)]
    assert not any(after < moment < found for moment in previous)
    # once a local day: the next one is on a later local day
    assert next_daily(found, at, info).astimezone(info).date() > found.astimezone(info).date()


class TestRulesOnNumbersAndArrays:
    """The arithmetic rules give the same answer for one phone and for an array of phones."""

    def test_periodic_after_is_strictly_after_and_never_before_the_first(self) -> None:
        assert periodic_after(10.0, 5.0, 3.0) == 10.0
        assert periodic_after(10.0, 5.0, 10.0) == 15.0
        assert periodic_after(10.0, 5.0, 14.999) == 15.0
        assert periodic_after(10.0, 5.0, 15.0) == 20.0
        arrays = periodic_after(np.full(4, 10.0), np.full(4, 5.0), np.array([3, 10, 14.999, 15]))
        assert arrays.tolist() == [10.0, 15.0, 15.0, 20.0]

    def test_picked_day_is_the_first_day_of_the_pick_on_or_after(self) -> None:
        assert [picked_day(d, 3, 2) for d in (9, 10, 11, 12)] == [11, 11, 11, 14]
        assert picked_day(np.array([9, 10, 11, 12]), 3, 2).tolist() == [11, 11, 11, 14]

    def test_the_lapse_check_is_the_later_of_the_next_check_and_the_lapse(self) -> None:
        assert (lapse_check_day(5, 3), lapse_check_day(5, 7)) == (5, 7)
        assert lapse_check_day(np.array([5, 5]), np.array([3, 7])).tolist() == [5, 7]

    def test_a_boots_draw_is_the_same_for_the_engine_and_the_simulator(self) -> None:
        macs = [0x0004F2000001, 0x0004F2ABCDEF, 0xFFFFFFFFFFFF]
        keys = draw_key(np.array(macs, dtype=np.uint64), 7)
        arrays = boot_draw(keys, np.array([1, 2, 3], dtype=np.uint64))
        one_by_one = [boot_draw(draw_key(m, 7), b) for m, b in zip(macs, (1, 2, 3), strict=True)]
        assert arrays.tolist() == one_by_one
        assert all(0 <= d < 1 for d in one_by_one)
        assert len({boot_draw(draw_key(macs[0]), b) for b in range(1, 50)}) == 49

    def test_seeds_65536_apart_give_other_draws(self) -> None:
        # a seed once moved the key by seed x 2**48, which wraps at 2**64: 1 and 65537 agreed
        mac = 0x0004F2000001
        keys = {draw_key(mac, seed) for seed in (0, 1, 65536, 65537, 2**20)}
        assert len(keys) == 5

    @pytest.mark.parametrize("seed", [65536, 2**20], ids=["65536", "largest allowed"])
    def test_a_large_seed_draws_the_same_for_arrays_and_ints_without_overflow(
        self, seed: int
    ) -> None:
        macs = [0x0004F2000001, 0xFFFFFFFFFFFF, (1 << 64) - 1]  # the last: a hashed name
        keys = draw_key(np.array(macs, dtype=np.uint64), seed)
        assert keys.dtype == np.uint64
        assert keys.tolist() == [draw_key(m, seed) for m in macs]


class TestPollsAlwaysMoveOn:
    @pytest.mark.parametrize("draw", [0.001, 0.123456789, 0.5, 0.987654321])
    def test_a_random_poll_of_a_day_or_less_comes_every_period_after_its_drawn_first(
        self, draw: float
    ) -> None:
        polling = ConfigPolling(True, PollMode.RANDOM, 43200, time(1, 0), time(5, 0))
        config = PhoneConfig(MAC, polling=polling)
        first = next_config_poll(config, T0, T0, draw)
        assert first is not None
        assert abs((first - T0).total_seconds() - draw * 43200) < 1e-3
        moments = [first]
        for _ in range(6):  # each poll asks for the next from its own moment
            following = next_config_poll(config, T0, moments[-1], draw)
            assert following is not None
            moments.append(following)
        gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(moments)}
        assert gaps == {43200.0}


class TestTheEngineAcrossDst:
    def test_a_phone_booting_in_the_repeated_hour_schedules_nothing_in_the_past(self) -> None:
        # Berlin, 2027-10-31: 02:15 CET is 01:15 UTC, after the first 02:30 (00:30 UTC)
        polling = ConfigPolling(True, PollMode.ABS, 86400, AT)
        config = PhoneConfig(MAC, timezone="Europe/Berlin", license_polling_time=AT,
                             polling=polling)  # fmt: skip
        engine = DeviceEngine(config, trusted_keys_for())
        now = utc(2027, 10, 31, 1, 15)
        engine.power_on(now)
        engine.boot_completed(now, None, None)
        tomorrow = utc(2027, 11, 1, 1, 30)  # 02:30 CET
        assert (engine.state.next_license_poll, engine.state.next_config_poll) == (tomorrow,) * 2
        assert engine.advance(now) == []

    def test_a_phone_booting_after_the_spring_gap_checks_the_same_night(self) -> None:
        # Berlin, 2027-03-28: booted 03:10 CEST (01:10 UTC); 02:30 is 03:30 CEST that night
        config = PhoneConfig(MAC, timezone="Europe/Berlin", license_polling_time=AT)
        engine = DeviceEngine(config, trusted_keys_for())
        now = utc(2027, 3, 28, 1, 10)
        engine.power_on(now)
        engine.boot_completed(now, None, None)
        assert engine.state.next_license_poll == utc(2027, 3, 28, 1, 30)


BERLIN = ZoneInfo("Europe/Berlin")
WINDOW = (time(1, 0), time(5, 0))  # prov.polling.time, timeRandomEnd: 4 h on the clock


def mac_polling_on(night: date, days: int) -> str:
    """A MAC whose random polling every ``days`` days chooses ``night`` (mac_day)."""
    return next(
        mac
        for mac in (f"0004f2{i:06x}" for i in range(100))
        if picked_day(night.toordinal(), days, mac_day(mac, days)) == night.toordinal()
    )


class TestRandomPollingOnDstNights:
    """Random polling over days (domain.md §5.4): a moment in [time, timeRandomEnd] of local
    time, on the clock as it runs that night: the window is 3 h when the clocks go forward in
    it and 5 h when they go back, and every moment stays inside it."""

    @pytest.mark.parametrize(
        ("night", "hours"),
        [(date(2027, 3, 28), 3), (date(2027, 10, 31), 5), (date(2027, 6, 13), 4)],
        ids=["spring forward", "fall back", "ordinary night"],
    )
    def test_every_draw_is_inside_the_local_window_and_the_window_is_the_nights(
        self, night: date, hours: int
    ) -> None:
        polling = ConfigPolling(True, PollMode.RANDOM, 2 * 86400, *WINDOW)
        config = PhoneConfig(mac_polling_on(night, 2), timezone=BERLIN.key, polling=polling)
        before = datetime.combine(night - timedelta(days=1), time(12), tzinfo=BERLIN)
        draws = [0.0, 0.25, 0.5, 0.75, 0.9999]
        moments = [next_config_poll(config, before, before, d) for d in draws]
        assert all(m is not None for m in moments)
        local = [m.astimezone(BERLIN) for m in moments if m is not None]
        assert [m.date() for m in local] == [night] * len(draws)
        assert all(WINDOW[0] <= m.time() < WINDOW[1] for m in local), local
        assert local[-1].time() >= time(4, 59)  # the window's last minute reached
        spans = [(b - a).total_seconds() for a, b in itertools.pairwise(moments)]  # type: ignore[operator]
        assert sum(spans) == pytest.approx(0.9999 * hours * 3600, abs=1e-3)
        assert all(span > 0 for span in spans)  # in order of the draw: spread, never folded

    @pytest.mark.parametrize("night", [date(2027, 3, 28), date(2027, 10, 31)])
    def test_asked_from_inside_the_window_the_poll_is_that_nights_or_the_next_chosen(
        self, night: date
    ) -> None:
        polling = ConfigPolling(True, PollMode.RANDOM, 2 * 86400, *WINDOW)
        config = PhoneConfig(mac_polling_on(night, 2), timezone=BERLIN.key, polling=polling)
        late = 0.9  # 04:36 local on any night
        week_before = datetime.combine(night - timedelta(days=7), time(12), tzinfo=BERLIN)
        moment = next_config_poll(config, T0, week_before, late)
        assert moment is not None
        while moment.astimezone(BERLIN).date() < night:
            moment = next_config_poll(config, T0, moment, late)
            assert moment is not None
        assert moment.astimezone(BERLIN).date() == night
        # just before it: still that night's; at it: two nights on, inside the window again
        assert next_config_poll(config, T0, moment - timedelta(seconds=1), late) == moment
        following = next_config_poll(config, T0, moment, late)
        assert following is not None
        assert following.astimezone(BERLIN).date() == night + timedelta(days=2)
        assert WINDOW[0] <= following.astimezone(BERLIN).time() < WINDOW[1]
