"""What the dashboard reads from the store, on SQLite and PostgreSQL: phones by last seen,
who fetched the posted site license, the phone table's filters and pages, the overview."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import update

from fleetkey.clock import FixedClock
from fleetkey.core.license import LicenseType
from fleetkey.core.rollout.windows import Window
from fleetkey.core.verdicts import SignatureCheck, SignatureStatus
from fleetkey.store import fetches, inventory, phone_import, posting, registry
from fleetkey.store.records import FetchRecord, Site
from fleetkey.store.schema import PhoneRow
from fleetkey.store.store import Store
from fleetkey.testing import make_license
from fleetkey.ui import overview, phonestate
from fleetkey.ui.fetched import fetched_posted_by_site
from fleetkey.ui.phonestate import PhoneFilter, Seen

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
CLOCK = FixedClock(NOW)
SITES = ("100000000001", "100000000002")
SITE_FILE = "000000000000-license.cfg"


def mac(i: int) -> str:
    return f"0004f2{i:06x}"


@pytest.fixture
def fleet(store: Store) -> Store:
    """Ten phones, even ones at the first site; the first site's key posted twice (the first
    superseded); phones 0-3 seen at 1 min, 2 h, 2 days ago and never...; 0 and 2 fetched the
    posted key, 4 the superseded one; phone 6 has a phone key granting slot 3."""
    csv = "mac,site,model,firmware\n" + "".join(
        f"{mac(i)},{SITES[i % 2]},{'VVX_411' if i < 4 else 'VVX_500'},5.9\n" for i in range(10)
    )
    with store.transaction() as session:
        for serial in SITES:
            site = Site(serial, f"S{serial[-1]}", "UTC", Window.parse("22:00-05:00"))
            inventory.add_site(session, CLOCK, "t", site)
        phone_import.import_phones(session, CLOCK, "t", csv.encode(), source="phones.csv")
        check = SignatureCheck(SignatureStatus.VALID, "k", "ok")
        digests = []
        for days in (20, 60):
            key = make_license(
                serial=SITES[0], type=LicenseType.SITE, expires=date(2026, 6, 1) + timedelta(days)
            )
            content = f"<licenses>{days}</licenses>".encode()
            stored = registry.record(
                session, CLOCK, "t", key, check, content=content, file_name=SITE_FILE
            )
            posting.post(session, CLOCK, "t", stored.id)
            digests.append(stored.digest)
        phone_key = make_license(serial=mac(6), terms={3: date(2027, 1, 1)})
        stored = registry.record(
            session,
            CLOCK,
            "t",
            phone_key,
            check,
            content=b"<p/>",
            file_name=f"{mac(6)}-license.cfg",
        )
        posting.post(session, CLOCK, "t", stored.id)
        for i, ago in ((0, timedelta(minutes=1)), (2, timedelta(hours=2)), (4, timedelta(days=2))):
            session.execute(
                update(PhoneRow).where(PhoneRow.mac == mac(i)).values(last_seen_at=NOW - ago)
            )
    records = [
        FetchRecord(
            f"/{SITE_FILE}",
            "http",
            200,
            9,
            1.0,
            NOW - timedelta(minutes=m),
            mac=mac(i),
            digest=digest,
        )
        for i, digest, m in ((0, digests[1], 1), (2, digests[1], 90), (4, digests[0], 2000))
    ]
    records.append(
        FetchRecord(f"/{SITE_FILE}", "http", 503, 0, 1.0, NOW - timedelta(minutes=3), mac=mac(8))
    )
    fetches.insert_records(store.engine, records)
    return store


def test_phones_by_last_seen_per_site(fleet: Store) -> None:
    with fleet.transaction() as session:
        found = phonestate.seen_by_site(session, NOW)
    assert found[SITES[0]] == {Seen.RECENT: 1, Seen.DAY: 1, Seen.OLDER: 1, Seen.NEVER: 2}
    assert found[SITES[1]] == {Seen.RECENT: 0, Seen.DAY: 0, Seen.OLDER: 0, Seen.NEVER: 5}


def test_only_the_posted_version_counts_as_fetched(fleet: Store) -> None:
    with fleet.transaction() as session:
        assert fetched_posted_by_site(session) == {SITES[0]: (2, 5)}


def test_the_fetched_counts_take_the_phones_per_site_the_caller_counted(fleet: Store) -> None:
    with fleet.transaction() as session:
        given = fetched_posted_by_site(session, {SITES[0]: 7, SITES[1]: 5})
        none = fetched_posted_by_site(session, {SITES[1]: 5})
    assert given == {SITES[0]: (2, 7)}  # the overview passes what it counted by last seen
    assert none == {}  # a site with no phones counted has no line


@pytest.mark.parametrize(
    ("chosen", "macs"),
    [
        (PhoneFilter(), [mac(i) for i in range(10)]),
        (PhoneFilter(site=SITES[1]), [mac(i) for i in (1, 3, 5, 7, 9)]),
        (PhoneFilter(current=True), [mac(0), mac(2)]),
        (PhoneFilter(current=False), [mac(4), mac(6), mac(8)]),  # the other site has no key
        (PhoneFilter(seen=Seen.RECENT), [mac(0)]),
        (PhoneFilter(seen=Seen.DAY), [mac(2)]),
        (PhoneFilter(seen=Seen.OLDER), [mac(4)]),
        (PhoneFilter(site=SITES[0], seen=Seen.NEVER), [mac(6), mac(8)]),
        (PhoneFilter(model="VVX_411"), [mac(i) for i in range(4)]),
        (PhoneFilter(firmware="6.0"), []),
        (PhoneFilter(search="0004F2000005"), [mac(5)]),  # case ignored on both databases
        (PhoneFilter(search="00:04:f2:00:00:0"), [mac(i) for i in range(10)]),  # a MAC's start
        (PhoneFilter(search="F2000005"), []),  # a prefix, not anywhere in the MAC
        (PhoneFilter(search="vvx_4"), [mac(i) for i in range(4)]),  # the model's start
        (PhoneFilter(search="5.9"), [mac(i) for i in range(10)]),  # the firmware's
        (PhoneFilter(search="%"), []),  # a LIKE wildcard is plain text
        (PhoneFilter(search="VVX%"), []),
        (PhoneFilter(search="VVX_"), [mac(i) for i in range(10)]),
        (PhoneFilter(feature=3), [mac(6)]),
        (PhoneFilter(license_id=2), [mac(0), mac(2)]),  # the posted site key's version
        (PhoneFilter(license_id=1), [mac(4)]),  # the superseded one's
        (PhoneFilter(license_id=1, current=False), [mac(4)]),
        (PhoneFilter(license_id=3), []),  # the phone key: posted, never fetched
        (PhoneFilter(license_id=99), []),
        (PhoneFilter(feature=0), [mac(i) for i in (0, 2, 4, 6, 8)]),  # the site key's slot
        # the fetched-or-not counts by posted key, with the other filters inside each count
        (PhoneFilter(current=True, feature=0), [mac(0), mac(2)]),
        (PhoneFilter(current=True, feature=3), []),
        (PhoneFilter(current=False, feature=3), [mac(6)]),
        (PhoneFilter(current=True, license_id=2), [mac(0), mac(2)]),
        (PhoneFilter(current=True, license_id=1), []),
        (PhoneFilter(current=False, seen=Seen.OLDER), [mac(4)]),
        (PhoneFilter(current=True, search="0004f2000002"), [mac(2)]),
        (PhoneFilter(current=False, site=SITES[1]), []),  # its site has no posted key
    ],
)
def test_filters_of_the_phone_table(fleet: Store, chosen: PhoneFilter, macs: list[str]) -> None:
    with fleet.transaction() as session:
        lines, total = phonestate.phone_page(session, chosen, NOW, after=None, limit=100)
    assert [line.mac for line in lines] == macs
    assert total == len(macs)


def test_the_phone_table_pages_by_mac_and_says_the_version(fleet: Store) -> None:
    with fleet.transaction() as session:
        first, total = phonestate.phone_page(session, PhoneFilter(), NOW, after=None, limit=4)
        rest, _ = phonestate.phone_page(session, PhoneFilter(), NOW, after=first[-1].mac, limit=4)
    assert total == 10
    assert [line.mac for line in rest] == [mac(i) for i in range(4, 8)]
    assert [line.current for line in first] == [True, None, True, None]
    assert rest[0].current is False
    assert first[0].last_seen_at == NOW - timedelta(minutes=1)


def test_the_overview_reads_the_same_numbers(fleet: Store) -> None:
    with fleet.transaction() as session:
        found = overview.overview(session, NOW)
    first = next(line for line in found.sites if line.site.serial == SITES[0])
    assert (first.fetched, first.phones, first.at_risk, first.days_left) == (2, 5, 3, 60)
    assert found.sites[0].site.serial == SITES[0]  # soonest expiry first
    assert found.seen_totals == {Seen.RECENT: 1, Seen.DAY: 1, Seen.OLDER: 1, Seen.NEVER: 7}
    assert [e.stage for e in found.expiring] == ["60d"]  # the posted key only
    assert sum(total for total, _ in found.per_minute) == 2  # 1 and 3 min ago, not 90
    assert sum(refused for _, refused in found.per_minute) == 1
    assert (found.per_minute[59], found.per_minute[57]) == ((1, 0), (1, 1))  # in their minutes


def test_a_phone_served_another_sites_posted_key_is_still_at_risk(fleet: Store) -> None:
    """Its own site's posted key is the one that counts (the check was once an uncorrelated
    subquery: any site's posted key counted, and PostgreSQL ran it for minutes)."""
    with fleet.transaction() as session:
        other = registry.posted(session, LicenseType.SITE, SITES[0])
        assert other is not None
        key = make_license(
            serial=SITES[1], type=LicenseType.SITE, expires=date(2026, 6, 1) + timedelta(90)
        )
        check = SignatureCheck(SignatureStatus.VALID, "k", "ok")
        stored = registry.record(
            session, CLOCK, "t", key, check, content=b"<licenses>s2</licenses>",
            file_name=SITE_FILE,
        )  # fmt: skip
        posting.post(session, CLOCK, "t", stored.id)
    wrong = FetchRecord(f"/{SITE_FILE}", "http", 200, 9, 1.0, NOW, mac=mac(1), digest=other.digest)
    fetches.insert_records(fleet.engine, [wrong])
    with fleet.transaction() as session:
        assert fetched_posted_by_site(session) == {SITES[0]: (2, 5), SITES[1]: (0, 5)}
        at_risk, total = phonestate.phone_page(
            session, PhoneFilter(site=SITES[1], current=False), NOW, after=None, limit=100
        )
        fetched, none = phonestate.phone_page(
            session, PhoneFilter(current=True), NOW, after=None, limit=100
        )
    assert mac(1) in [line.mac for line in at_risk]
    assert total == 5
    assert [line.mac for line in fetched] == [mac(0), mac(2)]
    assert none == 2
    assert next(line for line in at_risk if line.mac == mac(1)).current is False


@pytest.mark.parametrize("sparse", [10_000, 0], ids=["few-read-by-matches", "many-walked"])
def test_a_search_pages_alike_whether_it_matches_few_or_many(
    fleet: Store, sparse: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(phonestate, "SPARSE_SEARCH", sparse)
    chosen = PhoneFilter(search="0004f2", model="VVX_500")
    with fleet.transaction() as session:
        first, total = phonestate.phone_page(session, chosen, NOW, after=None, limit=4)
        rest, _ = phonestate.phone_page(session, chosen, NOW, after=first[-1].mac, limit=4)
        none, _ = phonestate.phone_page(session, chosen, NOW, after=mac(9), limit=4)
    assert total == 6
    assert [line.mac for line in first] == [mac(i) for i in range(4, 8)]
    assert [line.mac for line in rest] == [mac(8), mac(9)]
    assert none == []
