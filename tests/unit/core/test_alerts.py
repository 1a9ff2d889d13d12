"""Alert rules on facts: staged lead time, R7, fetches, R8, bad files, storm forecast."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from fleetkey.core.alerts import (
    BadFile,
    LastSiteFetch,
    LicenseFacts,
    SiteFacts,
    Snapshot,
    evaluate,
)
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.terms import NEVER
from fleetkey.core.verdicts import SignatureStatus

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
SITE = "100000000001"
PHONES = tuple(f"0004f2{i:06x}" for i in range(4))


def site_license(
    id: int, expires: date, state: LicenseState = LicenseState.POSTED, **extra: object
) -> LicenseFacts:
    fields: dict[str, object] = {
        "id": id,
        "type": LicenseType.SITE,
        "serial": SITE,
        "terms": {0: expires},
        "expires_on": expires,
        "state": state,
        "posted_at": NOW - timedelta(days=30),
        "succeeds_id": None,
        "digest": f"{id:064x}",
        "signature": SignatureStatus.VALID,
    }
    fields.update(extra)
    return LicenseFacts(**fields)  # type: ignore[arg-type]


def snapshot(
    *licenses: LicenseFacts, fetches: tuple[LastSiteFetch, ...] = (), **extra: object
) -> Snapshot:
    return Snapshot(
        now=NOW,
        licenses=licenses,
        sites=[SiteFacts(SITE, "Europe/Berlin", PHONES)],
        last_fetches=fetches
        or tuple(LastSiteFetch(m, NOW - timedelta(days=1), 200, f"{1:064x}") for m in PHONES),
        **extra,  # type: ignore[arg-type]
    )


def kinds(found: list[object]) -> dict[str, str]:
    return {a.key: a.severity for a in found}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("days_left", "key", "severity"),
    [
        (61, None, None),
        (60, "lead-time:Site:100000000001:1:60d", "info"),
        (31, "lead-time:Site:100000000001:1:60d", "info"),
        (30, "lead-time:Site:100000000001:1:30d", "warning"),
        (15, "lead-time:Site:100000000001:1:30d", "warning"),
        (14, "lead-time:Site:100000000001:1:14d", "warning"),
        (7, "lead-time:Site:100000000001:1:7d", "critical"),
        (1, "lead-time:Site:100000000001:1:1d", "critical"),
        (0, "lead-time:Site:100000000001:1:1d", "critical"),
        (-1, "expired:Site:100000000001:1:expired", "critical"),
    ],
)
def test_lead_time_alerts_fire_once_per_stage(
    days_left: int, key: str | None, severity: str | None
) -> None:
    found = kinds(evaluate(snapshot(site_license(1, TODAY + timedelta(days=days_left)))))
    lead = {k: v for k, v in found.items() if k.startswith(("lead-time", "expired"))}
    assert lead == ({key: severity} if key else {})


def test_an_issued_but_unposted_successor_is_named_in_the_lead_time_alert() -> None:
    found = evaluate(
        snapshot(
            site_license(1, TODAY + timedelta(days=20)),
            site_license(2, TODAY + timedelta(days=400), state=LicenseState.ISSUED),
        )
    )
    lead = next(a for a in found if a.kind == "lead-time")
    assert "(license 2 is issued but not posted)" in lead.message


def test_a_never_expiring_license_raises_no_lead_time_or_storm() -> None:
    forever = replace(site_license(1, TODAY), terms={0: NEVER}, expires_on=None)
    assert [a.kind for a in evaluate(snapshot(forever))] == []


@pytest.mark.parametrize(("new_days", "severity"), [(100, "critical"), (200, "warning")])
def test_a_successor_no_longer_than_its_predecessor_is_flagged(
    new_days: int, severity: str
) -> None:
    old = site_license(1, TODAY + timedelta(days=200), state=LicenseState.SUPERSEDED)
    new = site_license(2, TODAY + timedelta(days=new_days), succeeds_id=1)
    found = {a.key: a for a in evaluate(snapshot(old, new))}
    assert found["shorter-successor:2"].severity == severity
    assert "R7" in found["shorter-successor:2"].message


def test_longer_successor_is_fine() -> None:
    old = site_license(1, TODAY + timedelta(days=10), state=LicenseState.SUPERSEDED)
    new = site_license(2, TODAY + timedelta(days=400), succeeds_id=1)
    assert "shorter-successor:2" not in kinds(evaluate(snapshot(old, new)))


def test_phones_behind_the_posted_license_are_counted_by_why() -> None:
    current = site_license(2, TODAY + timedelta(days=400), posted_at=NOW - timedelta(days=2))
    fetches = (
        LastSiteFetch(PHONES[0], NOW - timedelta(hours=1), 200, current.digest),  # has it
        LastSiteFetch(PHONES[1], NOW - timedelta(hours=1), 404, None),  # booted, got nothing
        LastSiteFetch(PHONES[2], NOW - timedelta(days=5), 200, f"{1:064x}"),  # not since
    )  # PHONES[3] never fetched at all
    alert = next(a for a in evaluate(snapshot(current, fetches=fetches)) if a.kind == "not-fetched")
    assert alert.message.startswith("3 of 4 phones of site 100000000001 have not fetched license 2")
    assert alert.details["sample"] == {
        "booted since, did not get it": [PHONES[1]],
        "no boot since": [PHONES[2], PHONES[3]],
    }
    assert alert.severity == "warning"


def test_phones_that_booted_with_an_expired_license_need_check_sync() -> None:
    lapsed = site_license(1, TODAY - timedelta(days=3), state=LicenseState.SUPERSEDED)
    current = site_license(2, TODAY + timedelta(days=400), succeeds_id=1)
    fetches = (
        LastSiteFetch(PHONES[0], NOW - timedelta(days=1), 200, lapsed.digest),  # after expiry
        LastSiteFetch(PHONES[1], NOW - timedelta(days=5), 200, lapsed.digest),  # before expiry
    )
    alert = next(
        a
        for a in evaluate(snapshot(lapsed, current, fetches=fetches))
        if a.kind == "booted-expired"
    )
    assert alert.details == {"phones": 1, "sample": [PHONES[0]]}
    assert "(R8)" in alert.message


def test_bad_signatures_and_bad_files_are_critical() -> None:
    forged = site_license(1, TODAY + timedelta(days=400), signature=SignatureStatus.INVALID)
    found = kinds(
        evaluate(snapshot(forged, bad_files=[BadFile("x-license.cfg", "does not parse")]))
    )
    assert found["bad-signature:1"] == "critical"
    assert found["bad-file:x-license.cfg"] == "critical"


@pytest.mark.parametrize(
    ("capacity", "severity"), [(None, "warning"), (0.5, "critical"), (1e6, "warning")]
)
def test_storm_forecast_names_the_reboot_time_and_load(
    capacity: float | None, severity: str
) -> None:
    lapsing = site_license(1, date(2027, 3, 20))
    found = [
        a
        for a in evaluate(snapshot(lapsing, capacity=capacity, boot_requests=10, boot_s=60))
        if a.kind == "storm"
    ]
    assert len(found) == 1
    assert found[0].severity == severity
    assert "reboot at 2027-03-21 02:00 Europe/Berlin" in found[0].message
    assert found[0].details["requests"] == 40


def test_evaluation_is_stable() -> None:
    facts = snapshot(site_license(1, TODAY + timedelta(days=20)))
    assert evaluate(facts) == evaluate(facts)
