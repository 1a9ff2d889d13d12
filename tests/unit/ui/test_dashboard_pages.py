"""The dashboard's pages in process: each renders the store's numbers, each links onward."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from fleetkey.store import fetches, registry
from fleetkey.store.records import FetchRecord

from tests.dashboard import Dashboard
from tests.helpers import SITE_SERIAL, Fleetkey

PAGES = [
    "/ui/",
    "/ui/sites",
    "/ui/phones",
    "/ui/phones/0004f2000001",
    "/ui/licenses",
    "/ui/licenses/1",
    "/ui/rollouts",
    "/ui/alerts",
    "/ui/audit",
]


def test_every_page_renders_once_signed_in(dashboard: Dashboard) -> None:
    assert dashboard.sign_in().status_code == 303
    for path in PAGES:
        answer = dashboard.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert answer.headers["content-type"].startswith("text/html")


def test_sites_page_counts_the_phones_at_risk(dashboard: Dashboard) -> None:
    dashboard.sign_in()
    page = dashboard.get("/ui/sites").text
    row = re.search(rf'<tr data-site="{SITE_SERIAL}">(.*?)</tr>', page, re.S)
    assert row
    assert re.search(r"data-at-risk href=\"[^\"]*current=no\">3<", row.group(1))


def test_the_audit_page_verifies_the_chain_when_asked(dashboard: Dashboard) -> None:
    dashboard.sign_in()
    assert "verify the chain now" in dashboard.get("/ui/audit").text
    verified = dashboard.get("/ui/audit?verify=yes").text
    assert re.search(r"The chain verifies: \d+ events", verified)


def test_the_audit_page_says_details_in_words_as_the_cli_does(dashboard: Dashboard) -> None:
    dashboard.sign_in()
    details = re.findall(r'<td class="details">(.*?)</td>', dashboard.get("/ui/audit").text)
    assert any("rows changed: 1" in d for d in details)  # the audited rows' hash left out
    assert not [d for d in details if re.search(r"\{|\[|&#39;|audited_rows", d)]  # no repr


def test_the_phones_last_served_a_version_are_the_ones_the_cli_names(
    dashboard: Dashboard, fleetkey: Fleetkey
) -> None:
    with dashboard.store.transaction() as session:
        digest = registry.get(session, 1).digest
    now = dashboard.clock.now()
    fetches.insert_records(
        dashboard.store.engine,
        [
            FetchRecord(
                "/000000000000-license.cfg", "http", 200, 9, 1.0, now, mac=mac, digest=digest
            )
            for mac in ("0004f2000000", "0004f2000002")
        ]
        + [
            FetchRecord(
                "/000000000000-license.cfg",
                "http",
                200,
                9,
                1.0,
                now - timedelta(minutes=1),
                mac="0004f2000001",
                digest="0" * 64,
            )
        ],
    )
    said_by_cli = []
    for mac in ("0004f2000000", "0004f2000001", "0004f2000002"):
        shown = json.loads(fleetkey("phones", "show", mac, "--json").output)
        site = next(item for item in shown["licenses"] if item["type"] == "Site")
        if site["last_served"] and site["last_served"]["license_id"] == 1:
            said_by_cli.append(mac)
    dashboard.sign_in()
    page = dashboard.get("/ui/phones?license=1").text
    listed = re.findall(r'<td><a href="/ui/phones/([0-9a-f]{12})">', page)
    assert listed == said_by_cli == ["0004f2000000", "0004f2000002"]
    assert re.search(r"<strong data-total>2</strong>", page)
    assert 'href="/ui/phones?license=1"' in dashboard.get("/ui/licenses/1").text
