"""What the dashboard answers to requests it must refuse: no session, forged or expired
cookies, forms without their CSRF token, bad parameters and form bodies; each answer exact,
and nothing in the store changed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleetkey.store import alerts, audit, rollouts
from fleetkey.ui.app import CSP
from fleetkey.ui.session import COOKIE

from tests.dashboard import Dashboard

GETS = [
    "/ui/",
    "/ui/?live=1",
    "/ui/sites",
    "/ui/phones",
    "/ui/phones?site=100000000001&seen=never",
    "/ui/phones/0004f2000001",
    "/ui/phones/0004f2000001/logs/0004f2000001-app.log",
    "/ui/licenses",
    "/ui/licenses/1",
    "/ui/rollouts",
    "/ui/rollouts/1",
    "/ui/rollouts/1?live=1",
    "/ui/alerts",
    "/ui/audit",
    "/ui/nowhere",
]
POSTS = ["/ui/rollouts/1/pause", "/ui/rollouts/1/cancel", "/ui/alerts/ack"]


def state(dashboard: Dashboard) -> tuple[str, int, list[object]]:
    """What an action could change: the rollout's state, the audit head, the alerts' acks."""
    with dashboard.store.transaction() as session:
        return (
            rollouts.get(session, 1).state.value,
            audit.head_seq(session),
            [a.acked_at for a in alerts.listing(session)],
        )


@pytest.mark.parametrize("path", GETS)
def test_without_a_session_a_page_is_the_way_to_sign_in_and_no_data(
    dashboard: Dashboard, path: str
) -> None:
    answer = dashboard.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login?next=/ui/")
    assert answer.content == b""
    assert answer.headers["content-security-policy"] == CSP


@pytest.mark.parametrize(
    "cookie",
    ["", "v1.x.1.y", "garbage", "v1." + "a" * 400],
    ids=["empty", "forged", "not-ours", "huge"],
)
def test_a_forged_cookie_is_no_session(dashboard: Dashboard, cookie: str) -> None:
    dashboard.cookies.set(COOKIE, cookie, domain="fleetkey", path="/ui")
    assert dashboard.get("/ui/sites").status_code == 303


def test_an_expired_cookie_is_no_session(dashboard: Dashboard) -> None:
    dashboard.sign_in()
    dashboard.clock.advance(timedelta(hours=2))
    assert dashboard.get("/ui/").headers["location"] == "/ui/login?next=/ui/"


@pytest.mark.parametrize("path", POSTS)
def test_without_a_session_an_action_changes_nothing(dashboard: Dashboard, path: str) -> None:
    before = state(dashboard)
    answer = dashboard.ask("POST", path, data={"csrf": "x", "key": "k"})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login")
    assert state(dashboard) == before


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("csrf", [None, "", "0" * 32, "forged"])
def test_a_form_without_its_csrf_token_changes_nothing(
    dashboard: Dashboard, path: str, csrf: str | None
) -> None:
    dashboard.sign_in()
    before = state(dashboard)
    form = {"key": "lead-time:Site:100000000001:1:30d"} if path.endswith("ack") else {}
    if csrf is not None:
        form["csrf"] = csrf
    answer = dashboard.ask("POST", path, data=form)
    assert answer.status_code == 403
    assert "the form&#39;s CSRF token is missing or wrong: nothing was changed" in answer.text
    assert state(dashboard) == before


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/ui/phones?seen=yesterday", 400,
         "seen: got &#39;yesterday&#39;, expected one of 5m, 24h, older, never"),
        ("/ui/phones?site=nowhere", 400,
         "site: site serial &#39;nowhere&#39; is not valid: expected 12 hex digits"),
        ("/ui/phones?size=7", 400, "size: got &#39;7&#39;, expected one of 25, 50, 100, 200"),
        ("/ui/phones?after=zz", 400, "after: MAC &#39;zz&#39; is not a MAC address"),
        ("/ui/phones?feature=teleport", 400, "feature: unknown feature &#39;teleport&#39;"),
        ("/ui/phones?current=maybe", 400, "current: got &#39;maybe&#39;, expected one of yes, no"),
        ("/ui/phones?license=abc", 400, "license: got &#39;abc&#39;, expected a number from 1"),
        ("/ui/phones?license=0", 400, "license: got &#39;0&#39;, expected a number from 1"),
        ("/ui/phones?license=77", 400, "license: license 77 is not in the store"),
        ("/ui/phones?q=" + "x" * 101, 400, "q: expected printable text up to 100 characters"),
        ("/ui/phones?q=%01", 400, "q: expected printable text up to 100 characters"),
        ("/ui/phones?site=100000000001&site=100000000002", 400, "site: given more than once"),
        ("/ui/phones?colour=red", 400, "colour: not a parameter of this page"),
        ("/ui/sites?x=1", 400, "x: not a parameter of this page (none)"),
        ("/ui/phones/nonsense", 400, "mac: MAC &#39;nonsense&#39; is not a MAC address"),
        ("/ui/phones/0004f2ffffff", 404, "phone 0004f2ffffff is not in the inventory"),
        ("/ui/phones/0004f2000001/logs/..%2F..%2Fapi-token", 404, "Not Found"),
        ("/ui/phones/0004f2000001/logs/api-token", 404,
         "phone 0004f2000001 uploaded no file &#39;api-token&#39;"),
        ("/ui/licenses/0", 400, "id: got &#39;0&#39;, expected a number from 1 to"),
        ("/ui/licenses/99999999999999999999", 400, "id: got"),
        ("/ui/licenses/77", 404, "license 77 is not in the store"),
        ("/ui/licenses?state=lost", 400, "state: got &#39;lost&#39;"),
        ("/ui/rollouts/abc", 400, "id: got &#39;abc&#39;"),
        ("/ui/rollouts/9", 404, "no rollout 9"),
        ("/ui/rollouts/1?state=gone", 400, "state: got &#39;gone&#39;"),
        ("/ui/alerts?severity=loud", 400, "severity: got &#39;loud&#39;"),
        ("/ui/audit?before=-1", 400, "before: got &#39;-1&#39;"),
        ("/ui/audit?verify=maybe", 400, "verify: got &#39;maybe&#39;, expected one of yes"),
        ("/ui/nowhere", 404, "Not Found"),
    ],
)  # fmt: skip
def test_a_bad_request_is_answered_with_a_page_that_names_it(
    dashboard: Dashboard, path: str, status: int, message: str
) -> None:
    dashboard.sign_in()
    answer = dashboard.get(path)
    assert answer.status_code == status, answer.text
    assert message in answer.text
    assert answer.headers["content-security-policy"] == CSP
    assert "<table" not in answer.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"csrf=a&csrf=b", "csrf: given more than once"),
        (b"csrf=a&admin=1", "admin: not a field of this form (csrf)"),
        ("csrf=\u00e9".encode(), "form: not an urlencoded form"),
        (b"csrf=" + b"a" * 9000, "form: larger than 8192 bytes"),
        (b"&&==", "form: not an urlencoded form"),
    ],
)
def test_a_malformed_form_is_400_and_changes_nothing(
    dashboard: Dashboard, body: bytes, message: str
) -> None:
    dashboard.sign_in()
    before = state(dashboard)
    answer = dashboard.ask(
        "POST",
        "/ui/rollouts/1/pause",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 400
    assert message in answer.text
    assert state(dashboard) == before


def test_an_unknown_action_or_a_move_the_rollout_cannot_make_changes_nothing(
    dashboard: Dashboard,
) -> None:
    dashboard.sign_in()
    token = dashboard.csrf()
    before = state(dashboard)
    answer = dashboard.ask("POST", "/ui/rollouts/1/explode", data={"csrf": token})
    assert answer.status_code == 400
    assert "action: got &#39;explode&#39;, expected one of pause, resume, cancel" in answer.text
    answer = dashboard.ask("POST", "/ui/rollouts/1/pause", data={"csrf": token})  # it is planned
    assert answer.status_code == 409
    assert "rollout 1 is planned; it cannot become paused" in answer.text
    answer = dashboard.ask(
        "POST", "/ui/alerts/ack", data={"csrf": token, "key": "k", "until": "soon"}
    )
    assert answer.status_code == 400
    assert "until: got &#39;soon&#39;, expected a date as YYYY-MM-DD" in answer.text
    assert state(dashboard) == before


def test_an_action_is_audited_with_the_dashboard_as_actor(dashboard: Dashboard) -> None:
    dashboard.sign_in()
    answer = dashboard.ask("POST", "/ui/rollouts/1/cancel", data={"csrf": dashboard.csrf()})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/rollouts/1"
    with dashboard.store.transaction() as session:
        assert rollouts.get(session, 1).state.value == "cancelled"
        event = audit.events(session, limit=1)[0]
    assert (event.action, event.subject) == ("rollout.cancelled", "rollout:1")
    assert event.actor.startswith("dashboard@")


def test_the_root_sends_to_the_dashboard(dashboard: Dashboard) -> None:
    answer = dashboard.get("/")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/"
