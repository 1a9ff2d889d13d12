"""The admin API's inventory upkeep (issue 24, item 4): sites read, changed and removed by
serial or name, phones removed; each refusal a clear error in the API's one shape, changing
nothing, and each change audited as the CLI's are."""

from __future__ import annotations

from typing import Any

import pytest

from fleetkey.clock import FixedClock
from fleetkey.core.rollout.windows import Window
from fleetkey.store import audit, inventory, phone_import
from fleetkey.store.records import Site

from tests.helpers import Api

PHONES = b"mac,site,model,contact\n0004f2000001,Berlin,VVX_500,sip:1001@pbx.test\n"


@pytest.fixture
def fleet(api: Api) -> Api:
    clock = FixedClock()
    with api.store.transaction() as session:
        for serial, name in (("100000000001", "Berlin"), ("100000000002", "New York")):
            window = Window.parse("22:00-05:00")
            inventory.add_site(session, clock, "t", Site(serial, name, "UTC", window))
        phone_import.import_phones(session, clock, "t", PHONES, source="p.csv")
    return api


def state(api: Api) -> tuple[Any, Any, int]:
    sites = api.ask("GET", "/api/sites").json()
    phones = api.ask("GET", "/api/phones").json()
    with api.store.transaction() as session:
        events = len(audit.events(session))
    return sites, phones, events


def test_a_site_is_read_by_serial_or_name(fleet: Api) -> None:
    assert fleet.ask("GET", "/api/sites/new%20york").json()["serial"] == "100000000002"
    assert fleet.ask("GET", "/api/sites/100000000001").json()["name"] == "Berlin"
    assert fleet.ask("GET", "/api/phones?site=berlin").json()[0]["mac"] == "0004f2000001"


def test_patch_changes_what_is_given_and_null_clears_the_contact(fleet: Api) -> None:
    fleet.ask("PATCH", "/api/sites/Berlin", json={"contact": "ops"})
    reply = fleet.ask("PATCH", "/api/sites/Berlin", json={"window": "23:00-04:00", "contact": None})
    assert reply.status_code == 200
    assert reply.json()["changed"] == {
        "window_start": {"old": "22:00", "new": "23:00"},
        "window_end": {"old": "05:00", "new": "04:00"},
        "contact": {"old": "ops", "new": None},
    }
    assert reply.json()["site"]["name"] == "Berlin"
    with fleet.store.transaction() as session:
        event = audit.events(session, limit=1)[0]
    assert (event.actor, event.action, event.subject) == (
        "admin API",
        "site.update",
        "100000000001",
    )


def test_delete_refuses_a_site_with_phones_unless_forced(fleet: Api) -> None:
    before = state(fleet)
    refused = fleet.ask("DELETE", "/api/sites/Berlin")
    assert refused.status_code == 409
    assert refused.json()["error"] == "conflict"
    assert refused.json()["detail"] == (
        "site 100000000001 (Berlin) still has 1 phone: nothing was removed"
    )
    assert state(fleet) == before
    forced = fleet.ask("DELETE", "/api/sites/Berlin?force=true")
    assert forced.status_code == 200
    assert forced.json()["phones_removed"] == 1
    assert fleet.ask("GET", "/api/phones").json() == []
    with fleet.store.transaction() as session:
        assert audit.verify(session).ok


def test_delete_phone(fleet: Api) -> None:
    reply = fleet.ask("DELETE", "/api/phones/00:04:f2:00:00:01")
    assert reply.json() == {"removed": ["0004f2000001"], "posted_keys_kept": []}
    assert fleet.ask("GET", "/api/phones/0004f2000001").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error", "detail"),
    [
        ("GET", "/api/sites/Tokio", None, 404, "not-found", "site 'Tokio' does not exist"),
        ("DELETE", "/api/sites/100000000009", None, 404, "not-found", "site 100000000009 does"),
        ("PATCH", "/api/sites/Berlin", {"timezone": "Mars/Olympus"}, 422, "input", "IANA"),
        ("PATCH", "/api/sites/Berlin", {"window": "5-6"}, 422, "input", "not HH:MM-HH:MM"),
        ("PATCH", "/api/sites/Berlin", {"name": "NEW YORK"}, 409, "conflict", "is taken by"),
        ("PATCH", "/api/sites/Berlin", {"name": 7}, 422, "invalid-request", "name"),
        ("DELETE", "/api/phones/0004f2000099", None, 404, "not-found", "1 phone not in the"),
        ("DELETE", "/api/phones/nope", None, 422, "input", "MAC 'nope' is not a MAC address"),
        ("DELETE", "/api/sites/Berlin?force=maybe", None, 422, "invalid-request", "force"),
    ],
    ids=[
        "unknown name",
        "unknown serial",
        "zone",
        "window",
        "taken name",
        "name not text",
        "unknown phone",
        "bad mac",
        "bad force",
    ],
)
def test_refused_requests_change_nothing(
    fleet: Api,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    error: str,
    detail: str,
) -> None:
    before = state(fleet)
    reply = fleet.ask(method, path, json=body) if body is not None else fleet.ask(method, path)
    assert reply.status_code == status
    assert reply.json()["error"] == error
    assert detail in reply.json()["detail"]
    assert state(fleet) == before
