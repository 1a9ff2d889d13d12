"""Inventory upkeep on both backends: sites named by serial or name, updated and removed,
phones removed, and re-imports that change only the columns they have (issue 24, item 4).

After every change the audit chain still vouches for every row (``audit.verify``)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from fleetkey.clock import FixedClock
from fleetkey.core.codec import serialize_keys
from fleetkey.core.license import LicenseType
from fleetkey.core.rollout.windows import Window
from fleetkey.errors import ConflictError, InputError, NotFoundError, RowError
from fleetkey.store import audit, inventory, phone_import, posting, registry
from fleetkey.store.phone_import import HIDDEN, ColumnChange, PhoneDiff, RowChange
from fleetkey.store.records import Site
from fleetkey.store.schema import AuditRow, PhoneRow, SiteRow
from fleetkey.store.store import Store
from fleetkey.testing import make_license, trusted_keys_for

CLOCK = FixedClock()
NIGHT = Window.parse("22:00-05:00")
BERLIN = Site("100000000001", "Berlin", "Europe/Berlin", NIGHT, "ops@example.test")
NEW_YORK = Site("100000000002", "New York", "America/New_York", Window.parse("01:00-04:00"))
FULL = (
    "mac,site,model,firmware,user,password,contact\n"
    "0004f2000001,100000000001,VVX_500,5.9.7,dev1,s3cret,sip:1001@pbx.test\n"
    "0004f2000002,Berlin,VVX_400,5.9.6,,,sip:1002@pbx.test\n"
    "0004f2000003,new york,VVX_500,,,,\n"
)


@pytest.fixture
def fleet(store: Store) -> Store:
    """Berlin with two phones, New York with one, imported with every column."""
    with store.transaction() as session:
        inventory.add_site(session, CLOCK, "tester", BERLIN)
        inventory.add_site(session, CLOCK, "tester", NEW_YORK)
        phone_import.import_phones(session, CLOCK, "tester", FULL.encode(), source="full.csv")
    return store


def state(store: Store) -> tuple[object, ...]:
    """Everything a refused change must leave as it was: sites, phones, audit events."""
    with store.transaction() as session:
        sites = [
            (r.serial, r.name, r.timezone, r.window_start, r.window_end, r.contact)
            for r in session.scalars(select(SiteRow).order_by(SiteRow.serial))
        ]
        phones = [
            (r.mac, r.site_serial, r.model, r.firmware, r.prov_user, r.password_hash, r.sip_contact)
            for r in session.scalars(select(PhoneRow).order_by(PhoneRow.mac))
        ]
        events = session.scalar(select(func.count()).select_from(AuditRow))
    return sites, phones, events


def verified(store: Store) -> None:
    with store.transaction() as session:
        verdict = audit.verify(session)
    assert verdict.ok, verdict.reason


def last_event(store: Store) -> tuple[str, str, dict[str, object]]:
    with store.transaction() as session:
        event = audit.events(session, limit=1)[0]
    return event.action, event.subject, event.details


def reimport(store: Store, text: str, **options: bool) -> phone_import.ImportResult:
    with store.transaction() as session:
        return phone_import.import_phones(
            session, CLOCK, "tester", text.encode(), source="again.csv", **options
        )


class TestSiteNames:
    @pytest.mark.parametrize("ref", ["100000000002", " 100000000002 ", "New York", "NEW YORK"])
    def test_a_site_is_found_by_serial_or_name(self, fleet: Store, ref: str) -> None:
        with fleet.transaction() as session:
            assert inventory.site(session, ref) == NEW_YORK
            assert [p.mac for p in inventory.phones(session, ref)] == ["0004f2000003"]

    @pytest.mark.parametrize(
        ("ref", "error", "message"),
        [
            (
                "Tokio",
                NotFoundError,
                "site 'Tokio' does not exist: no site has that serial or name",
            ),
            ("100000000009", NotFoundError, "site 100000000009 does not exist"),
            ("  ", InputError, "a site is named by its serial (12 hex digits) or its name"),
        ],
    )
    def test_an_unknown_site_is_a_clear_error(
        self, fleet: Store, ref: str, error: type[Exception], message: str
    ) -> None:
        with pytest.raises(error) as caught, fleet.transaction() as session:
            inventory.site(session, ref)
        assert str(caught.value) == message

    def test_a_name_two_sites_share_is_ambiguous_never_guessed(self, fleet: Store) -> None:
        with fleet.transaction() as session:  # as a database from before names were unique
            session.get_one(SiteRow, "100000000002").name = "berlin"
        with pytest.raises(InputError) as caught, fleet.transaction() as session:
            inventory.site(session, "Berlin")
        assert str(caught.value) == (
            "site name 'Berlin' is ambiguous: sites 100000000001, 100000000002 are all named so"
        )
        assert caught.value.hint == "name the site by its serial"

    def test_a_taken_name_is_refused_case_insensitively(self, fleet: Store) -> None:
        before = state(fleet)
        taken = Site("100000000003", "NEW york", "UTC", NIGHT)
        with pytest.raises(ConflictError) as caught, fleet.transaction() as session:
            inventory.add_site(session, CLOCK, "tester", taken)
        assert str(caught.value) == "site name 'NEW york' is taken by site 100000000002"
        assert state(fleet) == before


class TestSiteUpdate:
    def test_changes_are_made_and_audited_old_and_new(self, fleet: Store) -> None:
        changes = inventory.SiteChanges(
            name="Berlin HQ", window=Window.parse("23:00-04:00"), contact=""
        )
        with fleet.transaction() as session:
            done = inventory.update_site(session, CLOCK, "tester", "berlin", changes)
        assert done.site == Site(
            "100000000001", "Berlin HQ", "Europe/Berlin", Window.parse("23:00-04:00"), None
        )
        assert done.changed == {
            "name": ("Berlin", "Berlin HQ"),
            "window_start": ("22:00", "23:00"),
            "window_end": ("05:00", "04:00"),
            "contact": ("ops@example.test", None),
        }
        action, subject, details = last_event(fleet)
        assert (action, subject) == ("site.update", "100000000001")
        assert details["name"] == {"old": "Berlin", "new": "Berlin HQ"}
        assert details["contact"] == {"old": "ops@example.test", "new": None}
        verified(fleet)

    def test_the_same_values_change_nothing_and_are_not_audited(self, fleet: Store) -> None:
        before = state(fleet)
        with fleet.transaction() as session:
            done = inventory.update_site(
                session, CLOCK, "tester", "100000000001", inventory.SiteChanges(name="Berlin")
            )
        assert done.changed == {}
        assert state(fleet) == before

    @pytest.mark.parametrize(
        ("ref", "changes", "message"),
        [
            ("Berlin", inventory.SiteChanges(timezone="Mars/Olympus"), "not an IANA zone"),
            ("Berlin", inventory.SiteChanges(name="=1+1"), "would take it for a formula"),
            ("Berlin", inventory.SiteChanges(name=" "), "a site needs a name"),
            ("Berlin", inventory.SiteChanges(name="new YORK"), "is taken by site 100000000002"),
            ("Berlin", inventory.SiteChanges(contact="a\tb"), "control character U\\+0009"),
            ("Tokio", inventory.SiteChanges(name="X"), "site 'Tokio' does not exist"),
        ],
        ids=["zone", "formula", "blank name", "taken name", "tab", "unknown site"],
    )
    def test_bad_changes_are_refused_and_nothing_changes(
        self, fleet: Store, ref: str, changes: inventory.SiteChanges, message: str
    ) -> None:
        before = state(fleet)
        with pytest.raises((InputError, NotFoundError), match=message), fleet.transaction() as s:
            inventory.update_site(s, CLOCK, "tester", ref, changes)
        assert state(fleet) == before


class TestSiteRemoval:
    def test_a_site_with_phones_is_kept_and_the_error_counts_them(self, fleet: Store) -> None:
        before = state(fleet)
        with pytest.raises(ConflictError) as caught, fleet.transaction() as session:
            inventory.remove_site(session, CLOCK, "tester", "Berlin")
        assert str(caught.value) == (
            "site 100000000001 (Berlin) still has 2 phones: nothing was removed"
        )
        assert "--force" in (caught.value.hint or "")
        assert state(fleet) == before

    def test_a_site_with_a_posted_key_is_kept_and_the_key_named(self, fleet: Store) -> None:
        key_id = post_site_key(fleet, "100000000002")
        with fleet.transaction() as session:
            inventory.remove_phones(session, CLOCK, "tester", ["0004f2000003"])
        before = state(fleet)
        with pytest.raises(ConflictError) as caught, fleet.transaction() as session:
            inventory.remove_site(session, CLOCK, "tester", "new york")
        assert str(caught.value) == (
            f"site 100000000002 (New York) still has 1 posted key (license {key_id}): "
            "nothing was removed"
        )
        assert state(fleet) == before

    def test_force_removes_the_site_with_its_phones_and_keeps_its_keys(self, fleet: Store) -> None:
        key_id = post_site_key(fleet, "100000000002")
        with fleet.transaction() as session:
            done = inventory.remove_site(session, CLOCK, "tester", "New York", force=True)
        assert (done.site, done.phones, done.posted) == (NEW_YORK, 1, (key_id,))
        with fleet.transaction() as session:
            assert [s.serial for s in inventory.sites(session)] == ["100000000001"]
            assert [p.mac for p in inventory.phones(session)] == ["0004f2000001", "0004f2000002"]
        action, subject, details = last_event(fleet)
        assert (action, subject) == ("site.remove", "100000000002")
        assert details["phones_removed"] == 1
        assert details["posted_keys_kept"] == [key_id]
        verified(fleet)

    def test_an_empty_site_is_removed_without_force(self, fleet: Store) -> None:
        with fleet.transaction() as session:
            inventory.remove_phones(session, CLOCK, "tester", ["0004f2000003"])
            done = inventory.remove_site(session, CLOCK, "tester", "100000000002")
        assert (done.phones, done.posted) == (0, ())
        verified(fleet)


def post_site_key(store: Store, serial: str) -> int:
    key = make_license(serial=serial, type=LicenseType.SITE)
    with store.transaction() as session:
        stored = registry.record(
            session,
            CLOCK,
            "tester",
            key,
            trusted_keys_for().check(key),
            content=serialize_keys([key]),
            file_name="000000000000-license.cfg",
        )
        posting.post(session, CLOCK, "tester", stored.id)
    return stored.id


class TestPhoneRemoval:
    def test_phones_are_removed_audited_and_their_posted_keys_named(self, fleet: Store) -> None:
        with fleet.transaction() as session:
            done = inventory.remove_phones(
                session, CLOCK, "tester", ["00:04:F2:00:00:01", "0004f2000002"]
            )
        assert done.macs == ("0004f2000001", "0004f2000002")
        action, subject, details = last_event(fleet)
        assert (action, subject) == ("phones.remove", "2 phones")
        assert details["macs"] == ["0004f2000001", "0004f2000002"]
        verified(fleet)

    def test_an_unknown_mac_removes_nothing(self, fleet: Store) -> None:
        before = state(fleet)
        with pytest.raises(NotFoundError) as caught, fleet.transaction() as session:
            inventory.remove_phones(session, CLOCK, "tester", ["0004f2000001", "0004f20000ff"])
        assert str(caught.value) == (
            "1 phone not in the inventory (0004f20000ff): nothing was removed"
        )
        assert state(fleet) == before

    def test_a_bad_mac_removes_nothing(self, fleet: Store) -> None:
        before = state(fleet)
        with (
            pytest.raises(InputError, match="MAC 'nope' is not a MAC address"),
            fleet.transaction() as session,
        ):
            inventory.remove_phones(session, CLOCK, "tester", ["0004f2000001", "nope"])
        assert state(fleet) == before


class TestReimport:
    def test_a_file_with_fewer_columns_leaves_the_others_as_they_are(self, fleet: Store) -> None:
        with fleet.transaction() as session:
            hashed = session.get_one(PhoneRow, "0004f2000001").password_hash
        result = reimport(
            fleet,
            "mac,site,model\n0004f2000001,Berlin,VVX_501\n0004f2000002,Berlin,VVX_400\n",
        )
        assert result.diff == (
            PhoneDiff(
                "0004f2000001", RowChange.CHANGED, (ColumnChange("model", "VVX_500", "VVX_501"),)
            ),
        )
        assert (result.unchanged, result.updated) == (1, 2)
        with fleet.transaction() as session:
            first = inventory.phone(session, "0004f2000001")
            row = session.get_one(PhoneRow, "0004f2000001")
            assert row.password_hash == hashed  # not hashed again
        assert (first.model, first.firmware, first.prov_user, first.sip_contact) == (
            "VVX_501",
            "5.9.7",
            "dev1",
            "sip:1001@pbx.test",
        )
        assert first.has_password
        action, _, details = last_event(fleet)
        assert action == "phones.import"
        assert (details["changed"], details["unchanged"], details["columns"]) == (
            1,
            1,
            ["mac", "site", "model"],
        )
        verified(fleet)

    def test_a_dry_run_shows_every_change_and_makes_none(self, fleet: Store) -> None:
        before = state(fleet)
        result = reimport(
            fleet,
            "mac,site,model,firmware,user,password,contact\n"
            "0004f2000001,100000000001,VVX_500,5.9.7,dev1,n3w,sip:1001@pbx.test\n"
            "0004f2000002,New York,VVX_400,,,,sip:1002@pbx.test\n"
            "0004f2000009,Berlin,VVX_300,,dev9,pw9,\n",
            dry_run=True,
        )
        assert state(fleet) == before
        assert result.dry_run
        assert result.diff == (
            PhoneDiff(
                "0004f2000001", RowChange.CHANGED, (ColumnChange("password", HIDDEN, HIDDEN),)
            ),
            PhoneDiff(
                "0004f2000002",
                RowChange.CHANGED,
                (
                    ColumnChange("site", "100000000001", "100000000002"),
                    ColumnChange("firmware", "5.9.6", None),
                ),
            ),
            PhoneDiff(
                "0004f2000009",
                RowChange.ADDED,
                (
                    ColumnChange("site", None, "100000000001"),
                    ColumnChange("model", None, "VVX_300"),
                    ColumnChange("user", None, "dev9"),
                    ColumnChange("password", None, HIDDEN),
                ),
            ),
        )
        assert result.to_json()["diff"][0] == {
            "mac": "0004f2000001",
            "change": "changed",
            "columns": {"password": {"old": "(hidden)", "new": "(hidden)"}},
        }

    def test_remove_missing_removes_only_phones_of_the_sites_the_file_names(
        self, fleet: Store
    ) -> None:
        text = "mac,site,model\n0004f2000001,Berlin,VVX_500\n"
        dry = reimport(fleet, text, dry_run=True, remove_missing=True)
        assert [(d.mac, d.change) for d in dry.diff] == [("0004f2000002", RowChange.REMOVED)]
        assert dry.diff[0].columns[0] == ColumnChange("site", "100000000001", None)
        done = reimport(fleet, text, remove_missing=True)
        assert done.to_json()["removed"] == 1
        with fleet.transaction() as session:
            assert [p.mac for p in inventory.phones(session)] == ["0004f2000001", "0004f2000003"]
        assert last_event(fleet)[2]["removed_macs"] == ["0004f2000002"]
        verified(fleet)

    def test_an_unchanged_password_is_no_change_and_an_empty_one_clears(self, fleet: Store) -> None:
        same = "mac,site,model,user,password\n0004f2000001,Berlin,VVX_500,dev1,s3cret\n"
        assert reimport(fleet, same).diff == ()
        cleared = reimport(fleet, "mac,site,model,user,password\n0004f2000001,Berlin,VVX_500,,\n")
        assert cleared.diff[0].columns == (
            ColumnChange("user", "dev1", None),
            ColumnChange("password", HIDDEN, None),
        )
        with fleet.transaction() as session:
            row = session.get_one(PhoneRow, "0004f2000001")
            assert (row.prov_user, row.password_hash, row.digest_ha1) == (None, None, None)
        verified(fleet)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (
                "mac,site,model\n0004f2000001,Tokio,VVX_500\n",
                "line 2: site 'Tokio' does not exist: no site has that serial or name",
            ),
            (
                "mac,site,model,user\n0004f2000001,Berlin,VVX_500,dev1\n",
                "line 2: columns user and password go together: the file has only one of them",
            ),
            (
                "mac,site,model\n0004f2000001,,VVX_500\n",
                "line 2: a site is named by its serial (12 hex digits) or its name",
            ),
        ],
        ids=["unknown site name", "user without password column", "no site"],
    )
    def test_bad_rows_import_nothing(self, fleet: Store, text: str, message: str) -> None:
        before = state(fleet)
        with pytest.raises(RowError) as caught:
            reimport(fleet, text)
        assert caught.value.problems == [message]
        assert state(fleet) == before
