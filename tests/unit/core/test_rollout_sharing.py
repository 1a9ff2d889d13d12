"""Plans share the server: a plan leaves room for the load other rollouts already plan, on one
slot grid; `--now` plans ignore windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkey.core.rollout.plan import BootCost, Plan, PlanInput, SitePhones, plan_rollout
from fleetkey.core.rollout.sharing import Load, grid_start, peak_by_slot, room_by_slot
from fleetkey.core.rollout.windows import Window
from fleetkey.errors import PlanInfeasibleError

START = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)
COST = BootCost(requests=10, bytes=40_000, seconds=60, source="test profile")


def site(
    count: int, window: str | None = "12:00-14:00", serial: str = "100000000001"
) -> SitePhones:
    macs = tuple(f"0004f2{i:06x}" for i in range(count))
    return SitePhones(serial, "UTC", None if window is None else Window.parse(window), macs)


def request(*sites: SitePhones, busy: tuple[Load, ...] = (), **extra: object) -> PlanInput:
    settings_ = {"capacity": 100.0, "start": START, "slot_s": 60} | extra
    return PlanInput(
        sites,
        COST,
        settings_["capacity"],  # type: ignore[arg-type]
        settings_["start"],  # type: ignore[arg-type]
        START + timedelta(days=2),
        slot_s=settings_["slot_s"],  # type: ignore[arg-type]
        busy=busy,
    )


def as_loads(plan: Plan, rollout: int) -> tuple[Load, ...]:
    """A saved plan as another plan sees it: each slot's rate over the slot."""
    length = timedelta(seconds=plan.input.slot_s)
    return tuple(Load(start, start + length, rate, rollout) for start, rate in plan.slot_loads())


def combined_peak(plan: Plan) -> float:
    """The highest load of this plan and its ``busy`` together, slot by slot."""
    busy = plan.input.busy_by_slot()
    length = plan.input.slot_s
    return max(
        rate + busy.get(round((start - plan.input.origin).total_seconds() / length), 0.0)
        for start, rate in plan.slot_loads()
    )


def test_a_second_plan_of_the_same_phones_takes_only_what_the_first_leaves() -> None:
    first = plan_rollout(request(site(1000)))  # 420 check-syncs a slot: 3 slots
    second = plan_rollout(request(site(1000), busy=as_loads(first, 1)))
    assert first.peak_load == pytest.approx(70.0)
    assert combined_peak(second) <= 70.0 + 1e-9
    assert min(w.start for w in second.waves) >= max(w.start for w in first.waves)
    assert second.phones == 1000
    assert any("rollout 1 already plans up to 26.7 req/s" in line for line in second.explanation)
    assert second.busy_peak == pytest.approx(160 * 10 / 60)  # the first's last, partial slot


def test_a_plan_in_other_hours_says_no_slot_is_shared() -> None:
    late = (Load(START + timedelta(hours=20), START + timedelta(hours=21), 70.0, 4),)
    plan = plan_rollout(request(site(10), busy=late))
    assert plan.busy_peak == 0
    assert "rollout 4 plans other hours: no slot is shared" in plan.explanation


def test_a_load_straddling_two_slots_counts_whole_in_each() -> None:
    straddling = Load(START + timedelta(seconds=30), START + timedelta(seconds=90), 50.0)
    assert peak_by_slot([straddling], START, 60, START + timedelta(hours=1)) == {0: 50.0, 1: 50.0}
    overlapping = [
        straddling,
        Load(START + timedelta(seconds=60), START + timedelta(seconds=70), 5),
    ]
    assert peak_by_slot(overlapping, START, 60, START + timedelta(hours=1))[1] == 55.0


def test_a_slot_the_others_fill_holds_nothing_and_never_a_negative_count() -> None:
    assert room_by_slot({0: 70.0, 1: 90.0, 2: 35.0}, 420.0, 60, 10) == {0: 0, 1: 0, 2: 210}


def test_slots_lie_on_one_grid_whatever_the_start() -> None:
    late_start = START + timedelta(seconds=37)
    plan = plan_rollout(request(site(5), start=late_start))
    assert plan.waves[0].start == START + timedelta(seconds=60)
    assert grid_start(late_start, 300) == START


def test_a_plan_that_ignores_windows_starts_in_the_first_whole_slot() -> None:
    closed_now = site(5, window="01:00-02:00")
    assert plan_rollout(request(closed_now)).waves[0].start.hour == 1
    now = plan_rollout(request(site(5, window=None), start=START + timedelta(seconds=1)))
    assert now.waves[0].start == START + timedelta(seconds=60)
    assert "maintenance windows are not kept (sent now, on the operator's word)" in now.explanation


def test_a_plan_the_others_crowd_out_names_them_and_the_capacity_that_would_fit() -> None:
    crowd = (Load(START, START + timedelta(days=2), 65.0, 7),)  # 5 req/s left of 70
    with pytest.raises(PlanInfeasibleError) as caught:
        plan_rollout(request(site(10_000), busy=crowd))
    message = str(caught.value)
    assert "rollout 7 already plans up to 65.0 req/s on the same server" in message
    assert "would fit every phone in the windows as they are, beside the other rollouts" in message
    needed = caught.value.needed_capacity
    assert needed is not None
    assert (
        plan_rollout(request(site(10_000), busy=crowd, capacity=needed * 1.0001)).phones == 10_000
    )


loads_strategy = st.lists(
    st.tuples(st.integers(0, 3 * 3600), st.integers(1, 3600), st.floats(0.5, 80)),
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(loads_strategy, st.integers(1, 3000), st.sampled_from([30, 60, 300]))
def test_plans_beside_any_load_never_exceed_the_budget_together(
    shapes: list[tuple[int, int, float]], phones: int, slot: int
) -> None:
    busy = tuple(
        Load(START + timedelta(seconds=at), START + timedelta(seconds=at + length), rate)
        for at, length, rate in shapes
    )
    outcome: Plan | PlanInfeasibleError
    try:
        outcome = plan_rollout(request(site(phones, "12:00-18:00"), busy=busy, slot_s=slot))
    except PlanInfeasibleError as caught:
        outcome = caught
    if isinstance(outcome, PlanInfeasibleError):  # the capacity it names really fits
        assert outcome.needed_capacity is not None
        bigger = request(
            site(phones, "12:00-18:00"), busy=busy, slot_s=slot,
            capacity=outcome.needed_capacity * 1.0001,
        )  # fmt: skip
        assert plan_rollout(bigger).phones == phones
        return
    assert outcome.phones == phones
    assert combined_peak(outcome) <= 70.0 + 1e-6
