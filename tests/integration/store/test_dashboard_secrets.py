"""The dashboard's session secret and sign-outs in the store, on SQLite and PostgreSQL: servers
that make the secret at the same moment end up with the same one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from fleetkey.clock import FixedClock
from fleetkey.store import dashboard
from fleetkey.store.schema import DashboardSecretRow, DashboardSignOutRow
from fleetkey.store.store import Store

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SERVERS = 6


def test_servers_making_the_secret_at_once_all_get_the_one_stored(store: Store) -> None:
    stores = [Store(store.url) for _ in range(SERVERS)]  # each server its own connections
    start = threading.Barrier(SERVERS)
    found: list[bytes] = []
    failed: list[BaseException] = []

    def serve(own: Store) -> None:
        try:
            start.wait()
            with own.transaction() as session:
                found.append(dashboard.secret(session, FixedClock(NOW)))
        except Exception as exc:  # noqa: BLE001  # the test names it; a thread would hide it
            failed.append(exc)

    threads = [threading.Thread(target=serve, args=(own,)) for own in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for own in stores:
        own.close()
    assert failed == []
    assert len(found) == SERVERS
    assert len(set(found)) == 1
    assert len(found[0]) == dashboard.SECRET_BYTES
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(DashboardSecretRow)) == 1
        assert dashboard.secret(session, FixedClock(NOW + timedelta(days=1))) == found[0]


def test_a_sign_out_holds_until_its_session_would_have_expired(store: Store) -> None:
    clock = FixedClock(NOW)
    with store.transaction() as session:
        dashboard.sign_out(session, clock, "early", NOW + timedelta(hours=1))
        dashboard.sign_out(session, clock, "late", NOW + timedelta(hours=8))
        dashboard.sign_out(session, clock, "late", NOW + timedelta(hours=8))  # twice: no error
    with store.transaction() as session:
        assert dashboard.signed_out(session, "early")
        assert dashboard.signed_out(session, "late")
        assert not dashboard.signed_out(session, "never")
    clock.advance(timedelta(hours=2))
    with store.transaction() as session:
        dashboard.sign_out(session, clock, "third", NOW + timedelta(hours=9))
    with store.transaction() as session:  # the expired one is forgotten, the others kept
        kept = session.scalars(select(DashboardSignOutRow.session_id)).all()
    assert sorted(kept) == ["late", "third"]
