"""Dashboard sessions: the signed cookie, its expiry, and the CSRF tokens, as values and through
the app in process."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from fleetkey.api.app import ApiContext, create_app
from fleetkey.authority.tokens import create_token
from fleetkey.store.schema import DashboardSignOutRow
from fleetkey.ui.app import UiContext, install
from fleetkey.ui.session import COOKIE, Signer
from fleetkey.ui.signin import safe_next

from tests.dashboard import Dashboard, csrf_of

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


SECRET = bytes(range(32))


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    create_token(tmp_path / "api-token")
    return Signer.from_secret(SECRET, tmp_path / "api-token")


class TestCookie:
    def test_a_cookie_checks_until_it_expires(self, signer: Signer) -> None:
        value = signer.issue(NOW, 60)
        session = signer.check(value, NOW + timedelta(seconds=59))
        assert session is not None
        assert session.expires == int(NOW.timestamp()) + 60
        assert signer.check(value, NOW + timedelta(seconds=60)) is None

    @pytest.mark.parametrize(
        "change",
        [
            lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),  # the MAC altered
            lambda v: ".".join(
                [*v.split(".")[:2], str(int(v.split(".")[2]) + 3600), v.split(".")[3]]
            ),
            lambda v: "v2" + v[2:],
            lambda v: v + ".x",
            lambda v: "",
            lambda v: "v1.a.b.c",
            lambda v: v + "0" * 300,
        ],
        ids=["mac", "longer-life", "version", "extra-part", "empty", "not-digits", "too-long"],
    )
    def test_a_forged_cookie_is_no_session(self, signer: Signer, change: object) -> None:
        forged = change(signer.issue(NOW, 3600))  # type: ignore[operator]
        assert signer.check(forged, NOW) is None

    def test_a_new_admin_token_ends_every_session(self, tmp_path: Path, signer: Signer) -> None:
        value = signer.issue(NOW, 3600)
        create_token(tmp_path / "api-token")
        again = Signer.from_secret(SECRET, tmp_path / "api-token")
        assert again.check(value, NOW) is None

    def test_the_same_secret_and_token_check_each_others_cookies(
        self, tmp_path: Path, signer: Signer
    ) -> None:
        again = Signer.from_secret(SECRET, tmp_path / "api-token")
        assert again.check(signer.issue(NOW, 60), NOW) is not None
        other = Signer.from_secret(bytes(32), tmp_path / "api-token")
        assert other.check(signer.issue(NOW, 60), NOW) is None

    def test_csrf_tokens_belong_to_their_session(self, signer: Signer) -> None:
        one = signer.check(signer.issue(NOW, 60), NOW)
        two = signer.check(signer.issue(NOW, 60), NOW)
        assert one is not None
        assert two is not None
        assert signer.csrf_matches(one, signer.csrf(one))
        assert not signer.csrf_matches(one, signer.csrf(two))
        assert not signer.csrf_matches(one, None)
        assert not signer.csrf_matches(one, "")


@pytest.mark.parametrize(
    ("target", "goes_to"),
    [
        ("/ui/phones?site=100000000001", "/ui/phones?site=100000000001"),
        ("https://evil.example/ui/", "/ui/"),
        ("//evil.example/", "/ui/"),
        ("/ui//evil.example/", "/ui/"),
        ("/api/status", "/ui/"),
        ("/ui/\\evil", "/ui/"),
        (None, "/ui/"),
    ],
)
def test_after_signing_in_only_a_dashboard_page_is_next(target: str | None, goes_to: str) -> None:
    assert safe_next(target) == goes_to


class TestSigningIn:
    def test_the_right_token_sets_a_strict_http_only_expiring_cookie(
        self, dashboard: Dashboard
    ) -> None:
        answer = dashboard.sign_in(next_page="/ui/sites")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/sites"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=v1.")
        for part in ("HttpOnly", "SameSite=strict", "Max-Age=3600", "Path=/ui"):
            assert part in cookie
        assert "Secure" not in cookie  # plain HTTP here

    def test_over_https_the_cookie_is_secure(self, dashboard: Dashboard) -> None:
        dashboard.base_url = "https://fleetkey"
        assert "Secure" in dashboard.sign_in().headers["set-cookie"]

    def test_a_wrong_token_is_401_with_the_form_again_and_no_cookie(
        self, dashboard: Dashboard
    ) -> None:
        answer = dashboard.sign_in(token="fk_wrong")  # noqa: S106  # a wrong token on purpose
        assert answer.status_code == 401
        assert "that is not the admin token" in answer.text
        assert COOKIE not in answer.headers.get("set-cookie", "")
        assert dashboard.get("/ui/").status_code == 303

    def test_a_sign_in_without_the_forms_token_is_refused(self, dashboard: Dashboard) -> None:
        answer = dashboard.ask("POST", "/ui/login", data={"token": dashboard.token})
        assert answer.status_code == 403
        assert "the sign-in form is stale or was not sent by this dashboard" in answer.text
        assert COOKIE not in answer.headers.get("set-cookie", "")

    def test_the_session_ends_when_it_expires(self, dashboard: Dashboard) -> None:
        dashboard.sign_in()
        assert dashboard.get("/ui/").status_code == 200
        dashboard.clock.advance(timedelta(seconds=3600))
        answer = dashboard.get("/ui/sites")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/login?next=/ui/sites"

    def test_signing_out_drops_the_cookie(self, dashboard: Dashboard) -> None:
        dashboard.sign_in()
        token = csrf_of(dashboard.get("/ui/").text)
        answer = dashboard.ask("POST", "/ui/logout", data={"csrf": token})
        assert answer.status_code == 303
        assert dashboard.get("/ui/").status_code == 303

    def test_a_copied_cookie_is_refused_once_its_session_signed_out(
        self, dashboard: Dashboard
    ) -> None:
        dashboard.sign_in()
        copied = replace(dashboard, cookies=httpx.Cookies(dashboard.cookies))
        other = replace(dashboard, cookies=httpx.Cookies())
        other.sign_in()
        assert copied.get("/ui/sites").status_code == 200
        dashboard.ask("POST", "/ui/logout", data={"csrf": dashboard.csrf()})
        answer = copied.get("/ui/sites")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/login?next=/ui/sites"
        assert copied.ask("POST", "/ui/alerts/ack", data={"key": "x"}).status_code == 303
        assert other.get("/ui/sites").status_code == 200  # another session is not touched
        with dashboard.store.transaction() as session:
            assert session.scalar(select(func.count()).select_from(DashboardSignOutRow)) == 1

    def test_a_sign_out_with_a_wrong_csrf_token_signs_nothing_out(
        self, dashboard: Dashboard
    ) -> None:
        dashboard.sign_in()
        answer = dashboard.ask("POST", "/ui/logout", data={"csrf": "0" * 32})
        assert answer.status_code == 403
        assert "the sign-out form&#39;s CSRF token is missing or wrong" in answer.text
        assert dashboard.get("/ui/").status_code == 200
        with dashboard.store.transaction() as session:
            assert session.scalar(select(func.count()).select_from(DashboardSignOutRow)) == 0

    def test_servers_sharing_the_store_accept_each_others_cookies(
        self, dashboard: Dashboard
    ) -> None:
        dashboard.sign_in()
        second = create_app(ApiContext(dashboard.data, dashboard.store, dashboard.clock, None,
                                       dict, bytes))  # fmt: skip
        install(second, UiContext(dashboard.data, dashboard.store, dashboard.clock))
        assert replace(dashboard, app=second).get("/ui/sites").status_code == 200
        assert not (dashboard.data.root / "ui-session.key").exists()
