"""The admin API's license routes serve no key whose signature is not valid, unless an operator
accepts it with a reason that the audit trail keeps, and no key that takes something from
phones unless forced; dry runs, rollback, trust and alert acknowledgement, as the CLI has them."""

from __future__ import annotations

from datetime import date

from fleetkey.clock import FixedClock
from fleetkey.core.codec import parse_license_file, serialize_keys
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.signing import TrustedKeys
from fleetkey.store import audit, posting, registry
from fleetkey.store.records import LicenseOrigin
from fleetkey.testing import make_license, trusted_keys_for

from tests.helpers import VENDOR_FILE, Api

CLOCK = FixedClock()  # 2026-01-01, as the api fixture's
SITE = "100000000001"


def imported_vendor_key(api: Api) -> int:
    data = VENDOR_FILE.read_bytes()
    (key,) = parse_license_file(data).keys
    with api.store.transaction() as session:
        return registry.record(
            session,
            FixedClock(),
            "t",
            key,
            TrustedKeys().check(key),
            content=data,
            file_name="000000000000-license.cfg",
            origin=LicenseOrigin.IMPORTED,
        ).id


def test_posting_an_unverifiable_key_is_a_409_until_a_reason_is_given(api: Api) -> None:
    license_id = imported_vendor_key(api)
    refused = api.ask("POST", f"/api/licenses/{license_id}/post")
    assert refused.status_code == 409
    assert refused.json()["error"] == "conflict"
    assert refused.json()["detail"].startswith(
        f"license {license_id} (Site 100000001007) has an unverifiable signature"
    )
    assert refused.json()["hint"].startswith('send "accept_unverified": "REASON"')
    place = api.data.provisioning / "100000001007" / "000000000000-license.cfg"
    assert not place.exists()
    reason = {"accept_unverified": "vendor file, change 1234"}
    expired = api.ask("POST", f"/api/licenses/{license_id}/post", json=reason)
    assert (expired.status_code, expired.json()["error"]) == (409, "unsafe-post")
    assert expired.json()["detail"] == (
        f"posting license {license_id} (Site 100000001007) would take from phones what they "
        "have:\n  it expired on 2015-03-16: phones refuse an expired key (R5)\nit needs force"
    )
    assert not place.exists()
    posted = api.ask("POST", f"/api/licenses/{license_id}/post", json=reason | {"force": True})
    assert posted.status_code == 200, posted.text
    assert posted.json()["license"]["state"] == "posted"
    assert posted.json()["files"] == [str(place)]
    assert place.read_bytes() == VENDOR_FILE.read_bytes()
    assert not (api.data.provisioning / "000000000000-license.cfg").exists()
    with api.store.transaction() as session:
        event = audit.events(session, limit=1)[0]
    assert (event.actor, event.action) == ("admin API", "license.post")
    assert event.details["accepted_unverified"] == {
        "signature": "unverifiable",
        "reason": "vendor file, change 1234",
    }
    assert event.details["forced"] == [
        "it expired on 2015-03-16: phones refuse an expired key (R5)"
    ]


def site_keys(api: Api, *ends: date) -> list[int]:
    """Site keys for 100000000001 lasting to each of ``ends``, each recorded; the first posted."""
    ids = []
    with api.store.transaction() as session:
        for end in ends:
            key = make_license(serial=SITE, type=LicenseType.SITE, expires=end)
            ids.append(
                registry.record(
                    session, CLOCK, "t", key, trusted_keys_for().check(key),
                    content=serialize_keys([key]), file_name="000000000000-license.cfg",
                ).id
            )  # fmt: skip
        posting.post(session, CLOCK, "t", ids[0])
    return ids


def test_a_dry_run_says_what_would_be_lost_and_changes_nothing(api: Api) -> None:
    first, shorter = site_keys(api, date(2027, 6, 30), date(2026, 1, 20))
    reply = api.ask("POST", f"/api/licenses/{shorter}/post", json={"dry_run": True})
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert (document["dry_run"], document["needs_force"], document["replaces"]) == (
        True,
        True,
        first,
    )
    assert document["changes"] == [
        {
            "slot": 0,
            "name": "corporate-directory",
            "before": "2027-06-30",
            "after": "2026-01-20",
            "change": "shortened",
        }
    ]
    assert document["losses"] == [
        f"it lasts until 2026-01-20, license {first} until 2027-06-30: phones that installed "
        f"license {first} ignore it (R7)",
        "corporate-directory would end on 2026-01-20 instead of 2027-06-30 (526 days lost)",
    ]
    with api.store.transaction() as session:
        assert registry.get(session, shorter).state is LicenseState.ISSUED
    refused = api.ask("POST", f"/api/licenses/{shorter}/post", json={})
    assert (refused.status_code, refused.json()["error"]) == (409, "unsafe-post")


def test_rollback_posts_the_previous_key_again(api: Api) -> None:
    first, second = site_keys(api, date(2027, 6, 30), date(2028, 6, 30))
    api.ask("POST", f"/api/licenses/{second}/post").raise_for_status()
    reply = api.ask("POST", "/api/licenses/rollback", json={"serial": SITE})
    assert (reply.status_code, reply.json()["error"]) == (409, "unsafe-post")
    assert "would end on 2027-06-30 instead of 2028-06-30" in reply.json()["detail"]
    reply = api.ask("POST", "/api/licenses/rollback", json={"serial": SITE, "force": True})
    assert reply.status_code == 200, reply.text
    assert (reply.json()["license"]["id"], reply.json()["replaces"]) == (first, second)
    place = api.data.provisioning / SITE / "000000000000-license.cfg"
    with api.store.transaction() as session:
        assert place.read_bytes() == registry.content(session, first)
        assert registry.get(session, second).state is LicenseState.SUPERSEDED
        assert audit.events(session, limit=1)[0].action == "license.rollback"
    again = api.ask("POST", "/api/licenses/rollback", json={"serial": SITE})
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"license {first} (Site {SITE}) is the first key posted for {SITE}: there is no "
        "previous key to post again"
    )
    for body, status in (({"serial": "nope"}, 422), ({"serial": "100000000009"}, 404)):
        assert api.ask("POST", "/api/licenses/rollback", json=body).status_code == status


def test_trust_and_ack_through_the_api(api: Api) -> None:
    license_id = imported_vendor_key(api)
    assert api.ask("POST", f"/api/licenses/{license_id}/trust", json={}).status_code == 422
    trusted = api.ask(
        "POST", f"/api/licenses/{license_id}/trust", json={"reason": "the reseller's file"}
    )
    assert (trusted.status_code, trusted.json()["signature"]) == (200, "trusted-by-operator")
    again = api.ask("POST", f"/api/licenses/{license_id}/trust", json={"reason": "again"})
    assert again.status_code == 409
    site_keys(api, date(2026, 1, 20))  # posted; lapses in 19 days: a lead-time alert
    checked = api.ask("POST", "/api/alerts/check").json()
    (key,) = [k for k in checked["fired"] if k.startswith("lead-time:")]
    acked = api.ask("POST", "/api/alerts/ack", json={"key": key, "until": "2026-01-10"})
    assert acked.status_code == 200, acked.text
    assert acked.json()["acked"] == {
        "at": "2026-01-01T00:00:00+00:00",
        "by": "admin API",
        "until": "2026-01-11T00:00:00+00:00",
    }
    for body, status in (
        ({"key": "nope"}, 404),
        ({"key": key, "until": "2025-12-31"}, 422),
        ({"key": key, "until": "31.12.2026"}, 422),
    ):
        assert api.ask("POST", "/api/alerts/ack", json=body).status_code == status


def test_a_reason_is_bounded(api: Api) -> None:
    license_id = imported_vendor_key(api)
    reply = api.ask(
        "POST", f"/api/licenses/{license_id}/post", json={"accept_unverified": "x" * 501}
    )
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("body.accept_unverified: ")


def test_refusals_name_the_inputs_the_route_takes_and_never_a_cli_command(api: Api) -> None:
    """Store errors carry the CLI's hints (``--force``, ``fleetkey licenses post ID
    --dry-run``): the API names its own inputs, as each route takes them, or gives no hint."""
    site = {"serial": SITE, "name": "HQ", "timezone": "UTC", "window": "22:00-05:00"}
    other = site | {"serial": "100000000002", "name": "Branch"}
    for body in (site, other):
        assert api.ask("POST", "/api/sites", json=body).status_code == 201
    first, shorter = site_keys(api, date(2027, 6, 30), date(2026, 1, 20))
    vendor = imported_vendor_key(api)
    issue = {"type": "site", "serial": SITE, "features": ["corporate-directory"],
             "expires": "2026-02-01", "post": True}  # fmt: skip
    refusals = [
        ("DELETE", f"/api/sites/{SITE}", {}, 409,
         "send ?force=true to do it anyway: the audit trail keeps what was lost"),
        ("POST", f"/api/licenses/{shorter}/post", {"json": {}}, 409,
         '"dry_run": true shows the change feature by feature; send "force": true to do it '
         "anyway: the audit trail keeps what was lost"),
        ("POST", "/api/licenses", {"json": issue}, 409,
         'send "force": true to do it anyway: the audit trail keeps what was lost'),
        ("POST", f"/api/licenses/{vendor}/post", {"json": {}}, 409,
         'send "accept_unverified": "REASON" to serve it anyway: the audit trail keeps the '
         "reason and who gave it"),
        ("POST", "/api/licenses/rollback", {"json": {"serial": SITE}}, 409, None),
        ("POST", "/api/sites", {"json": site}, 409, None),
        ("PATCH", "/api/sites/Branch", {"json": {"name": "hq"}}, 409,
         "sites are named by serial or by name, so names are unique"),
        ("POST", f"/api/licenses/{first}/post", {"json": {}}, 409, None),
        ("DELETE", "/api/phones/xyz", {}, 422, None),
        ("POST", "/api/licenses", {"json": issue | {"features": ["fax"]}}, 422, None),
    ]  # fmt: skip
    for method, path, body, status, hint in refusals:
        reply = api.ask(method, path, **body)
        assert reply.status_code == status, (path, reply.text)
        assert reply.json().get("hint") == hint, (path, reply.text)
        assert "fleetkey " not in reply.text, (path, reply.text)
        assert " --" not in reply.text, (path, reply.text)
