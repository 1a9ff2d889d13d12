"""Each store value has one JSON document, the one the CLI's --json and the admin API share."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fleetkey.core.rollout.windows import Window
from fleetkey.store.records import FetchRecord, Phone, Site, fetch_json, phone_json, site_json

AT = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)


def test_a_site_keeps_its_documented_window_keys() -> None:
    site = Site("100000000001", "HQ", "Europe/Berlin", Window.parse("22:00-05:00"))
    assert site_json(site) == {
        "serial": "100000000001",
        "name": "HQ",
        "timezone": "Europe/Berlin",
        "window_start": "22:00",
        "window_end": "05:00",
        "contact": None,
    }


def test_a_phone_says_when_it_was_last_seen_in_iso_form() -> None:
    seen = phone_json(Phone("0004f2000001", "100000000001", "VVX_500", last_seen_at=AT))
    never = phone_json(Phone("0004f2000002", "100000000001", "VVX_500"))
    assert seen["last_seen_at"] == "2027-03-01T09:30:00+00:00"
    assert never["last_seen_at"] is None
    assert set(seen) == {
        "mac", "site", "model", "firmware", "prov_user", "has_password", "sip_contact",
        "last_address", "last_user_agent", "last_seen_at",
    }  # fmt: skip
    json.dumps(seen)


def test_a_fetch_record_is_plain_json() -> None:
    record = FetchRecord("/a.cfg", "http", 200, 12, 0.5, AT, mac="0004f2000001")
    document = fetch_json(record)
    assert document["at"] == "2027-03-01T09:30:00+00:00"
    assert (document["path"], document["status"], document["mac"]) == (
        "/a.cfg",
        200,
        "0004f2000001",
    )
    json.dumps(document)
