"""The audit trail: appends chain, and any change, deletion or insertion is detected."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete, insert, select, update

from fleetkey.clock import FixedClock
from fleetkey.store import audit
from fleetkey.store.schema import AuditRow
from fleetkey.store.store import Store

CLOCK = FixedClock()


@pytest.fixture
def chained(store: Store) -> Store:
    for n in range(1, 6):
        with store.transaction() as session:
            audit.append(
                session, CLOCK, actor="op", action="test", subject=f"s{n}", details={"n": n}
            )
    return store


def verdict(store: Store) -> audit.ChainVerdict:
    with store.transaction() as session:
        return audit.verify(session)


def test_intact_chain_verifies(chained: Store) -> None:
    result = verdict(chained)
    assert result.ok
    assert result.checked == 5
    with chained.transaction() as session:
        events = audit.events(session)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[1].prev_hash == events[0].hash
    assert events[4].details == {"n": 5}


def test_empty_trail_verifies(store: Store) -> None:
    assert verdict(store) == audit.ChainVerdict(True, 0)


def test_changed_event_is_found(chained: Store) -> None:
    with chained.transaction() as session:
        session.execute(update(AuditRow).where(AuditRow.seq == 3).values(actor="mallory"))
    result = verdict(chained)
    assert (result.ok, result.broken_at) == (False, 3)
    assert result.reason == "event 3 was changed after it was written"


def test_deleted_event_is_found(chained: Store) -> None:
    with chained.transaction() as session:
        session.execute(delete(AuditRow).where(AuditRow.seq == 2))
    result = verdict(chained)
    assert (result.ok, result.broken_at) == (False, 2)
    assert "event 2 is missing" in result.reason


def test_deleted_newest_events_are_found(chained: Store) -> None:
    with chained.transaction() as session:
        session.execute(delete(AuditRow).where(AuditRow.seq >= 4))
    result = verdict(chained)
    assert (result.ok, result.broken_at) == (False, 4)
    assert "events after 3 are missing (the head records 5)" in result.reason


def test_rewritten_chain_after_a_deletion_is_found(chained: Store) -> None:
    with chained.transaction() as session:
        row = session.scalars(select(AuditRow).where(AuditRow.seq == 5)).one()
        forged = {c.name: getattr(row, c.name) for c in AuditRow.__table__.columns}
        session.execute(delete(AuditRow).where(AuditRow.seq == 5))
        session.execute(insert(AuditRow).values({**forged, "subject": "forged"}))
    assert verdict(chained).broken_at == 5


def append_then_fail(store: Store) -> None:
    with store.transaction() as session:
        audit.append(session, CLOCK, actor="op", action="x", subject="y")
        raise RuntimeError("the change failed")


def test_rolled_back_change_leaves_no_event(store: Store) -> None:
    with pytest.raises(RuntimeError, match="the change failed"):
        append_then_fail(store)
    assert verdict(store) == audit.ChainVerdict(True, 0)


def test_concurrent_appenders_keep_one_chain(store_url: str) -> None:
    stores = [Store(store_url), Store(store_url)]
    stores[0].upgrade()

    def append_many(store: Store, actor: str) -> None:
        for n in range(40):
            with store.transaction() as session:
                audit.append(session, CLOCK, actor=actor, action="race", subject=str(n))

    threads = [
        threading.Thread(target=append_many, args=(s, f"w{i}")) for i, s in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = verdict(stores[0])
    assert result.ok
    assert result.checked == 80
    for store in stores:
        store.close()
