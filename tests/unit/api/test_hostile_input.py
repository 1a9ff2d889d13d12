"""Whatever a client sends, the admin API answers a clear 4xx in its one error shape, and what
it sends back in headers is safe: no input reaches the store unbounded or a header raw."""

from __future__ import annotations

from datetime import date
from urllib.parse import quote

import pytest

from fleetkey.clock import FixedClock
from fleetkey.core.codec import serialize_keys
from fleetkey.store import registry
from fleetkey.testing import make_license, trusted_keys_for

from tests.helpers import Api

HUGE = "9" * 30  # far past any 64-bit id


def stored_as(api: Api, file_name: str) -> int:
    """A license recorded under ``file_name`` (as an import before names were checked did)."""
    key = make_license(serial="0004f2000001", expires=date(2030, 1, 1))
    with api.store.transaction() as session:
        return registry.record(
            session,
            FixedClock(),
            "t",
            key,
            trusted_keys_for().check(key),
            content=serialize_keys([key]),
            file_name=file_name,
        ).id


class TestFileNamesInHeaders:
    @pytest.mark.parametrize(
        ("name", "fallback"),
        [
            ("0004f2000001-license.cfg", "0004f2000001-license.cfg"),
            ("x\r\nSet-Cookie: a=b-license.cfg", "x__Set-Cookie: a=b-license.cfg"),
            ("Zürich €-license.cfg", "Z_rich _-license.cfg"),
            ('a"b\\c-license.cfg', "a_b_c-license.cfg"),
        ],
        ids=["plain", "crlf", "not latin-1", "quotes"],
    )
    def test_a_stored_file_name_is_sent_as_rfc_6266_never_raw(
        self, api: Api, name: str, fallback: str
    ) -> None:
        license_id = stored_as(api, name)
        reply = api.ask("GET", f"/api/licenses/{license_id}/file")
        assert reply.status_code == 200
        assert reply.headers["content-disposition"] == (
            f"attachment; filename=\"{fallback}\"; filename*=UTF-8''"
            + quote(name, safe="!#$&+-.^_`|~")
        )
        assert "set-cookie" not in reply.headers


class TestNumbersOutOfRange:
    @pytest.mark.parametrize(
        ("method", "path", "where"),
        [
            ("GET", f"/api/licenses/{HUGE}", "path.license_id"),
            ("GET", f"/api/licenses/{HUGE}/file", "path.license_id"),
            ("POST", f"/api/licenses/{HUGE}/post", "path.license_id"),
            ("POST", f"/api/licenses/{HUGE}/revoke", "path.license_id"),
            ("GET", f"/api/rollouts/{HUGE}", "path.rollout_id"),
            ("GET", "/api/licenses/0", "path.license_id"),
            ("GET", f"/api/licenses?expiring_within={HUGE}", "query.expiring_within"),
            ("GET", "/api/licenses?expiring_within=1000001", "query.expiring_within"),
            ("GET", f"/api/fetches?limit={HUGE}", "query.limit"),
            ("GET", "/api/fetches?since=99999-01-01", "query.since"),
        ],
    )
    def test_huge_integers_in_paths_and_queries_are_refused_422(
        self, api: Api, method: str, path: str, where: str
    ) -> None:
        reply = api.ask(method, path)
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"] == "invalid-request"
        assert reply.json()["detail"].startswith(f"{where}: ")

    def test_the_longest_horizon_allowed_is_answered(self, api: Api) -> None:
        assert api.ask("GET", "/api/licenses?expiring_within=1000000").json() == []


class TestSitesOfHostileText:
    @pytest.mark.parametrize(
        ("change", "says"),
        [
            ({"name": "x" * 200_000}, "site name is 200000 characters long, at most 200"),
            ({"name": '=HYPERLINK("http://x")'}, "would take it for a formula"),
            ({"contact": "@SUM(A1)"}, "would take it for a formula"),
            ({"name": "HQ\r\nX"}, "control character U+000D"),
            ({"name": "HQ\x00"}, "control character U+0000"),
            ({"timezone": "Europe/" + "x" * 5000}, "is not an IANA zone"),
            ({"serial": "1" * 100_000}, "site serial"),
        ],
        ids=["long", "formula", "contact", "crlf", "nul", "zone", "serial"],
    )
    def test_bad_text_is_a_422_in_the_one_shape(
        self, api: Api, change: dict[str, str], says: str
    ) -> None:
        site = {"serial": "100000000001", "name": "HQ", "timezone": "UTC", "window": "01:00-02:00"}
        reply = api.ask("POST", "/api/sites", json=site | change)
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"] == "input"
        assert says in reply.json()["detail"]
        assert api.ask("GET", "/api/sites").json() == []


class TestMethods:
    def test_delete_of_a_collection_is_405_in_the_one_shape(self, api: Api) -> None:
        for headers in ({}, {"content-length": "0"}):
            reply = api.ask("DELETE", "/api/sites", headers=headers)
            assert reply.status_code == 405
            assert reply.json() == {"error": "method-not-allowed", "detail": "Method Not Allowed"}


def test_an_unexpected_failure_is_a_500_in_the_one_shape(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("a bug")

    api.app.add_api_route("/api/broken", broken)
    reply = api.ask("GET", "/api/broken")
    assert reply.status_code == 500
    assert reply.json() == {
        "error": "internal-error",
        "detail": "the server failed to answer; it is logged",
    }
    assert "admin API: GET /api/broken failed" in caplog.text
    assert "RuntimeError: a bug" in caplog.text
