"""The rollout planner: properties (capacity, windows, each phone once) and explained failures."""

from __future__ import annotations

import itertools
import time as walltime
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkey.core.rollout.plan import (
    BootCost,
    Plan,
    PlanInput,
    SitePhones,
    plan_rollout,
)
from fleetkey.core.rollout.windows import Window, open_intervals
from fleetkey.errors import InputError, PlanInfeasibleError

START = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)  # a week before Europe's DST change
COST = BootCost(requests=10, bytes=40_000, seconds=60, source="test profile")
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]


def site(serial: int, count: int, zone: str = "UTC", window: str = "22:00-05:00") -> SitePhones:
    start, end = window.split("-")
    macs = tuple(f"{serial:04x}{i:08x}" for i in range(count))
    return SitePhones(f"1{serial:011d}", zone, Window.parse(f"{start}-{end}"), macs)


def request(
    *sites: SitePhones, capacity: float = 100, days: float = 7, **extra: object
) -> PlanInput:
    return PlanInput(
        sites,
        COST,
        capacity,
        START,
        START + timedelta(days=days),
        **extra,  # type: ignore[arg-type]
    )


def in_window(plan: Plan, sites: dict[str, SitePhones]) -> bool:
    boot = timedelta(seconds=plan.input.cost.seconds)
    for wave in plan.waves:
        chosen = sites[wave.site]
        spans = open_intervals(
            chosen.window, chosen.timezone, plan.input.start, plan.input.deadline
        )
        if not any(lo <= wave.start and wave.end + boot <= hi for lo, hi in spans):
            return False
    return True


sites_strategy = st.lists(
    st.tuples(
        st.integers(1, 400),
        st.sampled_from(ZONES),
        st.integers(0, 23),
        st.integers(1, 12),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(sites_strategy, st.floats(5, 400), st.floats(0.1, 1.0), st.sampled_from([30, 60, 300]))
def test_plans_never_exceed_capacity_leave_windows_or_skip_or_repeat_a_phone(
    shapes: list[tuple[int, str, int, int]], capacity: float, headroom: float, slot: int
) -> None:
    chosen = [
        site(i, count, zone, f"{hour:02d}:00-{(hour + length) % 24:02d}:00")
        for i, (count, zone, hour, length) in enumerate(shapes)
    ]
    given_input = request(*chosen, capacity=capacity, days=3, headroom=headroom, slot_s=slot)
    outcome: Plan | PlanInfeasibleError
    try:
        outcome = plan_rollout(given_input)
    except PlanInfeasibleError as caught:
        outcome = caught
    if isinstance(outcome, PlanInfeasibleError):
        assert sum(outcome.left.values()) > 0
        if outcome.needed_capacity is not None:  # the capacity it names really fits
            bigger = request(
                *chosen, capacity=outcome.needed_capacity * 1.0001, days=3, headroom=headroom,
                slot_s=slot,
            )  # fmt: skip
            assert plan_rollout(bigger).phones == sum(len(s.macs) for s in chosen)
        return
    plan = outcome
    every = [mac for s in chosen for mac in s.macs]
    planned = [mac for wave in plan.waves for mac in wave.macs]
    assert sorted(planned) == sorted(every)
    assert plan.peak_load <= capacity * headroom + 1e-9
    assert in_window(plan, {s.serial: s for s in chosen})
    assert plan.finish <= given_input.deadline


def test_same_input_gives_the_same_plan() -> None:
    sites = (site(1, 500, "Europe/Berlin"), site(2, 700, "America/New_York"))
    one, other = plan_rollout(request(*sites)), plan_rollout(request(*reversed(sites)))
    assert one.waves == other.waves
    assert one.explanation == other.explanation


def test_the_site_whose_window_closes_first_goes_first() -> None:
    early = site(1, 50, "UTC", "13:00-14:00")
    late = site(2, 50, "UTC", "12:00-20:00")
    plan = plan_rollout(request(late, early, capacity=10 * 50 / 60 / 0.7))  # 50 phones a slot
    first_waves = [wave.site for wave in plan.waves[:2]]
    assert first_waves[0] == late.serial  # only the late site is open at 12:00
    starts = {wave.site: wave.start for wave in plan.waves}
    assert starts[early.serial] == datetime(2027, 3, 20, 13, 0, tzinfo=UTC)


def test_notifies_are_spaced_evenly_inside_their_slot() -> None:
    plan = plan_rollout(request(site(1, 4, "UTC", "12:00-13:00")))
    wave = plan.waves[0]
    times = [wave.notify_at(i) for i in range(len(wave.macs))]
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps == {timedelta(seconds=15)}
    assert times[0] == wave.start + timedelta(seconds=7.5)


def test_windows_keep_their_local_hours_across_a_dst_change() -> None:
    window = Window.parse("01:00-04:00")
    spans = open_intervals(window, "Europe/Berlin", START, START + timedelta(days=10))
    berlin = ZoneInfo("Europe/Berlin")
    assert all(lo.astimezone(berlin).time() == time(1, 0) for lo, _ in spans)
    lengths = {hi - lo for lo, hi in spans}
    assert lengths == {timedelta(hours=3), timedelta(hours=2)}  # 2027-03-28: 02:00 → 03:00


def test_a_window_that_never_fits_a_slot_and_boot_is_explained() -> None:
    narrow = site(1, 3, "UTC", "01:00-01:01")
    with pytest.raises(PlanInfeasibleError, match=r"window 01:00-01:01 \(UTC\) never holds"):
        plan_rollout(request(narrow))


def test_too_little_capacity_says_how_much_would_fit() -> None:
    big = site(1, 20_000, "UTC", "01:00-03:00")
    with pytest.raises(PlanInfeasibleError) as caught:
        plan_rollout(request(big, capacity=10, days=2))
    message = str(caught.value)
    assert "of 20,000 phones do not fit" in message
    assert "site 100000000001: " in message
    assert "more hours of open windows" in message
    assert "would fit every phone" in message
    assert caught.value.needed_capacity is not None
    assert plan_rollout(request(big, capacity=caught.value.needed_capacity * 1.0001, days=2))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"capacity": 0}, "capacity must be above 0"),
        ({"headroom": 0}, "headroom must be in"),
        ({"headroom": 1.5}, "headroom must be in"),
        ({"slot_s": 0}, "a slot must be at least 1 second"),
        ({"days": -1}, "has passed"),
        ({"days": 400, "slot_s": 1}, "use longer slots"),
    ],
)
def test_bad_plan_inputs_are_refused_clearly(changes: dict[str, float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        plan_rollout(request(site(1, 5), **changes))  # type: ignore[arg-type]


def test_a_slot_too_short_for_one_boot_is_explained() -> None:
    with pytest.raises(PlanInfeasibleError, match="more than a 1-second slot may carry"):
        plan_rollout(request(site(1, 5), capacity=5, days=1, slot_s=1))


def test_a_million_phones_plan_in_well_under_ten_seconds() -> None:
    sites = [site(i, 1000, ZONES[i % len(ZONES)]) for i in range(1000)]
    began = walltime.perf_counter()
    plan = plan_rollout(request(*sites, capacity=5000, days=20))
    elapsed = walltime.perf_counter() - began
    assert plan.phones == 1_000_000
    print(f"1,000,000 phones planned in {elapsed:.2f} s")
