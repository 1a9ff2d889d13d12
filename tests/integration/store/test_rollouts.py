"""Rollouts in the store on SQLite and PostgreSQL: planning, shared claims, confirmation."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import delete

from fleetkey.clock import FixedClock
from fleetkey.core.license import LicenseType
from fleetkey.core.rollout.windows import Window
from fleetkey.errors import ConflictError, InputError
from fleetkey.ops.rollout import PlanOptions, plan_license, save
from fleetkey.store import (
    audit,
    capacity,
    claims,
    confirmation,
    fetches,
    inventory,
    phone_import,
    registry,
    rollouts,
)
from fleetkey.store.records import FetchRecord, Site
from fleetkey.store.rollouts import RolloutState, TargetState
from fleetkey.store.schema import FetchRow
from fleetkey.store.store import Store
from fleetkey.testing import make_license, record_license

T0 = datetime(2027, 2, 1, 23, 0, tzinfo=UTC)
SITE = "100000000001"
PHONES = 300


def macs(count: int = PHONES) -> list[str]:
    return [f"0004f2{i:06x}" for i in range(count)]


def license_row(store: Store, clock: FixedClock, expires: date, *, post: bool = True) -> int:
    key = make_license(serial=SITE, type=LicenseType.SITE, expires=expires)
    with store.transaction() as session:
        return record_license(session, key, post=post, clock=clock)


@pytest.fixture
def fleet(store: Store) -> tuple[Store, FixedClock, int]:
    """300 phones at one UTC site open 22:00-06:00; a license expiring, and its successor."""
    clock = FixedClock(T0)
    with store.transaction() as session:
        inventory.add_site(
            session, clock, "tester", Site(SITE, "HQ", "UTC", Window.parse("22:00-06:00"))
        )
        rows = "".join(f"{m},{SITE},VVX_500,sip:{m}@127.10.1.1:5060\n" for m in macs())
        phone_import.import_phones(
            session, clock, "tester", f"mac,site,model,contact\n{rows}".encode(), source="t"
        )
    license_row(store, clock, date(2027, 2, 21))
    successor = license_row(store, clock, date(2028, 2, 21))
    return store, clock, successor


def planned(fleet: tuple[Store, FixedClock, int], rate: float = 100.0) -> int:
    store, clock, successor = fleet
    options = PlanOptions(successor, capacity=rate, slot_s=60)
    return save(store, clock, "tester", options, plan_license(store, clock, options))


def test_a_plan_covers_every_phone_of_the_site_before_the_old_expiry_less_two_days(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, clock, successor = fleet
    made = plan_license(store, clock, PlanOptions(successor, capacity=100))
    assert made.phones == PHONES
    assert made.input.deadline == datetime(2027, 2, 19, tzinfo=UTC)
    assert made.input.cost.source.startswith("default profile")  # no fetch records yet
    rollout_id = save(store, clock, "tester", PlanOptions(successor, capacity=100), made)
    with store.transaction() as session:
        progress = rollouts.progress(session, rollout_id)
        assert progress.states == {"pending": PHONES}
        assert progress.next_at == made.waves[0].notify_at(0)
        assert rollouts.get(session, rollout_id).state is RolloutState.PLANNED
        assert audit.events(session)[-1].action == "rollout.plan"


@pytest.mark.parametrize(
    ("change", "kind", "message", "field"),
    [
        ("unposted", ConflictError, "is issued; only a posted license can be rolled out", None),
        ("no-capacity", InputError, "no capacity was given and none has been measured",
         "capacity"),
        ("no-phones", InputError, "has no phones in the inventory", None),
        ("no-deadline", InputError, "succeeds no expiring license: the rollout needs a deadline",
         "deadline"),
    ],
)  # fmt: skip
def test_plans_that_cannot_be_made_say_why(
    fleet: tuple[Store, FixedClock, int],
    change: str,
    kind: type[InputError],
    message: str,
    field: str | None,
) -> None:
    store, clock, successor = fleet
    options = PlanOptions(successor, capacity=100)
    if change == "unposted":
        options = PlanOptions(license_row(store, clock, date(2029, 1, 1), post=False), capacity=1)
    elif change == "no-capacity":
        options = PlanOptions(successor)
    else:
        with store.transaction() as session:
            inventory.add_site(
                session,
                clock,
                "tester",
                Site("100000000002", "Empty", "UTC", Window.parse("22:00-06:00")),
            )
        key = make_license(serial="100000000002", type=LicenseType.SITE, expires=date(2029, 1, 1))
        with store.transaction() as session:
            empty = record_license(session, key, clock=clock)
        deadline = None if change == "no-deadline" else date(2028, 1, 1)
        options = PlanOptions(empty, capacity=100, deadline=deadline)
    with pytest.raises(InputError, match=message) as caught:
        plan_license(store, clock, options)
    assert type(caught.value) is kind  # a license not posted is the store's state: a conflict
    assert caught.value.field == field


def test_the_measured_capacity_is_used_when_none_is_given(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, clock, successor = fleet
    with store.transaction() as session:
        capacity.record(session, clock, "http://127.0.0.1:8080", 420.0, {"p95_ms": 12})
    made = plan_license(store, clock, PlanOptions(successor))
    assert made.input.capacity == 420.0
    assert made.explanation[0].startswith("capacity 420 requests/s, measured ")
    assert "in a license-lapse storm (boots that download no firmware" in made.explanation[0]


def test_a_license_rollout_plans_against_the_license_lapse_storm_and_says_so(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    """Boots after a firmware change cost more; a license rollout's reboots download no
    firmware, so the plan takes the license-lapse measurement even when a firmware-change
    one is newer, and falls back to that one, saying so, when it is the only one."""
    store, clock, successor = fleet
    url = "http://127.0.0.1:8080"
    with store.transaction() as session:
        capacity.record(session, clock, url, 90.0, {"storm": "firmware-change"})
    alone = plan_license(store, clock, PlanOptions(successor))
    assert alone.input.capacity == 90.0
    assert "in a firmware-change storm (boots that download the firmware" in alone.explanation[0]
    with store.transaction() as session:
        capacity.record(session, clock, url, 400.0, {"storm": "license-lapse"})
        capacity.record(session, clock, url, 80.0, {"storm": "firmware-change"})
    made = plan_license(store, clock, PlanOptions(successor))
    assert made.input.capacity == 400.0
    assert "license-lapse storm" in made.explanation[0]
    given = plan_license(store, clock, PlanOptions(successor, capacity=123))
    assert given.explanation[0] == "capacity 123 requests/s, as given"


def test_claims_take_due_phones_once_each_in_time_order(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, _clock, _ = fleet
    rollout_id = planned(fleet, rate=10)  # 35 phones a minute
    with store.transaction() as session:
        first = claims.claim_due(session, rollout_id, T0 + timedelta(minutes=1), 5, "w1")
        again = claims.claim_due(session, rollout_id, T0 + timedelta(minutes=1), 500, "w1")
    assert [c.attempts for c in first] == [1] * 5
    assert [c.notify_at for c in first] == sorted(c.notify_at for c in first)
    assert {c.mac for c in first}.isdisjoint({c.mac for c in again})
    assert all(c.notify_at <= T0 + timedelta(minutes=1) for c in first + again)
    assert first[0].contact == f"sip:{first[0].mac}@127.10.1.1:5060"
    with store.transaction() as session:
        progress = rollouts.progress(session, rollout_id)
    assert len(first) + len(again) == 35
    assert progress.states["notified"] == len(first) + len(again)
    assert progress.states["pending"] == PHONES - len(first) - len(again)


def test_concurrent_workers_never_claim_the_same_phone(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, _, _ = fleet
    rollout_id = planned(fleet, rate=10_000)  # every phone due in the first slot
    later = T0 + timedelta(hours=2)
    taken: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        mine: list[str] = []
        try:
            while True:
                with store.transaction() as session:
                    got = claims.claim_due(session, rollout_id, later, 7, name)
                if not got:
                    break
                mine += [c.mac for c in got]
        except BaseException as exc:  # noqa: BLE001  # reported by the assertion below
            errors.append(exc)
        taken[name] = mine

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    every = [mac for claimed in taken.values() for mac in claimed]
    assert sorted(every) == macs()  # each phone exactly once
    assert sum(1 for claimed in taken.values() if claimed) >= 2  # the work was shared


def booted_over(store: Store, protocols: dict[str, str]) -> None:
    """Each phone's boot: its master configuration fetched over the protocol given."""
    fetches.insert_records(
        store.engine,
        [
            FetchRecord("/000000000000.cfg", protocol, 200, 100, 1.0, T0, mac=mac)
            for mac, protocol in protocols.items()
        ],
    )


def test_the_plan_takes_the_capacity_measured_over_the_protocol_the_phones_boot_over(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    """The newest measurement was taken over any protocol (an HTTP probe's 400 requests/s for
    phones that boot over FTP): the plan takes the measurement over the phones' own protocol,
    by their newest fetch, and says which and why."""
    store, clock, successor = fleet
    with store.transaction() as session:
        capacity.record(session, clock, "ftp://127.0.0.1:2121", 150.0, {"storm": "license-lapse"})
        capacity.record(session, clock, "http://127.0.0.1:8080", 400.0, {"storm": "license-lapse"})
    booted_over(store, dict.fromkeys(macs(), "ftps"))  # FTP over TLS: FTP's measurement
    made = plan_license(store, clock, PlanOptions(successor))
    assert made.input.capacity == 150.0
    assert "against ftp://127.0.0.1:2121 in a license-lapse storm" in made.explanation[0]
    assert made.explanation[0].endswith(", over ftp, as 300 of the 300 phones boot")


def test_phones_booting_over_two_protocols_plan_against_the_lower_capacity(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, clock, successor = fleet
    with store.transaction() as session:
        capacity.record(session, clock, "http://127.0.0.1:8080", 400.0, {"storm": "license-lapse"})
        capacity.record(session, clock, "ftp://127.0.0.1:2121", 150.0, {"storm": "license-lapse"})
        capacity.record(session, clock, "http://127.0.0.1:8080", 90.0, {"storm": "firmware-change"})
    everyone = macs()
    booted_over(store, {m: "http" if i % 3 else "ftp" for i, m in enumerate(everyone)})
    made = plan_license(store, clock, PlanOptions(successor))
    assert made.input.capacity == 150.0  # the lower; the firmware-change 90 is no license's
    assert made.explanation[0].endswith(
        ", over ftp, as 100 of the 300 phones boot (the lowest of the protocols they boot over)"
    )


@pytest.mark.parametrize(
    ("protocol", "why"),
    [
        ("tftp", "over http: none was measured over tftp, which these phones boot over"),
        (None, "over http: no phone of these has fetched yet, so the protocol they boot over is "
         "unknown"),
    ],
)  # fmt: skip
def test_without_a_measurement_over_the_phones_protocol_the_newest_is_used_saying_so(
    fleet: tuple[Store, FixedClock, int], protocol: str | None, why: str
) -> None:
    """TFTP cannot be probed (capacity measure takes http:// and ftp://), and phones that
    never fetched boot over no known protocol: the newest measurement, and the reason."""
    store, clock, successor = fleet
    with store.transaction() as session:
        capacity.record(session, clock, "http://127.0.0.1:8080", 400.0, {"storm": "license-lapse"})
    if protocol is not None:
        booted_over(store, dict.fromkeys(macs(), protocol))
    made = plan_license(store, clock, PlanOptions(successor))
    assert made.input.capacity == 400.0
    assert made.explanation[0].endswith(f"storm (boots that download no firmware, as this "
                                        f"rollout's do), {why}")  # fmt: skip


def fetch(mac: str, at: datetime, digest: str, status: int = 200) -> FetchRecord:
    return FetchRecord(
        path="/000000000000-license.cfg",
        protocol="http",
        status=status,
        bytes=500,
        duration_ms=1.0,
        at=at,
        mac=mac,
        digest=digest,
    )


def test_only_fetches_of_the_successor_after_posting_confirm(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, _clock, successor = fleet
    rollout_id = planned(fleet)
    with store.transaction() as session:
        digest = registry.get(session, successor).digest
        posted = registry.get(session, successor).posted_at
    assert posted is not None
    phones = macs(5)
    fetches.insert_records(
        store.engine,
        [
            fetch(phones[0], posted + timedelta(seconds=5), digest),
            fetch(phones[1], posted + timedelta(seconds=5), digest, status=304),
            fetch(phones[2], posted + timedelta(seconds=5), "0" * 64),  # another license
            fetch(phones[3], posted - timedelta(seconds=5), digest),  # before it was posted
            fetch(phones[4], posted + timedelta(seconds=5), digest, status=503),
        ],
    )
    with store.transaction() as session:
        confirmed = confirmation.confirm_fetched(session, rollout_id, digest, posted, T0)
        states = {m: s for m, _, _, s, _ in rollouts.targets(session, rollout_id)}
        assert confirmation.fetched(session, phones[0], digest, posted)
        assert not confirmation.fetched(session, phones[4], digest, posted)
    assert confirmed == 2
    assert [states[m] for m in phones] == [
        "confirmed",
        "confirmed",
        "pending",
        "pending",
        "pending",
    ]


def test_retries_count_attempts_and_failures_keep_their_reason(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, _, _ = fleet
    rollout_id = planned(fleet, rate=10_000)
    later = T0 + timedelta(hours=1)
    with store.transaction() as session:
        one, two = claims.claim_due(session, rollout_id, later, 2, "w")
        rollouts.retry_or_fail(session, rollout_id, one.mac, "timeout", retry_at=T0)  # first due
        rollouts.retry_or_fail(
            session, rollout_id, two.mac, "check-sync #1: 486 Busy", retry_at=None
        )
        assert confirmation.overdue(session, rollout_id, later) == []
        again = claims.claim_due(session, rollout_id, later, 1, "w")
        assert [(c.mac, c.attempts) for c in again] == [(one.mac, 2)]
        overdue = confirmation.overdue(session, rollout_id, later + timedelta(seconds=1))
        assert overdue == [(one.mac, 2, None)]
        progress = rollouts.progress(session, rollout_id)
    assert progress.failures == [(two.mac, "check-sync #1: 486 Busy")]
    assert progress.states[TargetState.FAILED] == 1


def test_state_moves_follow_the_rules(fleet: tuple[Store, FixedClock, int]) -> None:
    store, clock, _ = fleet
    rollout_id = planned(fleet)
    with store.transaction() as session:
        for state in (
            RolloutState.RUNNING,
            RolloutState.PAUSED,
            RolloutState.RUNNING,
            RolloutState.DONE,
        ):
            assert rollouts.move(session, clock, "t", rollout_id, state).state is state
    with (
        store.transaction() as session,
        pytest.raises(InputError, match="is done; it cannot become running"),
    ):
        rollouts.move(session, clock, "t", rollout_id, RolloutState.RUNNING)


def test_the_pace_is_shared_by_every_executor(fleet: tuple[Store, FixedClock, int]) -> None:
    store, _, _ = fleet
    rollout_id = planned(fleet, rate=10_000)  # every phone due at once
    now = T0 + timedelta(hours=1)
    taken = []
    for worker in ("w1", "w2", "w3"):  # three executors, the same instant
        with store.transaction() as session:
            taken += claims.claim_paced(
                session, rollout_id, now, want=500, rate=50.0, burst_s=0.2, worker=worker
            )
    assert len(taken) == 11  # 0.2 s at 50/s and one, for all of them together
    ticks = [now + timedelta(seconds=0.2 * k) for k in range(1, 6)]
    for tick, worker in zip(ticks, ["w2", "w3", "w1", "w2", "w3"], strict=True):
        with store.transaction() as session:
            taken += claims.claim_paced(
                session, rollout_id, tick, want=500, rate=50.0, burst_s=0.2, worker=worker
            )
    assert len(taken) == 61  # one more second: 50 more, whoever asks
    assert len({c.mac for c in taken}) == 61


@pytest.mark.parametrize("rate", [0.5, 2.0, 3.0, 4.9, 6.0, 13.0])
def test_any_pace_claims_at_its_rate_even_below_one_check_sync_a_burst(
    fleet: tuple[Store, FixedClock, int], rate: float
) -> None:
    store, _, _ = fleet
    rollout_id = planned(fleet, rate=10_000)  # every phone due at once
    start = T0 + timedelta(hours=1)
    taken = []
    for tick in range(101):  # 10 s of executor ticks, 0.1 s apart, each with a 0.2 s burst
        with store.transaction() as session:
            taken += claims.claim_paced(
                session,
                rollout_id,
                start + timedelta(seconds=0.1 * tick),
                want=500,
                rate=rate,
                burst_s=0.2,
                worker="w1",
            )
    # a burst's worth and one at once, then one every 1/rate seconds: no fraction is lost
    assert len(taken) == int(0.2 * rate) + 1 + int(10 * rate)
    assert len({c.mac for c in taken}) == len(taken)


def test_a_rollout_confirms_from_the_per_phone_state_with_no_fetch_records_left(
    fleet: tuple[Store, FixedClock, int],
) -> None:
    store, _clock, successor = fleet
    rollout_id = planned(fleet)
    with store.transaction() as session:
        digest = registry.get(session, successor).digest
        posted = registry.get(session, successor).posted_at
    assert posted is not None
    phones = macs(3)
    fetches.insert_records(
        store.engine,
        [
            fetch(phones[0], posted + timedelta(seconds=5), digest),
            fetch(phones[1], posted + timedelta(seconds=5), digest),
            fetch(phones[1], posted + timedelta(seconds=9), "0" * 64),  # then served another
            fetch(phones[2], posted + timedelta(seconds=5), digest),
            fetch(phones[2], posted + timedelta(seconds=9), digest, status=503),  # refused after
        ],
    )
    with store.transaction() as session:
        session.execute(delete(FetchRow))  # the history aged out; the state stays
        confirmed = confirmation.confirm_fetched(session, rollout_id, digest, posted, T0)
        states = {m: s for m, _, _, s, _ in rollouts.targets(session, rollout_id)}
        assert confirmation.fetched(session, phones[2], digest, posted)
        assert not confirmation.fetched(session, phones[1], digest, posted)
        assert not confirmation.fetched(session, phones[0], digest, posted + timedelta(seconds=6))
    assert confirmed == 2
    assert [states[m] for m in phones] == ["confirmed", "pending", "confirmed"]
