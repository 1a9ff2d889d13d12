"""How rollouts end and start again, on SQLite and PostgreSQL: done, partial or failed; failed
phones re-queued; unsent claims given back; every failure listed; plans that share the server;
`--now` re-timing; what a rollout waits for."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from fleetkey.clock import FixedClock
from fleetkey.core.license import LicenseType
from fleetkey.core.rollout.windows import Window
from fleetkey.errors import ConflictError, InputError, NotFoundError
from fleetkey.ops.rollout import PlanOptions, plan_license, plan_now, save
from fleetkey.store import audit, claims, fetches, inventory, load, phone_import, rollouts, schedule
from fleetkey.store.records import FetchRecord, Site
from fleetkey.store.rollouts import RolloutState
from fleetkey.store.schema import RolloutTargetRow, SiteRow
from fleetkey.store.store import Store
from fleetkey.testing import make_license, record_license

T0 = datetime(2027, 2, 1, 23, 0, tzinfo=UTC)  # inside the site's 22:00-06:00 UTC window
SITE = "100000000001"
PHONES = 60


def macs(count: int = PHONES) -> list[str]:
    return [f"0004f2{i:06x}" for i in range(count)]


@pytest.fixture
def fleet(store: Store) -> tuple[Store, FixedClock, int]:
    """60 phones at one UTC site open 22:00-06:00; a license expiring, and its successor."""
    clock = FixedClock(T0)
    with store.transaction() as session:
        inventory.add_site(
            session, clock, "t", Site(SITE, "HQ", "UTC", Window.parse("22:00-06:00"))
        )
        rows = "".join(f"{m},{SITE},VVX_500,sip:{m}@127.10.1.1:5060\n" for m in macs())
        phone_import.import_phones(
            session, clock, "t", f"mac,site,model,contact\n{rows}".encode(), source="t"
        )
    ids = []
    for expires in (date(2027, 2, 21), date(2028, 2, 21)):
        key = make_license(serial=SITE, type=LicenseType.SITE, expires=expires)
        with store.transaction() as session:
            ids.append(record_license(session, key, clock=clock))
    return store, clock, ids[1]


def planned(fleet: tuple[Store, FixedClock, int], capacity: float = 100.0) -> int:
    store, clock, successor = fleet
    options = PlanOptions(successor, capacity=capacity, slot_s=60)
    return save(store, clock, "t", options, plan_license(store, clock, options))


def set_states(store: Store, rollout_id: int, states: dict[str, str]) -> None:
    """Targets to given states (what a run would have left), the rollout running."""
    with store.transaction() as session:
        for mac, state in states.items():
            session.execute(
                update(RolloutTargetRow)
                .where(RolloutTargetRow.rollout_id == rollout_id, RolloutTargetRow.mac == mac)
                .values(state=state, attempts=3, reason=f"check-sync #3: {mac} said no")
            )
        rollouts.move(session, FixedClock(T0), "t", rollout_id, RolloutState.RUNNING)


def audit_count(store: Store) -> int:
    with store.transaction() as session:
        return len(audit.events(session))


@pytest.mark.parametrize(
    ("failed", "outcome"),
    [(0, RolloutState.DONE), (7, RolloutState.PARTIAL), (PHONES, RolloutState.FAILED)],
)
def test_a_rollout_with_no_phone_open_ends_done_partial_or_failed(
    fleet: tuple[Store, FixedClock, int], failed: int, outcome: RolloutState
) -> None:
    store, clock, _ = fleet
    rollout_id = planned(fleet)
    every = macs()
    set_states(
        store, rollout_id, {m: "failed" if i < failed else "confirmed" for i, m in enumerate(every)}
    )
    with store.transaction() as session:
        assert rollouts.finish(session, clock, "t", rollout_id).state is outcome
        event = audit.events(session)[-1]
    assert event.action == f"rollout.{outcome}"
    assert event.details == {"confirmed": PHONES - failed, "failed": failed}


def test_every_failure_is_listed_not_only_the_first_twenty(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, _, _ = fleet
    rollout_id = planned(fleet)
    set_states(store, rollout_id, dict.fromkeys(macs(45), "failed"))
    with store.transaction() as session:
        every = rollouts.progress(session, rollout_id)
        few = rollouts.progress(session, rollout_id, failures=3)
        none = rollouts.progress(session, rollout_id, failures=0)
        shown = rollouts.rollout_json(rollouts.get(session, rollout_id), every)
    assert [mac for mac, _ in every.failures] == macs(45)
    assert every.failures[0] == ("0004f2000000", "check-sync #3: 0004f2000000 said no")
    assert [mac for mac, _ in few.failures] == macs(3)
    assert none.failures == []
    assert len(shown["failures"]) == 45


def test_failed_phones_are_requeued_at_the_pace_with_attempts_counted_afresh(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, clock, _ = fleet
    rollout_id = planned(fleet)
    failed = macs(10)
    set_states(store, rollout_id, {m: "failed" if m in failed else "confirmed" for m in macs()})
    with store.transaction() as session:
        rollouts.finish(session, clock, "t", rollout_id)
    later = FixedClock(T0 + timedelta(hours=1))
    with store.transaction() as session:
        assert schedule.requeue_failed(session, later, "alice@cli", rollout_id) == 10
    with store.transaction() as session:
        rollout = rollouts.get(session, rollout_id)
        rows = session.execute(
            select(RolloutTargetRow.mac, RolloutTargetRow.state, RolloutTargetRow.attempts,
                   RolloutTargetRow.notify_at, RolloutTargetRow.reason)
            .where(RolloutTargetRow.mac.in_(failed))
            .order_by(RolloutTargetRow.notify_at)
        ).all()  # fmt: skip
        event = audit.events(session)[-1]
        again = claims.claim_due(session, rollout_id, later.now() + timedelta(hours=1), 50, "w")
    assert rollout.state is RolloutState.PAUSED
    assert [(m, s, a, r) for m, s, a, _, r in rows] == [(m, "pending", 0, None) for m in failed]
    step = 1 / rollout.notifies_per_second
    times = [at.replace(tzinfo=UTC) for *_, at, _ in rows]
    assert times[0] == later.now()
    assert times[-1] == later.now() + timedelta(seconds=9 * step)  # at the rollout's pace
    assert (event.action, event.actor) == ("rollout.retry", "alice@cli")
    assert event.details["phones"] == 10
    assert event.details["from"] == "partial"
    assert event.details["to"] == "paused"
    assert sum(event.details["reasons"].values()) == 10
    assert sorted(c.mac for c in again) == failed
    assert {c.attempts for c in again} == {1}


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        ("none-failed", InputError, "rollout 1 has no failed phones to retry"),
        ("cancelled", ConflictError, "rollout 1 is cancelled; it has no failed phones to retry"),
        ("planned", ConflictError, "rollout 1 is planned; it has no failed phones to retry"),
        ("missing", NotFoundError, "no rollout 9"),
    ],
)
def test_a_retry_with_nothing_to_retry_is_refused_and_changes_nothing(
    fleet: tuple[Store, FixedClock, int], setup: str, error: type[Exception], message: str
) -> None:
    store, clock, _ = fleet
    rollout_id = planned(fleet)
    if setup == "none-failed":
        set_states(store, rollout_id, dict.fromkeys(macs(5), "confirmed"))
    elif setup == "cancelled":
        set_states(store, rollout_id, dict.fromkeys(macs(5), "failed"))
        with store.transaction() as session:
            rollouts.move(session, clock, "t", rollout_id, RolloutState.CANCELLED)
    with store.transaction() as session:
        before = (rollouts.get(session, rollout_id), rollouts.progress(session, rollout_id))
    events = audit_count(store)
    with store.transaction() as session, pytest.raises(error, match=message):
        schedule.requeue_failed(session, clock, "t", 9 if setup == "missing" else rollout_id)
    with store.transaction() as session:
        after = (rollouts.get(session, rollout_id), rollouts.progress(session, rollout_id))
    assert after == before
    assert audit_count(store) == events


def test_claims_given_back_are_pending_again_with_their_attempt_uncounted(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, _, _ = fleet
    rollout_id = planned(fleet, capacity=10_000)
    with store.transaction() as session:
        taken = claims.claim_due(session, rollout_id, T0 + timedelta(hours=1), 4, "w")
        claims.release(session, rollout_id, [c.mac for c in taken[:3]])
        states = {m: (s, a) for m, _, _, s, a in rollouts.targets(session, rollout_id)}
    assert [states[c.mac] for c in taken] == [("pending", 0)] * 3 + [("notified", 1)]


def test_a_second_plan_of_the_same_license_sees_the_first_and_plans_around_it(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, clock, successor = fleet
    options = PlanOptions(successor, capacity=10, slot_s=60)  # 35 check-syncs a slot
    first = plan_license(store, clock, options)
    first_id = save(store, clock, "t", options, first)
    second = plan_license(store, clock, options)
    with store.transaction() as session:
        seen = load.planned_loads(session, T0, T0 + timedelta(days=1))
    assert {ld.rollout for ld in seen} == {first_id}
    assert sum(ld.rate * 60 / 12 for ld in seen) == pytest.approx(PHONES)  # every phone once
    together: Counter[datetime] = Counter()
    for made in (first, second):
        for wave in made.waves:
            together[wave.start] += len(wave.macs)
    assert max(together.values()) <= 35  # never more than one slot's worth at once
    assert min(w.start for w in second.waves) >= max(w.start for w in first.waves)
    assert any(f"rollout {first_id} already plans up to" in line for line in second.explanation)
    with store.transaction() as session:
        rollouts.move(session, clock, "t", first_id, RolloutState.CANCELLED)
    assert plan_license(store, clock, options).waves == first.waves  # cancelled: room again


def test_a_slot_longer_than_an_hour_still_in_progress_counts_whole(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    """Two-hour slots: 90 minutes into one, its phones are still load a new plan must leave
    room for (they were read back only one hour, and the new plan overcommitted)."""
    store, clock, successor = fleet
    options = PlanOptions(successor, capacity=100, slot_s=7200)
    rollout_id = save(store, clock, "t", options, plan_license(store, clock, options))
    slot = datetime(2027, 2, 2, 0, 0, tzinfo=UTC)  # midnight: on every 2-hour grid
    with store.transaction() as session:
        session.execute(
            update(RolloutTargetRow)
            .where(RolloutTargetRow.rollout_id == rollout_id)
            .values(notify_at=slot + timedelta(minutes=1))
        )
        requests = rollouts.get(session, rollout_id).boot_requests
        seen = load.planned_loads(session, slot + timedelta(minutes=90), slot + timedelta(days=1))
    assert [(ld.start, ld.end, ld.rollout) for ld in seen] == [
        (slot, slot + timedelta(hours=2), rollout_id)
    ]
    assert seen[0].rate == pytest.approx(PHONES * requests / 7200)


def test_now_replans_pending_phones_from_now_ignoring_the_window_and_is_audited(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, clock, _ = fleet
    with store.transaction() as session:  # closed at T0 (23:00 UTC): opens 03:00-05:00
        session.execute(update(SiteRow).values(window_start="03:00", window_end="05:00"))
    rollout_id = planned(fleet)
    with store.transaction() as session:
        rollout = rollouts.get(session, rollout_id)
        wait = schedule.waiting(session, rollout, rollouts.progress(session, rollout_id), T0)
    assert wait is not None
    assert wait.text() == (
        "waiting until 03:00 UTC, in 4 h: site 100000000001's window 03:00-05:00 opens then"
    )
    made = plan_now(store, clock, "alice@cli", rollout_id)
    assert made is not None
    with store.transaction() as session:
        times = sorted(
            t.replace(tzinfo=UTC) for t in session.scalars(select(RolloutTargetRow.notify_at))
        )
        event = audit.events(session)[-1]
        rollout = rollouts.get(session, rollout_id)
        after = schedule.waiting(session, rollout, rollouts.progress(session, rollout_id), T0)
    assert T0 < times[0] < T0 + timedelta(seconds=1)  # this slot (T0 is on the grid), not 03:00
    assert times[-1] < T0 + timedelta(minutes=1)  # 60 phones fit one 60-s slot at 100 req/s
    assert (event.action, event.actor) == ("rollout.now", "alice@cli")
    assert event.details["phones"] == PHONES
    assert rollout.windows_ignored_at == T0
    assert after is not None
    assert not after.closed
    assert after.text() == "next check-sync at 23:00 UTC, in 1 s (site 100000000001)"


def test_windows_stay_overridden_while_running_and_come_back_with_a_pause(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, clock, _ = fleet
    rollout_id = planned(fleet)
    with store.transaction() as session:
        rollouts.move(session, clock, "t", rollout_id, RolloutState.RUNNING)
    plan_now(store, clock, "t", rollout_id)  # a running rollout too: its executors read it
    with store.transaction() as session:
        running = rollouts.get(session, rollout_id).windows_ignored_at
        paused = rollouts.move(session, clock, "t", rollout_id, RolloutState.PAUSED)
    assert running == T0
    assert paused.windows_ignored_at is None


def test_a_rollout_that_ended_with_its_windows_overridden_keeps_when_until_a_retry(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, clock, _ = fleet
    rollout_id = planned(fleet)
    plan_now(store, clock, "t", rollout_id)
    with store.transaction() as session:
        rollouts.move(session, clock, "t", rollout_id, RolloutState.RUNNING)
    failed = macs(10)
    set_states(store, rollout_id, {m: "failed" if m in failed else "confirmed" for m in macs()})
    with store.transaction() as session:
        ended = rollouts.finish(session, clock, "t", rollout_id)
    assert (ended.state, ended.windows_ignored_at) == (RolloutState.PARTIAL, T0)
    with store.transaction() as session:
        schedule.requeue_failed(session, clock, "t", rollout_id)
        retried = rollouts.get(session, rollout_id)
    assert (retried.state, retried.windows_ignored_at) == (RolloutState.PAUSED, None)


@pytest.mark.parametrize("state", [RolloutState.CANCELLED, RolloutState.FAILED])
def test_now_refuses_a_rollout_that_no_longer_runs_and_changes_nothing(
    fleet: tuple[Store, FixedClock, int], state: RolloutState
) -> None:
    store, clock, _ = fleet
    rollout_id = planned(fleet)
    with store.transaction() as session:
        if state is RolloutState.FAILED:
            rollouts.move(session, clock, "t", rollout_id, RolloutState.RUNNING)
        rollouts.move(session, clock, "t", rollout_id, state)
        before = rollouts.targets(session, rollout_id)
    events = audit_count(store)
    message = f"rollout 1 is {state}; --now runs a planned, paused or running rollout"
    with pytest.raises(ConflictError, match=message):
        plan_now(store, clock, "t", rollout_id)
    with store.transaction() as session:
        assert rollouts.targets(session, rollout_id) == before
        assert rollouts.get(session, rollout_id).windows_ignored_at is None
    assert audit_count(store) == events


def test_the_measured_rate_and_the_schedule_are_counted_per_slot(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, _, _ = fleet
    rollout_id = planned(fleet, capacity=10)
    fetches.insert_records(
        store.engine,
        [
            FetchRecord(path="/x.cfg", protocol="http", status=200, bytes=1, duration_ms=1.0,
                        at=T0 + timedelta(seconds=second), mac="0004f2000001")
            for second in [0, 1, 1, 59, 60, 125]
        ],
    )  # fmt: skip
    with store.transaction() as session:
        rate = load.measured_rate(session, T0, T0 + timedelta(minutes=5), 60)
        schedule_ = load.scheduled(session, rollout_id)
        span = load.run_span(session, rollout_id)
    assert rate == [
        (T0, 4 / 60),
        (T0 + timedelta(minutes=1), 1 / 60),
        (T0 + timedelta(minutes=2), 1 / 60),
    ]
    assert [count * 60 / 12 for _, count in schedule_] == [35, 25]  # 35 a slot at 10 req/s
    assert schedule_[0][0] == T0  # T0 is on the slot grid
    assert span is None  # nothing sent yet
