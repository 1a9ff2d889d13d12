"""The phones at risk (not served their site's posted license) and those that fetched it, read
key by key as sets (ui/fetched.py), on SQLite and PostgreSQL: whether none, a few or most of
the fleet is at risk, every page lists exactly the right phones in MAC order, and the count
says how many there are in all."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from fleetkey.clock import FixedClock
from fleetkey.core.license import LicenseType
from fleetkey.core.rollout.windows import Window
from fleetkey.core.verdicts import SignatureCheck, SignatureStatus
from fleetkey.store import fetches, inventory, phone_import, posting, registry
from fleetkey.store.records import FetchRecord, Site
from fleetkey.store.store import Store
from fleetkey.testing import make_license
from fleetkey.ui import phonestate
from fleetkey.ui.fetched import fetched_posted_by_site
from fleetkey.ui.phonestate import PhoneFilter

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
CLOCK = FixedClock(NOW)
SITES = ("100000000001", "100000000002", "100000000003")  # the third has no posted key
SITE_FILE = "000000000000-license.cfg"
PHONES = 240
MODELS = ("VVX_411", "VVX_500")


def mac(i: int) -> str:
    return f"0004f2{i * 7919 % 0x1000000:06x}"  # spread over the MAC space, not in site order


class Fleet:
    """240 phones over three sites (phone i at site i % 3, model i % 2); the first two sites'
    keys posted, the first one's twice (the older superseded)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        csv = "mac,site,model,firmware\n" + "".join(
            f"{mac(i)},{SITES[i % 3]},{MODELS[i % 2]},5.9\n" for i in range(PHONES)
        )
        check = SignatureCheck(SignatureStatus.VALID, "k", "ok")
        self.digests: dict[str, list[str]] = {}
        with store.transaction() as session:
            for serial in SITES:
                site = Site(serial, f"S{serial[-1]}", "UTC", Window.parse("22:00-05:00"))
                inventory.add_site(session, CLOCK, "t", site)
            phone_import.import_phones(session, CLOCK, "t", csv.encode(), source="phones.csv")
            for serial, days in ((SITES[0], 20), (SITES[1], 30), (SITES[0], 60)):
                key = make_license(
                    serial=serial, type=LicenseType.SITE, expires=date(2026, 6, 1) + timedelta(days)
                )
                content = f"<licenses>{serial} {days}</licenses>".encode()
                stored = registry.record(
                    session, CLOCK, "t", key, check, content=content, file_name=SITE_FILE
                )
                posting.post(session, CLOCK, "t", stored.id)
                self.digests.setdefault(serial, []).append(stored.digest)

    def posted(self, site: int) -> str:
        return self.digests[SITES[site]][-1]

    def serve(self, fetched: set[int]) -> None:
        """The phones in ``fetched`` are served their site's posted key; the others of the
        first two sites something else: nothing, the superseded key, the other site's key, or
        their posted key and then the superseded one (the newest answer counts)."""
        records = []
        for i in range(PHONES):
            at, site = NOW - timedelta(minutes=PHONES - i), i % 3
            if site == 2:
                continue
            if i in fetched:
                served = [self.posted(site)]
            else:
                served = [
                    [],
                    [self.digests[SITES[0]][0]],
                    [self.posted(1 - site)],
                    [self.posted(site), self.digests[SITES[0]][0]],
                ][i % 4]
            records += [
                FetchRecord(
                    f"/{SITE_FILE}",
                    "http",
                    200,
                    9,
                    1.0,
                    at + timedelta(seconds=n),
                    mac=mac(i),
                    digest=digest,
                )
                for n, digest in enumerate(served)
            ]
        fetches.insert_records(self.store.engine, records)


def pages(store: Store, chosen: PhoneFilter, size: int) -> tuple[list[str], list[int]]:
    """Every page of ``chosen`` after the last MAC of the one before, and the totals said."""
    listed: list[str] = []
    totals = []
    after = None
    with store.transaction() as session:
        while True:
            lines, total = phonestate.phone_page(session, chosen, NOW, after=after, limit=size)
            totals.append(total)
            listed += [line.mac for line in lines]
            if len(lines) < size:
                return listed, totals
            after = lines[-1].mac


@pytest.fixture
def fleet(store: Store) -> Fleet:
    return Fleet(store)


def of_posted_sites(i: int) -> bool:
    return i % 3 != 2


@pytest.mark.parametrize(
    "fetched",
    [
        pytest.param(set(range(PHONES)), id="none-at-risk"),
        pytest.param(set(range(PHONES)) - {7, 100, 161, 238}, id="a-few-at-risk"),
        pytest.param({3, 4, 200}, id="most-at-risk"),
        pytest.param(set(), id="all-at-risk"),
    ],
)
@pytest.mark.parametrize("size", [1, 7, 500])
def test_every_page_lists_exactly_the_phones_at_risk_in_mac_order(
    fleet: Fleet, fetched: set[int], size: int
) -> None:
    fleet.serve(fetched)
    at_risk = sorted(mac(i) for i in range(PHONES) if of_posted_sites(i) and i not in fetched)
    got = sorted(mac(i) for i in range(PHONES) if of_posted_sites(i) and i in fetched)
    listed, totals = pages(fleet.store, PhoneFilter(current=False), size)
    assert listed == at_risk
    assert set(totals) == {len(at_risk)}
    listed, totals = pages(fleet.store, PhoneFilter(current=True), size)
    assert listed == got
    assert set(totals) == {len(got)}


@pytest.mark.parametrize(
    "chosen",
    [
        PhoneFilter(current=False, model="VVX_500"),
        PhoneFilter(current=False, site=SITES[1]),
        PhoneFilter(current=False, site=SITES[2]),  # no posted key: never at risk
        PhoneFilter(current=True, model="VVX_411", site=SITES[0]),
        PhoneFilter(current=False, search="0004f2"),
        PhoneFilter(current=True, search=mac(12)),
    ],
)
def test_the_other_filters_hold_inside_each_posted_keys_set(
    fleet: Fleet, chosen: PhoneFilter
) -> None:
    fetched = {i for i in range(PHONES) if i * 37 % 11 < 5}  # about half, in no order
    fleet.serve(fetched)

    def matches(i: int) -> bool:
        return (
            of_posted_sites(i)
            and (i in fetched) is chosen.current
            and chosen.model in (None, MODELS[i % 2])
            and chosen.site in (None, SITES[i % 3])
            and mac(i).startswith(chosen.search or "")
        )

    expected = sorted(mac(i) for i in range(PHONES) if matches(i))
    listed, totals = pages(fleet.store, chosen, 5)
    assert listed == expected
    assert set(totals) == {len(expected)}


def test_the_sites_counts_agree_with_the_lists(fleet: Fleet) -> None:
    fleet.serve({i for i in range(PHONES) if i % 5})
    with fleet.store.transaction() as session:
        counts = fetched_posted_by_site(session)
    for site in (0, 1):
        listed, _ = pages(fleet.store, PhoneFilter(current=True, site=SITES[site]), 50)
        assert counts[SITES[site]] == (len(listed), PHONES // 3)
    assert SITES[2] not in counts
