"""The admin API's license routes serve no key whose signature is not valid, unless an operator
accepts it with a reason that the audit trail keeps."""

from __future__ import annotations

from fleetkey.clock import FixedClock
from fleetkey.core.codec import parse_license_file
from fleetkey.core.signing import TrustedKeys
from fleetkey.store import audit, registry
from fleetkey.store.records import LicenseOrigin

from tests.helpers import VENDOR_FILE
from tests.unit.api.conftest import Api


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
    assert "reason to accept it unverified" in refused.json()["hint"]
    assert not (api.data.provisioning / "000000000000-license.cfg").exists()
    posted = api.ask(
        "POST",
        f"/api/licenses/{license_id}/post",
        json={"accept_unverified": "vendor file, change 1234"},
    )
    assert posted.status_code == 200, posted.text
    assert posted.json()["state"] == "posted"
    assert (api.data.provisioning / "000000000000-license.cfg").read_bytes() == (
        VENDOR_FILE.read_bytes()
    )
    with api.store.transaction() as session:
        event = audit.events(session, limit=1)[0]
    assert (event.actor, event.action) == ("admin API", "license.post")
    assert event.details["accepted_unverified"] == {
        "signature": "unverifiable",
        "reason": "vendor file, change 1234",
    }


def test_a_reason_is_bounded(api: Api) -> None:
    license_id = imported_vendor_key(api)
    reply = api.ask(
        "POST", f"/api/licenses/{license_id}/post", json={"accept_unverified": "x" * 501}
    )
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("body.accept_unverified: ")
