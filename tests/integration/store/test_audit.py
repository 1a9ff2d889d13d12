"""The audit trail: appends chain, and any change, deletion or insertion is detected: of events,
past an anchor kept outside the database, and of the licenses, sites and phones rows."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from fleetkey.clock import FixedClock
from fleetkey.core.codec import serialize_keys
from fleetkey.core.rollout.windows import Window
from fleetkey.errors import InputError
from fleetkey.store import audit, inventory, migrate, phone_import, registry, rowstate, sightings
from fleetkey.store.records import Site
from fleetkey.store.schema import (
    AuditHeadRow,
    AuditRow,
    AuditRowStateRow,
    LicenseRow,
    PhoneRow,
    SiteRow,
)
from fleetkey.store.sightings import NewPhone, Sighting
from fleetkey.store.store import Store
from fleetkey.testing import make_license, record_license

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


def head_back_to(store: Store, seq: int) -> None:
    """What an attacker with the database does after deleting events: the head agrees again."""
    with store.transaction() as session:
        digest = session.scalar(select(AuditRow.hash).where(AuditRow.seq == seq)) or audit.GENESIS
        session.execute(update(AuditHeadRow).values(seq=seq, hash=digest))


def anchored(store: Store) -> audit.Anchor:
    with store.transaction() as session:
        return audit.anchor(session, CLOCK)


class TestAnchor:
    def test_a_deleted_tail_with_the_head_moved_back_fails_against_the_anchor(
        self, chained: Store
    ) -> None:
        anchor = anchored(chained)
        with chained.transaction() as session:
            session.execute(delete(AuditRow).where(AuditRow.seq >= 4))
        head_back_to(chained, 3)
        assert verdict(chained).ok  # the database alone cannot tell: that is what anchors are for
        with chained.transaction() as session:
            result = audit.verify(session, anchor)
        assert (result.ok, result.broken_at) == (False, 4)
        assert result.reason == (
            "the chain ends at event 3 but the anchor records event 5: events were removed "
            "(and the head row rewritten)"
        )

    def test_a_wholesale_delete_with_a_reset_head_fails_against_the_anchor(
        self, chained: Store
    ) -> None:
        anchor = anchored(chained)
        with chained.transaction() as session:
            session.execute(delete(AuditRow))
        head_back_to(chained, 0)
        with chained.transaction() as session:
            result = audit.verify(session, anchor)
        assert (result.ok, result.checked, result.broken_at) == (False, 0, 1)
        assert "the chain ends at event 0 but the anchor records event 5" in result.reason

    def test_a_chain_rewritten_from_an_old_event_fails_against_the_anchor(
        self, chained: Store
    ) -> None:
        anchor = anchored(chained)
        with chained.transaction() as session:  # event 2 forged, every later hash recomputed
            previous = session.scalar(select(AuditRow.hash).where(AuditRow.seq == 1))
            for row in session.scalars(select(AuditRow).where(AuditRow.seq >= 2).order_by("seq")):
                row.actor = "mallory" if row.seq == 2 else row.actor
                row.prev_hash = previous
                row.hash = previous = audit.event_hash(
                    previous, row.seq, row.at.replace(tzinfo=UTC).isoformat(timespec="microseconds")
                    if row.at.tzinfo is None else row.at.astimezone(UTC).isoformat(
                        timespec="microseconds"),
                    row.actor, row.action, row.subject, row.details,
                )  # fmt: skip
            session.execute(update(AuditHeadRow).values(hash=previous))
        assert verdict(chained).ok
        with chained.transaction() as session:
            result = audit.verify(session, anchor)
        assert (result.ok, result.broken_at) == (False, 5)
        assert result.reason.startswith("event 5 is not the one anchored")

    def test_a_chain_that_grew_past_its_anchor_verifies(self, chained: Store) -> None:
        anchor = anchored(chained)
        with chained.transaction() as session:
            audit.append(session, CLOCK, actor="op", action="later", subject="s6")
            assert audit.verify(session, anchor) == audit.ChainVerdict(True, 6)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"seq": 5, "hash": "' + "a" * 64 + '", "at": null}', audit.Anchor(5, "a" * 64)),
        (
            "Dec 02 cron: fleetkey audit anchor: seq=4 hash=" + "b" * 64 + "\n"
            "Dec 03 cron: fleetkey audit anchor: seq=9 hash=" + "c" * 64 + " at=2026-12-03\n",
            audit.Anchor(9, "c" * 64),
        ),
    ],
    ids=["json", "log lines: the last"],
)
def test_an_anchor_reads_from_its_file_or_its_log_line(text: str, expected: audit.Anchor) -> None:
    assert audit.Anchor.parse(text, "a.json") == expected
    assert audit.Anchor.parse(expected.line(), "log") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{}",
        '{"seq": -1, "hash": "' + "a" * 64 + '"}',
        '{"seq": true, "hash": "' + "a" * 64 + '"}',
        '{"seq": 1, "hash": "x"}',
        "[]",
    ],
)
def test_a_file_without_an_anchor_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError, match=r"a\.json: "):
        audit.Anchor.parse(text, "a.json")


HQ = Site("100000000001", "HQ", "UTC", Window.parse("22:00-05:00"))
PHONES = b"mac,site,model\n0004f2000001,100000000001,VVX_500\n0004f2000002,100000000001,VVX_400\n"


@pytest.fixture
def inventory_store(store: Store) -> Store:
    """A site, two phones and a posted license, each changed through its audited function."""
    with store.transaction() as session:
        inventory.add_site(session, CLOCK, "op", HQ)
        phone_import.import_phones(session, CLOCK, "op", PHONES, source="p.csv")
        record_license(session, make_license(serial="0004f2000001"), clock=CLOCK)
    return store


def tampered(store: Store, *statements: Any) -> audit.ChainVerdict:
    with store.transaction() as session:
        for statement in statements:
            session.execute(statement)
    return verdict(store)


class TestRowsTheChainCovers:
    def test_rows_changed_through_the_store_verify(self, inventory_store: Store) -> None:
        result = verdict(inventory_store)
        assert result == audit.ChainVerdict(True, 4, rows=4)  # 1 site, 2 phones, 1 license
        with inventory_store.transaction() as session:
            events = audit.events(session)
        assert [e.details.get(audit.ROWS, {}).get("changed") for e in events] == [1, 2, 1, 1]

    def test_a_phone_edited_in_the_database_is_found(self, inventory_store: Store) -> None:
        result = tampered(
            inventory_store,
            update(PhoneRow).where(PhoneRow.mac == "0004f2000002").values(sip_contact="sip:x@y"),
        )
        assert (result.ok, result.broken_at) == (False, 2)
        assert result.reason == (
            "phone 0004f2000002 differs from its state audited by event 2: changed since"
        )

    def test_a_license_state_edited_in_the_database_is_found(self, inventory_store: Store) -> None:
        result = tampered(inventory_store, update(LicenseRow).values(state="issued"))
        assert result.reason == "license 1 differs from its state audited by event 4: changed since"

    def test_a_row_added_in_the_database_is_found(self, inventory_store: Store) -> None:
        result = tampered(
            inventory_store,
            insert(SiteRow).values(
                serial="100000000002", name="B", timezone="UTC", window_start="01:00",
                window_end="02:00", created_at=datetime(2026, 1, 1, tzinfo=UTC),
            ),
        )  # fmt: skip
        assert (result.ok, result.broken_at) == (False, None)
        assert result.reason == (
            "site 100000000002 was never audited: added outside fleetkey's store functions"
        )

    def test_a_row_deleted_in_the_database_is_found(self, inventory_store: Store) -> None:
        result = tampered(inventory_store, delete(LicenseRow))
        assert result.reason == "license 1 (audited by event 4) was deleted outside fleetkey"

    def test_a_row_edited_with_its_audited_state_is_found(self, inventory_store: Store) -> None:
        with inventory_store.transaction() as session:
            values = session.execute(
                select(*(getattr(SiteRow, c) for c in rowstate.COVERED["sites"]))
            ).one()
        forged = rowstate.row_digest("sites", (values[0], "Mallory's", *values[2:]))
        result = tampered(
            inventory_store,
            update(SiteRow).values(name="Mallory's"),
            update(AuditRowStateRow)
            .where(AuditRowStateRow.table_name == "sites")
            .values(digest=forged),
        )
        assert result.reason == (
            "the audited row states (table audit_rows) are not those the chain records: "
            "they were changed outside fleetkey"
        )

    def test_what_servers_write_unaudited_is_not_covered(self, inventory_store: Store) -> None:
        with inventory_store.transaction() as session:
            sightings.record(
                session,
                [Sighting("0004f2000001", datetime(2026, 5, 1, tzinfo=UTC), "10.0.0.7",
                          "FileTransport PolycomVVX-VVX_500-UA/6.4.0", firmware="6.4.0")],
            )  # fmt: skip
            sightings.register(
                session, CLOCK, "server", [NewPhone("0004f2000003", HQ.serial, "VVX_600", None)]
            )
        assert verdict(inventory_store) == audit.ChainVerdict(True, 5, rows=5)

    def test_bulk_records_reimports_and_successions_verify(self, inventory_store: Store) -> None:
        keys = [make_license(serial=f"0004f2{i:06x}") for i in range(1, 1500)]
        entries = [(k, serialize_keys([k]), f"{k.serial}-license.cfg") for k in keys]
        changed = PHONES.replace(b"VVX_400", b"VVX_450")
        with inventory_store.transaction() as session:
            registry.record_many(session, CLOCK, "op", entries, signing_key="k", post=True)
            phone_import.import_phones(session, CLOCK, "op", PHONES, source="p.csv")  # unchanged
            phone_import.import_phones(session, CLOCK, "op", changed, source="p.csv")
            registry.revoke(session, CLOCK, "op", 1)
            events = audit.events(session, limit=4)
        assert [e.details.get(audit.ROWS, {}).get("changed") for e in events] == [
            1500, None, 1, 1,  # 1,499 new keys and the one they supersede; one phone; one key
        ]  # fmt: skip
        assert verdict(inventory_store) == audit.ChainVerdict(True, 8, rows=1503)


def test_rows_from_before_0007_are_the_baseline(store_url: str) -> None:
    store = Store(store_url)
    migrate.upgrade(store.engine, "0006")
    created = datetime(2026, 1, 1, tzinfo=UTC)
    with store.engine.begin() as connection:  # rows written before 0007, with no entries
        connection.execute(
            insert(SiteRow.__table__).values(
                serial=HQ.serial, name="HQ", timezone="UTC", window_start="22:00",
                window_end="05:00", created_at=created,
            )
        )  # fmt: skip
        connection.execute(
            insert(PhoneRow.__table__),
            [
                {"mac": f"0004f200000{n}", "site_serial": HQ.serial, "model": "VVX",
                 "created_at": created}
                for n in (1, 2)
            ],
        )  # fmt: skip
    store.upgrade()
    with store.transaction() as session:
        baseline = audit.events(session)[-1]
    assert (baseline.action, baseline.actor) == ("audit.baseline", "fleetkey db upgrade")
    assert baseline.details["phones"] == 2
    assert baseline.details[audit.ROWS]["changed"] == 3
    assert verdict(store) == audit.ChainVerdict(True, 1, rows=3)
    assert not tampered(store, update(PhoneRow).values(model="X")).ok
    migrate.downgrade(store.engine, "0006")
    store.close()


def test_concurrent_inventory_changes_keep_one_audited_state(store_url: str) -> None:
    stores = [Store(store_url), Store(store_url)]
    stores[0].upgrade()

    def add_sites(store: Store, first: int) -> None:
        for n in range(first, first + 15):
            with store.transaction() as session:
                site = Site(f"1000000{n:05d}", f"site {n}", "UTC", Window.parse("01:00-02:00"))
                inventory.add_site(session, CLOCK, "op", site)

    threads = [threading.Thread(target=add_sites, args=(s, 100 * i)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert verdict(stores[0]) == audit.ChainVerdict(True, 30, rows=30)
    for store in stores:
        store.close()
