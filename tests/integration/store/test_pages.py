"""Lists a page at a time on both backends: keyset pages with what is left, fetch records
filtered and followed, and a phone's license state from the fetch records."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleetkey.clock import FixedClock
from fleetkey.core.license import LicenseKey, LicenseState, LicenseType
from fleetkey.core.rollout.windows import Window
from fleetkey.core.verdicts import SignatureCheck, SignatureStatus
from fleetkey.errors import InputError
from fleetkey.store import (
    audit,
    fetches,
    inventory,
    licensestate,
    pages,
    phone_import,
    posting,
    registry,
    sightings,
)
from fleetkey.store.fetches import FetchFilter
from fleetkey.store.records import FetchRecord, Site, StoredLicense
from fleetkey.store.schema import PhoneRow
from fleetkey.store.store import Store
from fleetkey.testing import make_license

CLOCK = FixedClock()
SITE_FILE = "000000000000-license.cfg"
AT = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
SITES = ("100000000001", "100000000002")
CSV = "mac,site,model\n" + "".join(f"0004f2{i:06x},{SITES[i % 2]},VVX_500\n" for i in range(25))


@pytest.fixture
def fleet(store: Store) -> Store:
    """Two sites, 25 phones alternating between them (0004f2000000 at the first)."""
    with store.transaction() as session:
        for serial in SITES:
            window = Window.parse("22:00-05:00")
            inventory.add_site(session, CLOCK, "t", Site(serial, serial, "UTC", window))
        phone_import.import_phones(session, CLOCK, "t", CSV.encode(), source="phones.csv")
    return store


class TestPhonePages:
    def test_pages_follow_each_other_and_say_what_is_left(self, fleet: Store) -> None:
        with fleet.transaction() as session:
            first = pages.phones(session, limit=10)
            second = pages.phones(session, after=first.items[-1].mac, limit=10)
            last = pages.phones(session, after="00:04:F2:00:00:13", limit=10)
            everything = pages.phones(session)
        assert [p.mac for p in first.items] == [f"0004f2{i:06x}" for i in range(10)]
        assert (first.left, second.left, last.left) == (15, 5, 0)
        assert [p.mac for p in second.items] == [f"0004f2{i:06x}" for i in range(10, 20)]
        assert [p.mac for p in last.items] == [f"0004f2{i:06x}" for i in range(20, 25)]
        assert (len(everything.items), everything.left) == (25, 0)
        assert everything.items[3].site == SITES[1]

    def test_a_sites_pages_hold_only_its_phones(self, fleet: Store) -> None:
        with fleet.transaction() as session:
            page = pages.phones(session, site=SITES[1], limit=5)
            rest = pages.phones(session, site=SITES[1], after=page.items[-1].mac, limit=5)
        assert [p.mac for p in page.items] == [f"0004f2{i:06x}" for i in (1, 3, 5, 7, 9)]
        assert (page.left, rest.left) == (7, 2)
        assert {p.site for p in page.items + rest.items} == {SITES[1]}

    def test_sites_page_by_serial(self, fleet: Store) -> None:
        with fleet.transaction() as session:
            page = pages.sites(session, limit=1)
            rest = pages.sites(session, after=SITES[0])
        assert ([s.serial for s in page.items], page.left) == ([SITES[0]], 1)
        assert [s.serial for s in rest.items] == [SITES[1]]

    def test_last_seen_is_the_newest_fetch_record_unless_a_sighting_is_newer(
        self, fleet: Store
    ) -> None:
        agent = "FileTransport PolycomVVX-VVX_500-UA/6.4.0.1 Type/Application"
        fetched = [
            FetchRecord("/sip.cfg", "http", 200, 9, 1.0, AT + timedelta(hours=2), mac=mac,
                        remote_addr="10.0.0.9", user_agent=agent)
            for mac in ("0004f2000000", "0004f2000001")
        ]  # fmt: skip
        fetches.insert_records(fleet.engine, fetched)
        with fleet.transaction() as session:
            sightings.record(
                session,
                [
                    sightings.Sighting("0004f2000001", AT + timedelta(hours=3), "10.0.0.8", "x"),
                    sightings.Sighting("0004f2000002", AT, "10.0.0.7", "y"),
                ],
            )
        with fleet.transaction() as session:
            listed = {p.mac: p for p in pages.phones(session, limit=4).items}
        first, second, third, fourth = (listed[f"0004f2{i:06x}"] for i in range(4))
        seen = (AT + timedelta(hours=2), "10.0.0.9", agent)
        assert (first.last_seen_at, first.last_address, first.last_user_agent) == seen
        assert (second.last_seen_at, second.last_address) == (AT + timedelta(hours=3), "10.0.0.8")
        assert (third.last_seen_at, third.last_address) == (AT, "10.0.0.7")
        assert (fourth.last_seen_at, fourth.last_address) == (None, None)

    def test_a_bad_start_is_refused(self, fleet: Store) -> None:
        with fleet.transaction() as session:
            with pytest.raises(InputError, match="MAC '0004f2'"):
                pages.phones(session, after="0004f2")
            with pytest.raises(InputError, match="site serial '1'"):
                pages.sites(session, after="1")


class TestLicensePages:
    def test_keys_come_newest_first_and_page_by_id(self, fleet: Store) -> None:
        with fleet.transaction() as session:
            for days in (10, 20, 30):
                key = make_license(
                    serial=SITES[0], type=LicenseType.SITE, expires=date(2027, 1, days)
                )
                record_posted(session, key, f"<{days}/>".encode())
        with fleet.transaction() as session:
            page = pages.licenses(session, today=date(2026, 12, 1), limit=2)
            rest = pages.licenses(session, today=date(2026, 12, 1), before=page.items[-1].id)
            posted = pages.licenses(session, today=date(2026, 12, 1), states=(LicenseState.POSTED,))
            soon = pages.licenses(session, today=date(2026, 12, 1), expiring_within=55)
            assert pages.successors(session, 1) == [2]
        assert ([k.id for k in page.items], page.left) == ([3, 2], 1)
        assert [k.id for k in rest.items] == [1]
        assert [k.id for k in posted.items] == [3]
        assert [k.id for k in soon.items] == [2, 1]
        with fleet.transaction() as session, pytest.raises(InputError, match="0 or more"):
            pages.licenses(session, today=date(2026, 12, 1), expiring_within=-1)


def test_audit_events_page_newest_first(fleet: Store) -> None:
    with fleet.transaction() as session:
        page = pages.events(session, limit=2)
        rest = pages.events(session, before=page.items[-1].seq)
        assert len(audit.events(session)) == 3
    assert ([e.action for e in page.items], page.left) == (["phones.import", "site.add"], 1)
    assert [e.action for e in rest.items] == ["site.add"]


def record_posted(session: Session, key: LicenseKey, content: bytes) -> StoredLicense:
    """Record a key with a valid signature and post it (the key before is superseded)."""
    check = SignatureCheck(SignatureStatus.VALID, "k", "ok")
    stored = registry.record(session, CLOCK, "t", key, check, content=content, file_name=SITE_FILE)
    posting.post(session, CLOCK, "t", stored.id)
    return registry.get(session, stored.id)


def site_key(expires: date) -> LicenseKey:
    return make_license(serial=SITES[0], type=LicenseType.SITE, expires=expires)


def rec(path: str, status: int, minutes: int, mac: str | None = "0004f2000001") -> FetchRecord:
    return FetchRecord(path, "http", status, 10, 1.0, AT + timedelta(minutes=minutes), mac=mac)


class TestFetchRecords:
    @pytest.fixture
    def written(self, fleet: Store) -> Store:
        fetches.insert_records(
            fleet.engine,
            [
                rec("/0004f2000001-license.cfg", 200, 0),
                rec("/100000000001/000000000000-LICENSE.cfg", 404, 10),
                rec("/a_b%c.cfg", 503, 20, mac=None),
                rec("/axbyc.cfg", 200, 30, mac="0004f2000002"),
            ],
        )
        return fleet

    def newest(self, store: Store, where: FetchFilter, limit: int | None = None) -> list[str]:
        with store.transaction() as session:
            found, _ = fetches.newest(session, where, limit)
        return [r.path for r in found]

    def test_filters_hold_together(self, written: Store) -> None:
        assert self.newest(written, FetchFilter(statuses=((400, 499), (500, 599)))) == [
            "/a_b%c.cfg",
            "/100000000001/000000000000-LICENSE.cfg",
        ]
        assert self.newest(written, FetchFilter(path="license.CFG", mac="0004f2000001")) == [
            "/100000000001/000000000000-LICENSE.cfg",
            "/0004f2000001-license.cfg",
        ]  # case ignored on both databases
        assert self.newest(written, FetchFilter(path="/1000*/0000")) == [
            "/100000000001/000000000000-LICENSE.cfg"
        ]
        assert self.newest(written, FetchFilter(path="a_b")) == ["/a_b%c.cfg"]  # _ is plain
        assert self.newest(written, FetchFilter(path="b%c")) == ["/a_b%c.cfg"]  # % is plain
        window = FetchFilter(since=AT + timedelta(minutes=10), until=AT + timedelta(minutes=30))
        assert self.newest(written, window) == [
            "/a_b%c.cfg",
            "/100000000001/000000000000-LICENSE.cfg",
        ]

    def test_a_leading_slash_also_finds_the_name_a_tftp_request_gives(self, written: Store) -> None:
        fetches.insert_records(  # as a phone's TFTP request names it: no leading slash
            written.engine,
            [FetchRecord("0004f2000003-boot.log", "tftp", 200, 10, 1.0, AT, mac="0004f2000003"),
             FetchRecord("a_b.cfg", "tftp", 404, 0, 1.0, AT, mac="0004f2000003"),
             FetchRecord("axb.cfg", "tftp", 404, 0, 1.0, AT, mac="0004f2000003"),
             rec("/0004f2000003-boot.log", 204, 1, mac="0004f2000003")],
        )  # fmt: skip
        assert self.newest(written, FetchFilter(path="/0004F2000003-boot.log")) == [
            "/0004f2000003-boot.log",
            "0004f2000003-boot.log",
        ]
        assert self.newest(written, FetchFilter(path="/xbyc")) == []  # not inside a name
        assert self.newest(written, FetchFilter(path="/a_b")) == [  # _ still plain: no axb
            "/a_b%c.cfg",
            "a_b.cfg",
        ]
        everything = self.newest(written, FetchFilter())
        assert self.newest(written, FetchFilter(path="/")) == everything  # every path's start
        assert self.newest(written, FetchFilter(path="//0004f2000003")) == []  # as asked: none

    def test_the_newest_come_first_with_the_count_of_older_ones(self, written: Store) -> None:
        with written.transaction() as session:
            found, left = fetches.newest(session, FetchFilter(), 1)
            capped = fetches.newest(session, FetchFilter(), 1, count_up_to=2)[1]
        assert ([r.path for r in found], left, capped) == (["/axbyc.cfg"], 3, 2)

    def test_following_gives_each_new_record_once_in_order(self, written: Store) -> None:
        with written.transaction() as session:
            start = fetches.last_id(session)
            assert fetches.written_after(session, FetchFilter(), start) == ([], start)
        fetches.insert_records(
            written.engine, [rec("/new-1.cfg", 200, 40), rec("/new-2.cfg", 404, 41)]
        )
        with written.transaction() as session:
            found, after = fetches.written_after(
                session, FetchFilter(statuses=((404, 404),)), start
            )
            again, _ = fetches.written_after(session, FetchFilter(), after)
        assert [r.path for r in found] == ["/new-2.cfg"]
        assert again == []


class TestLicenseState:
    def test_what_a_phone_should_have_and_what_it_got(self, fleet: Store) -> None:
        with fleet.transaction() as session:
            old, new = (
                record_posted(session, site_key(date(year, 1, 1)), f"<{year}/>".encode())
                for year in (2027, 2028)
            )
            phone = inventory.phone(session, "0004f2000000")
            never = licensestate.key_states(session, phone)
        assert [(s.type, s.serial, s.posted and s.posted.id) for s in never] == [
            (LicenseType.PHONE, "0004f2000000", None),
            (LicenseType.SITE, SITES[0], new.id),
        ]
        assert never[1].last_request is None
        assert never[1].current is None
        fetches.insert_records(
            fleet.engine,
            [
                FetchRecord("/000000000000-license.cfg", "tftp", 200, 9, 1.0, AT,
                            mac="0004f2000000", digest=old.digest),
                FetchRecord("/x/000000000000-license.cfg", "http", 503, 0, 1.0,
                            AT + timedelta(minutes=1), mac="0004f2000000"),
            ],
        )  # fmt: skip
        with fleet.transaction() as session:
            (_, site) = licensestate.key_states(session, phone)
        assert (site.last_request and site.last_request.status) == 503
        assert site.last_served is not None
        known = site.last_served.license
        assert known is not None
        assert (site.last_served.protocol, known.id, known.state) == (
            "tftp",
            old.id,
            LicenseState.SUPERSEDED,
        )
        assert site.current is False
        document = site.to_json()
        assert document["last_served"]["license_id"] == old.id
        assert document["posted"]["id"] == new.id


class TestDistinctPairs:
    """``pages.distinct``: the filter lists' models and firmware, stepped through the indexes."""

    MODELS = ("VVX_500", "vvx_500", "T48S", "t48s", "VVX_500", "Vvx_500", "a", "b", "B", "T48S")

    @pytest.fixture
    def mixed(self, store: Store) -> Store:
        rows = "".join(
            f"0004f2{i:06x},{SITES[0]},{model},{'' if i % 3 == 0 else f'5.{i % 4}'}\n"
            for i, model in enumerate(self.MODELS * 3)
        )
        with store.transaction() as session:
            window = Window.parse("22:00-05:00")
            inventory.add_site(session, CLOCK, "t", Site(SITES[0], SITES[0], "UTC", window))
            csv = "mac,site,model,firmware\n" + rows
            phone_import.import_phones(session, CLOCK, "t", csv.encode(), source="phones.csv")
        return store

    @staticmethod
    def _plain(session: Session, column: str) -> list[tuple[str, str]]:
        lowered = func.lower(getattr(PhoneRow, column))
        query = (
            select(lowered, getattr(PhoneRow, column))
            .where(lowered.is_not(None))
            .distinct()
            .order_by(lowered, getattr(PhoneRow, column))
        )
        return [(a, b) for a, b in session.execute(query)]

    @pytest.mark.parametrize("steps", [1, 2, 5, 200])
    def test_the_pairs_are_a_distincts_in_its_order_whatever_the_steps(
        self, mixed: Store, steps: int
    ) -> None:
        with mixed.transaction() as session:
            for column in ("model", "firmware"):
                lowered = func.lower(getattr(PhoneRow, column))
                stepped = pages.distinct(
                    session,
                    lowered,
                    getattr(PhoneRow, column),
                    where=lowered.is_not(None),
                    steps=steps,
                )
                assert stepped == self._plain(session, column)
        assert len(stepped) == 4  # 5.0-5.3; the phones without firmware are not a value

    def test_the_models_keep_each_spelling_once(self, mixed: Store) -> None:
        with mixed.transaction() as session:
            stepped = pages.distinct(session, func.lower(PhoneRow.model), PhoneRow.model)
        assert sorted(model for _, model in stepped) == sorted(set(self.MODELS))

    def test_an_empty_inventory_has_no_pairs(self, store: Store) -> None:
        with store.transaction() as session:
            assert pages.distinct(session, func.lower(PhoneRow.model), PhoneRow.model) == []
