"""The dashboard's pages in process: each renders the store's numbers, each links onward."""

from __future__ import annotations

import re

from tests.dashboard import Dashboard
from tests.helpers import SITE_SERIAL

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
