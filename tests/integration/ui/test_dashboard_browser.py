"""The dashboard in Debian's Chromium, driven by Playwright, against a real `fleetkey serve`
with a seeded store: sign-in, every page with the store's numbers, filters, a live rollout
paused from the page and audited, no data without a session, a forged form refused, and what
phones wrote shown as text."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter

import httpx
from playwright.sync_api import Browser, Page, Route

from fleetkey.authority.datadir import DataDir

from tests.browsing import (
    FETCHED,
    HOSTILE_AGENT,
    HOSTILE_MAC,
    SITES,
    Fleet,
    number,
    sign_in,
)
from tests.dashboard import SITE_FILE, site_file
from tests.serving import fleetkey_command, start_server, wait_for

PAGES = ("/ui/", "/ui/sites", "/ui/phones", f"/ui/phones/{HOSTILE_MAC}", "/ui/licenses",
         "/ui/licenses/1", "/ui/rollouts", "/ui/rollouts/1", "/ui/alerts", "/ui/audit")  # fmt: skip


def signed_in_page(browser: Browser, fleet: Fleet, path: str = "/ui/") -> Page:
    page = browser.new_context().new_page()
    sign_in(page, fleet, path)
    return page


def test_signing_in_leads_to_the_page_asked_for_with_a_strict_session_cookie(
    browser: Browser, fleet: Fleet
) -> None:
    page = signed_in_page(browser, fleet, "/ui/phones")
    assert page.locator("h1").inner_text() == "Phones"
    cookie = next(c for c in page.context.cookies() if c["name"] == "fleetkey_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert 3500 < cookie["expires"] - time.time() <= 3600
    fleet.shoot(page, "phones")


def test_a_wrong_token_is_refused_on_the_sign_in_page(browser: Browser, fleet: Fleet) -> None:
    page = browser.new_context().new_page()
    page.goto(fleet.url("/ui/"))
    page.fill("#token", "fk_not-the-token")
    page.click("button[type=submit]")
    assert "that is not the admin token" in page.locator(".error").inner_text()
    assert "fleetkey_session" not in {c["name"] for c in page.context.cookies()}
    fleet.shoot(page, "signin-refused")


def test_every_page_renders_the_seeded_store(browser: Browser, fleet: Fleet) -> None:
    page = signed_in_page(browser, fleet)
    for path in PAGES:
        answer = page.goto(fleet.url(path))
        assert answer is not None
        assert answer.status == 200, path
        assert page.locator("main h1, main h2").count() > 0, path
        fleet.shoot(page, path.strip("/").replace("/", "-") or "overview")
    page.goto(fleet.url("/ui/licenses/1"))  # cards side by side start at the same height
    tops = page.locator(".grid > .card").evaluate_all(
        "cards => cards.map(c => c.getBoundingClientRect().top)"
    )
    assert tops[0] == tops[1]


def test_no_page_is_wider_than_a_narrow_window(browser: Browser, fleet: Fleet) -> None:
    """At 800 px (a terminal-sized window) a page scrolls only down: a wide table scrolls
    sideways in its own box, the rest wraps."""
    page = browser.new_context(viewport={"width": 800, "height": 900}).new_page()
    sign_in(page, fleet)
    for path in (*PAGES, "/ui/phones?current=no"):
        page.goto(fleet.url(path))
        width = page.evaluate("document.documentElement.scrollWidth")
        fleet.shoot(page, "narrow-" + (path.strip("/").replace("/", "-") or "overview"))
        assert width <= 800, (path, width)
    page.goto(fleet.url("/ui/phones"))  # a row of the list is a line: the User-Agent clipped
    heights = page.locator("#phones tbody tr").evaluate_all(
        "rows => rows.map(r => r.getBoundingClientRect().height)"
    )
    assert max(heights) < 2.5 * page.evaluate(
        "parseFloat(getComputedStyle(document.body).lineHeight)"
    )


def test_the_overview_counts_are_the_stores(browser: Browser, fleet: Fleet) -> None:
    page = signed_in_page(browser, fleet)
    phones = fleet.json("phones", "list")
    seen_recently = sum(1 for p in phones if p["last_seen_at"])
    assert sum(number(page, f'[data-total="{s}"]') for s in ("5m", "24h", "older", "never")) == (
        len(phones)
    )
    assert number(page, '[data-total="5m"]') == seen_recently == FETCHED
    for serial, _, count, _ in SITES:
        row = page.locator(f'#seen tr[data-site="{serial}"]')
        assert sum(int(a.inner_text()) for a in row.locator("a[data-count]").all()) == count
    severities = Counter(a["severity"] for a in fleet.json("alerts")["alerts"])
    for severity in ("critical", "warning", "info"):
        assert number(page, f'[data-severity="{severity}"]') == severities[severity]
    page.click('[data-total="5m"]')  # a number links to the list behind it
    assert number(page, "[data-total]") == FETCHED


def test_the_sites_page_says_who_fetched_the_posted_license(browser: Browser, fleet: Fleet) -> None:
    page = signed_in_page(browser, fleet, "/ui/sites")
    hq = page.locator(f'#sites tr[data-site="{SITES[0][0]}"]')
    assert int(hq.locator("[data-fetched]").inner_text()) == FETCHED
    assert int(hq.locator("[data-at-risk]").inner_text()) == SITES[0][2] - FETCHED
    hq.locator("[data-at-risk]").click()
    assert number(page, "[data-total]") == SITES[0][2] - FETCHED


def test_filters_narrow_the_phone_table(browser: Browser, fleet: Fleet) -> None:
    page = signed_in_page(browser, fleet, "/ui/phones")
    assert number(page, "[data-total]") == 2000
    page.select_option("select[name=site]", SITES[1][0])
    page.click("form.filters button")
    assert number(page, "[data-total]") == SITES[1][2]
    page.select_option("select[name=model]", "VVX_411")
    page.click("form.filters button")
    expected = sum(
        1
        for p in fleet.json("phones", "list")
        if p["site"] == SITES[1][0] and p["model"] == "VVX_411"
    )
    assert number(page, "[data-total]") == expected
    page.goto(fleet.url("/ui/phones?q=0004f20001"))  # HQ's 0004f2000100 to 0004f20001ff
    assert number(page, "[data-total]") == 256
    page.goto(fleet.url("/ui/phones?feature=vqmon"))
    assert number(page, "[data-total]") == 1
    fleet.shoot(page, "phones-filtered")


def test_without_a_session_every_page_is_the_sign_in_page(browser: Browser, fleet: Fleet) -> None:
    page = browser.new_context().new_page()
    for path in PAGES:
        page.goto(fleet.url(path))
        assert page.url.startswith(fleet.url("/ui/login?next=")), path
        assert page.locator("#token").count() == 1
        assert page.locator("table").count() == 0
        assert HOSTILE_AGENT not in page.content()


def test_what_phones_wrote_is_shown_as_text(browser: Browser, fleet: Fleet) -> None:
    page = signed_in_page(browser, fleet, f"/ui/phones/{HOSTILE_MAC}")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    assert page.locator("#agent").inner_text() == HOSTILE_AGENT
    page.click(f"#logs a:has-text('{HOSTILE_MAC}-app.log')")
    assert "<script>window.pwned=2</script>" in page.locator("#log").inner_text()
    page.wait_for_timeout(300)
    assert page.evaluate("window.pwned") is None
    assert dialogs == []
    fleet.shoot(page, "uploaded-log")


def test_a_forged_form_without_the_csrf_token_changes_nothing(
    browser: Browser, fleet: Fleet
) -> None:
    page = signed_in_page(browser, fleet, "/ui/rollouts/1")
    before = fleet.json("rollout", "status", "1")["state"]
    answer = page.request.post(fleet.url("/ui/rollouts/1/cancel"), form={"csrf": "forged"})
    assert answer.status == 403
    assert "CSRF token is missing or wrong: nothing was changed" in answer.text()
    answer = page.request.post(fleet.url("/ui/rollouts/1/cancel"), form={})
    assert answer.status == 403
    assert fleet.json("rollout", "status", "1")["state"] == before


def test_a_live_rollout_counts_on_the_open_page_and_pause_stops_it(
    browser: Browser, fleet: Fleet
) -> None:
    page = signed_in_page(browser, fleet, "/ui/rollouts/1")
    page.evaluate("window.stillHere = true")  # gone if the page reloaded
    assert number(page, '[data-state="notified"]') == 0
    run = subprocess.Popen(
        [*fleetkey_command(), "rollout", "run", "1", "--confirm-timeout", "60"],
        env={**fleet.server.env, "FLEETKEY_ACTOR": "alice@cli"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: number(page, '[data-state="notified"]') >= 3, 30)
        assert page.evaluate("window.stillHere") is True
        fleet.shoot(page, "rollout-running")
        page.click("#pause")
        page.wait_for_selector("#state:has-text('paused')")
        assert fleet.json("rollout", "status", "1")["state"] == "paused"
        _, err = run.communicate(timeout=30)  # the executor stops: the rollout is paused
        assert "rollout 1 is paused" in " ".join(err.split()), err
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
        run.communicate(timeout=30)
    sent = fleet.json("rollout", "status", "1")["phones"].get("notified", 0)
    page.wait_for_timeout(6000)
    assert fleet.json("rollout", "status", "1")["phones"].get("notified", 0) == sent
    page.goto(fleet.url("/ui/audit"))
    row = page.locator("#events tr", has_text="rollout.paused").first
    assert "dashboard@127.0.0.1" in row.inner_text()
    assert "rollout:1" in row.inner_text()
    page.click("#verify")
    assert "The chain verifies" in page.locator("#verdict").inner_text()
    fleet.shoot(page, "audit")


def test_a_session_ends_when_it_expires_and_the_live_page_goes_to_sign_in(
    browser: Browser, fleet: Fleet
) -> None:
    short = start_server(
        fleet.server.data, fleet.server.env, "--http", "127.0.0.1:0", "--ui-session-seconds", "5"
    )
    try:
        page = browser.new_context().new_page()
        page.goto(short.url + "/ui/")
        page.fill("#token", fleet.token)
        page.click("button[type=submit]")
        page.wait_for_url(short.url + "/ui/")
        assert page.locator("#seen").count() == 1
        page.wait_for_url(re.compile(r".*/ui/login\?next=/ui/$"), timeout=15_000)  # live.js
        assert page.locator("#seen").count() == 0
        page.goto(short.url + "/ui/sites")
        assert page.url == short.url + "/ui/login?next=/ui/sites"
    finally:
        short.stop()


def test_the_root_and_the_tree_beside_the_dashboard(fleet: Fleet) -> None:
    tree = fleet.server.data / "provisioning"
    (tree / "uinotes.cfg").write_text("<notes/>\n")  # a tree file whose name starts with "ui"
    with httpx.Client(base_url=fleet.server.url) as client:
        root = client.get("/")
        assert root.status_code == 303
        assert root.headers["location"] == "/ui/"
        bare = client.get("/ui")
        assert bare.status_code in (303, 307)
        wait_for(lambda: client.get("/uinotes.cfg").status_code == 200)
        assert client.get("/uinotes.cfg").text == "<notes/>\n"
        assert client.get("/ui/static/fleetkey.css").headers["content-type"].startswith("text/css")


def test_the_api_docs_render_with_no_network_but_fleetkey(browser: Browser, fleet: Fleet) -> None:
    context = browser.new_context()
    elsewhere: list[str] = []

    def local_only(route: Route) -> None:
        if route.request.url.startswith(fleet.server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    page = context.new_page()
    page.goto(fleet.url("/api/docs"))
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "fleetkey admin API" in page.locator(".swagger-ui .info .title").inner_text()
    assert elsewhere == []
    fleet.shoot(page, "api-docs")


def test_a_license_file_is_checked_then_posted_from_the_page_and_audited(
    browser: Browser, fleet: Fleet
) -> None:
    branch = SITES[1][0]
    before = {k["id"]: k["state"] for k in fleet.json("licenses", "list")}
    page = signed_in_page(browser, fleet, "/ui/licenses")
    page.click("#preflight")
    junk = {"name": "not-a-license.cfg", "mimeType": "text/plain", "buffer": b"hello"}
    page.set_input_files("#file", files=[junk])
    page.click("#upload button")
    assert "not-a-license.cfg is not a license file" in page.locator(".error").inner_text()
    page.go_back()
    content = site_file(DataDir(fleet.server.data), branch, 500)
    upload = {"name": SITE_FILE, "mimeType": "application/octet-stream", "buffer": content}
    page.set_input_files("#file", files=[upload])
    page.click("#upload button")
    assert page.locator("#outcome h2").inner_text() == "Ready to post"
    assert page.locator("[data-signature]").inner_text() == "valid"
    assert "extended" in page.locator("table.changes").inner_text()
    fleet.shoot(page, "license-preflight")
    assert {k["id"]: k["state"] for k in fleet.json("licenses", "list")} == before
    page.click("#post button")
    page.wait_for_url(re.compile(r".*/ui/licenses/\d+$"))
    posted = int(page.url.rsplit("/", 1)[1])
    states = {k["id"]: k["state"] for k in fleet.json("licenses", "list")}
    assert states[posted] == "posted"
    replaced = next(i for i, s in before.items() if s == "posted" and i in states
                    and states[i] == "superseded")  # fmt: skip
    assert fleet.json("licenses", "show", str(posted))["succeeds_id"] == replaced
    assert (fleet.server.data / "provisioning" / branch / SITE_FILE).read_bytes() == content
    page.goto(fleet.url("/ui/audit"))
    row = page.locator("#events tr", has_text="license.post").first
    assert "dashboard@127.0.0.1" in row.inner_text()


def test_a_copied_session_cookie_is_refused_once_signed_out(browser: Browser, fleet: Fleet) -> None:
    page = signed_in_page(browser, fleet, "/ui/sites")
    copied = browser.new_context()
    copied.add_cookies(page.context.cookies())
    elsewhere = copied.new_page()
    elsewhere.goto(fleet.url("/ui/sites"))
    assert elsewhere.url == fleet.url("/ui/sites")
    page.click("form.signout button")
    page.wait_for_url(re.compile(r".*/ui/login"))
    elsewhere.goto(fleet.url("/ui/sites"))
    assert elsewhere.url == fleet.url("/ui/login?next=/ui/sites")
    assert elsewhere.locator("table").count() == 0


# Per word of an element's text: how many lines it is drawn on (1: not broken inside).
WORD_LINES = """element => {
  const text = element.firstChild, words = [], range = document.createRange();
  for (const match of text.data.matchAll(/\\S+/g)) {
    range.setStart(text, match.index);
    range.setEnd(text, match.index + match[0].length);
    const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
    words.push([match[0], tops.size]);
  }
  return words;
}"""


def test_the_timeline_fills_its_card_and_user_agents_break_only_between_words(
    browser: Browser, fleet: Fleet
) -> None:
    for width in (1280, 800):
        page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
        sign_in(page, fleet)
        inner, drawn = page.locator('svg[aria-label="licenses expiring by week"]').evaluate(
            """svg => { const card = svg.closest('.card'), style = getComputedStyle(card);
                return [card.clientWidth - parseFloat(style.paddingLeft)
                        - parseFloat(style.paddingRight), svg.getBoundingClientRect().width]; }"""
        )
        fleet.shoot(page, f"overview-{width}")
        assert abs(inner - drawn) <= 1, (width, inner, drawn)
        page.goto(fleet.url(f"/ui/phones/{HOSTILE_MAC}"))
        fleet.shoot(page, f"phone-{width}")
        # at the top, all of it, each word whole on a line
        broken = [w for w, lines in page.locator("#agent").evaluate(WORD_LINES) if lines > 1]
        assert broken == [], (width, broken)
        # in the fetch history, one line each, all of it on hover (as the phone list)
        agents = page.locator("#history td.agent .clip")
        assert agents.count() > 0
        line = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)")
        for agent in agents.all():
            assert agent.get_attribute("title") == agent.text_content()
            assert agent.evaluate("e => e.getBoundingClientRect().height") < 1.5 * line
        assert HOSTILE_AGENT in [a.get_attribute("title") for a in agents.all()]
