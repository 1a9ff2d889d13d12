"""The alerts' set-wise facts (store/sitefetches.py) say what the per-phone facts say, on both
backends: at a few thousand phones with every kind of phone (current, behind with and without a
boot since the post, never fetched, answered without a digest, booted with an expired license,
at the exact boundaries), the alerts evaluated from the database's per-site answer equal those
evaluated from every phone's newest request read one by one."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert

from fleetkey.clock import FixedClock
from fleetkey.core.alerts import LastSiteFetch, LicenseFacts, SiteFacts, Snapshot, evaluate
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.naming import SITE_LICENSE_FILE
from fleetkey.core.sitefetches import question
from fleetkey.core.verdicts import SignatureStatus
from fleetkey.store import capacity, fetches, inventory, phonestate, sitefetches
from fleetkey.store.records import FetchRecord
from fleetkey.store.schema import PhoneRow, SiteRow
from fleetkey.store.store import Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POSTED_AT = NOW - timedelta(days=3)
SITES = ("100000000001", "100000000002", "100000000003", "100000000004")  # the last: unposted
PHONES = 3_000
OLD_EXPIRY = date(2026, 5, 20)  # the old license: a boot with it from 2026-05-21 is expired


def license_facts() -> list[LicenseFacts]:
    found = []
    for n, serial in enumerate(SITES[:3]):
        old, new = f"{n:x}0" * 32, f"{n:x}1" * 32
        found += [
            LicenseFacts(2 * n + 1, LicenseType.SITE, serial, {}, OLD_EXPIRY,
                         LicenseState.SUPERSEDED, NOW - timedelta(days=60), None, old,
                         SignatureStatus.VALID),
            LicenseFacts(2 * n + 2, LicenseType.SITE, serial, {}, date(2026, 6, 20),
                         LicenseState.POSTED, POSTED_AT, 2 * n + 1, new, SignatureStatus.VALID),
        ]  # fmt: skip
    return found


def phone_record(rng: random.Random, mac: str, n: int) -> list[FetchRecord]:
    """A phone's site-license requests, of one of the kinds the alerts tell apart."""
    site = n % len(SITES)
    old, new = f"{site:x}0" * 32, f"{site:x}1" * 32
    boundary = datetime.combine(OLD_EXPIRY + timedelta(days=1), datetime.min.time(), UTC)
    kind = rng.randrange(7)
    if kind == 0:  # never fetched it
        return []
    at, status, digest = {
        1: (NOW - timedelta(hours=rng.randrange(1, 60)), 200, new),  # current
        2: (POSTED_AT + timedelta(seconds=rng.randrange(0, 3600)), 200, old),  # booted since
        3: (POSTED_AT - timedelta(seconds=rng.randrange(1, 3600)), 200, old),  # no boot since
        4: (NOW - timedelta(hours=rng.randrange(1, 200)), 404, None),  # answered, no digest
        5: (boundary - timedelta(microseconds=rng.randrange(0, 2)), 200, old),  # at expiry
        6: (NOW - timedelta(days=rng.randrange(0, 30)), 200, "ff" * 32),  # an unknown digest
    }[kind]
    path = f"/{SITES[site]}/000000000000-license.cfg"
    older = FetchRecord(path, "http", 200, 612, 1.0, at - timedelta(days=1), mac=mac, digest=new)
    return [older, FetchRecord(path, "http", status, 612, 1.0, at, mac=mac, digest=digest)]


def test_the_set_wise_alerts_equal_what_every_phone_says(store: Store) -> None:
    rng = random.Random(18)  # noqa: S311  # reproducible test data
    macs = [f"0004f2{i:06x}" for i in range(PHONES)]
    with store.transaction() as session:
        session.execute(
            insert(SiteRow),
            [dict(serial=s, name=s, timezone="UTC", window_start="01:00", window_end="05:00",
                  created_at=NOW) for s in SITES],
        )  # fmt: skip
        session.execute(
            insert(PhoneRow),
            [dict(mac=mac, site_serial=SITES[n % len(SITES)], model="VVX_500", created_at=NOW)
             for n, mac in enumerate(macs)],
        )  # fmt: skip
    records = [r for n, mac in enumerate(macs) for r in phone_record(rng, mac, n)]
    fetches.insert_records(store.engine, sorted(records, key=lambda r: r.at))
    licenses = license_facts()
    with store.transaction() as session:
        sites = inventory.sites(session)
        one_by_one = [
            SiteFacts(s.serial, s.timezone, tuple(inventory.macs(session, s.serial))) for s in sites
        ]
        last = [
            LastSiteFetch(f.mac, f.at, f.status, f.digest)
            for f in phonestate.last_requests(session, SITE_LICENSE_FILE)
        ]
        counted = [
            SiteFacts(s.serial, s.timezone, count=sitefetches.phones_by_site(session)[s.serial])
            for s in sites
        ]
        set_wise = sitefetches.answer(
            session, SITE_LICENSE_FILE, question(licenses), [s.serial for s in sites]
        )
    per_phone = evaluate(Snapshot(NOW, licenses, one_by_one, last))
    from_sets = evaluate(Snapshot(NOW, licenses, counted, (), site_fetches=set_wise))
    assert from_sets == per_phone
    # not vacuous: every site has phones behind for both reasons and booted expired
    kinds = [(a.kind, a.key.split(":")[1]) for a in per_phone]
    for serial in SITES[:3]:
        assert ("not-fetched", serial) in kinds
        assert ("booted-expired", serial) in kinds
    reasons = " ".join(a.message for a in per_phone if a.kind == "not-fetched")
    assert "booted since, did not get it" in reasons
    assert "no boot since" in reasons
    # the unposted site: no not-fetched alert; its phones got no digest of a known license
    assert ("not-fetched", SITES[3]) not in kinds
    assert ("booted-expired", SITES[3]) not in kinds  # its phones got no known digest


def test_each_sites_phones_count_on_the_capacity_measured_over_what_they_boot_over(
    store: Store,
) -> None:
    """Phones by the protocol of their newest fetch, per site, summed up by the database; the
    measurement each site counts on: over its protocol (the lowest of several), else the
    newest of any, saying why."""
    phones = {"100000000011": ["http", "https", "http"], "100000000012": ["ftp", "ftp"],
              "100000000013": ["tftp"], "100000000014": [None]}  # fmt: skip
    with store.transaction() as session:
        session.execute(
            insert(SiteRow),
            [dict(serial=s, name=s, timezone="UTC", window_start="01:00", window_end="05:00",
                  created_at=NOW) for s in phones],
        )  # fmt: skip
        session.execute(
            insert(PhoneRow),
            [dict(mac=f"{site[-2:]}04f20000{n:02x}", site_serial=site, model="VVX_500",
                  created_at=NOW) for site, over in phones.items() for n in range(len(over))],
        )  # fmt: skip
    records = [
        FetchRecord("/000000000000-license.cfg", protocol, 200, 1, 1.0, NOW,
                    mac=f"{site[-2:]}04f20000{n:02x}")
        for site, over in phones.items() for n, protocol in enumerate(over) if protocol
    ]  # fmt: skip
    # a newer fetch decides: the first ftp phone fetched over TFTP before
    records.append(records[3]._replace(protocol="tftp", at=NOW - timedelta(hours=1)))
    fetches.insert_records(store.engine, records)
    clock = FixedClock(NOW)
    with store.transaction() as session:
        capacity.record(session, clock, "http://a", 500.0, {"storm": "license-lapse"})
        capacity.record(session, clock, "http://a", 5.0, {"storm": "firmware-change"})
        capacity.record(session, clock, "ftp://a", 40.0, {"storm": "license-lapse"})
        booting = phonestate.protocols_by_site(session)
        assert booting == {"100000000011": {"http": 2, "https": 1},
                           "100000000012": {"ftp": 2}, "100000000013": {"tftp": 1}}  # fmt: skip
        asked = phonestate.protocols_by_site(session, ["100000000012", "100000000014"])
        assert asked == {"100000000012": {"ftp": 2}}  # only the sites asked for
        chosen = {
            site: capacity.choose(
                session, capacity.booting_over(Counter(booting.get(site, {}))), len(over)
            )
            for site, over in phones.items()
        }
    said = {site: (c.measurement.requests_per_s, c.over) for site, c in chosen.items() if c}
    assert said == {
        "100000000011": (500.0, "over http, as 3 of the 3 phones boot"),
        "100000000012": (40.0, "over ftp, as 2 of the 2 phones boot"),
        "100000000013": (40.0, "over ftp: none was measured over tftp, which these phones "
                               "boot over"),
        "100000000014": (40.0, "over ftp: no phone of these has fetched yet, so the protocol "
                               "they boot over is unknown"),
    }  # fmt: skip
