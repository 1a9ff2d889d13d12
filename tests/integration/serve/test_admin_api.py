"""The admin API and /metrics on a real `fleetkey serve`, with httpx."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import date

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetkey.clock import FixedClock
from fleetkey.core.codec import serialize_keys
from fleetkey.store import registry
from fleetkey.store.database import default_url
from fleetkey.store.store import Store
from fleetkey.testing import make_license, trusted_keys_for

from tests.serving import MAC, SITE, SP_MAC, RunningServer

NEW_MAC = "0004f2aaaa01"


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    token = json.loads(server.cli("token", "--json"))["api_token"]
    with httpx.Client(
        base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        yield client


def eventually(fetch: object, expected: int, timeout: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        reply: httpx.Response = fetch()  # type: ignore[operator]
        if reply.status_code == expected or time.monotonic() > deadline:
            return reply
        time.sleep(0.2)


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dTpw", "Bearer"])
def test_api_needs_the_bearer_token(server: RunningServer, header: str | None) -> None:
    headers = {"authorization": header} if header else {}
    reply = httpx.get(f"{server.url}/api/status", headers=headers)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="fleetkey"'
    assert reply.json()["error"] == "unauthorized"
    assert "bearer token is required" in reply.json()["detail"]


def test_openapi_describes_the_api(server: RunningServer) -> None:
    document = httpx.get(f"{server.url}/api/openapi.json").json()
    assert document["info"]["title"] == "fleetkey admin API"
    for path in ("/api/sites", "/api/phones/{mac}", "/api/licenses", "/api/fetches"):
        assert path in document["paths"]
    assert "post" in document["paths"]["/api/licenses/{license_id}/revoke"]


def test_status_sites_and_phones(api: httpx.Client) -> None:
    status = api.get("/api/status").json()
    assert status["serving"]["sites"] == 1
    assert api.get("/api/sites").json()[0]["serial"] == SITE
    macs = {p["mac"] for p in api.get("/api/phones", params={"site": SITE}).json()}
    assert macs == {MAC, SP_MAC}
    missing = api.get("/api/phones/0004f2000000")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not-found"
    assert "is not in the inventory" in missing.json()["detail"]


def test_issue_serve_and_revoke_through_the_api(api: httpx.Client, server: RunningServer) -> None:
    made = api.post(
        "/api/licenses",
        json={"type": "phone", "serial": NEW_MAC, "features": ["vqmon"], "expires": "never"},
    )
    assert made.status_code == 201, made.text
    issued = made.json()["license"]
    assert (issued["state"], issued["signature"]) == ("posted", "valid")
    url = f"{server.url}/{NEW_MAC}-license.cfg"
    served = eventually(lambda: httpx.get(url), 200)
    assert served.status_code == 200
    stored = api.get(f"/api/licenses/{issued['id']}/file")
    assert stored.content == served.content
    # the fetch record proves which version the phone got
    assert eventually(lambda: _recorded(api, issued["digest"]), 200).status_code == 200
    revoked = api.post(f"/api/licenses/{issued['id']}/revoke")
    assert revoked.json()["license"]["state"] == "revoked"
    assert eventually(lambda: httpx.get(url), 404).status_code == 404


def _recorded(api: httpx.Client, digest: str) -> httpx.Response:
    reply = api.get("/api/fetches", params={"mac": NEW_MAC})
    found = any(r["digest"] == digest for r in reply.json())
    return httpx.Response(200 if found else 404)


def test_issue_without_posting_then_post(api: httpx.Client, server: RunningServer) -> None:
    made = api.post(
        "/api/licenses",
        json={
            "type": "site",
            "serial": SITE,
            "features": ["corporate-directory"],
            "expires": "2031-06-30",
            "post": False,
        },
    ).json()["license"]
    assert made["state"] == "issued"
    posted = api.post(f"/api/licenses/{made['id']}/post")
    assert posted.json()["license"]["state"] == "posted"
    served = api.get(f"/api/licenses/{made['id']}/file").content
    assert (server.data / "provisioning" / SITE / "000000000000-license.cfg").read_bytes() == served
    assert (server.data / "provisioning" / "000000000000-license.cfg").read_bytes() == served
    again = api.post(f"/api/licenses/{made['id']}/post")
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"
    assert "only an issued or superseded key can be posted" in again.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("post", "/api/licenses", {"type": "phone"}, 422, "serial"),
        ("post", "/api/licenses", {"type": "tablet", "serial": MAC}, 422, "type"),
        ("post", "/api/licenses", {"type": "phone", "serial": MAC}, 422, "at least one feature"),
        (
            "post",
            "/api/licenses",
            {"type": "phone", "serial": "xyz", "features": ["vqmon"], "expires": "never"},
            422,
            "MAC",
        ),
        (
            "post",
            "/api/licenses",
            {"type": "phone", "serial": MAC, "features": ["nonsense"], "expires": "never"},
            422,
            "nonsense",
        ),
        ("post", "/api/sites", {"serial": "1", "name": "x", "timezone": "UTC"}, 422, "window"),
        (
            "post",
            "/api/sites",
            {"serial": SITE, "name": "x", "timezone": "UTC", "window": "01:00-02:00"},
            409,
            "already exists",
        ),
        ("get", "/api/licenses/99999", None, 404, "99999"),
        ("post", "/api/licenses/99999/revoke", None, 404, "99999"),
        ("get", "/api/fetches?limit=0", None, 422, "limit"),
        ("get", "/api/licenses?state=lost", None, 422, "state"),
    ],
)
def test_malformed_api_requests_change_nothing(
    api: httpx.Client,
    method: str,
    path: str,
    body: object,
    status: int,
    says: str,
) -> None:
    before = api.get("/api/licenses").json()
    reply = api.request(method.upper(), path, json=body)
    assert reply.status_code == status, reply.text
    assert says in reply.text
    assert api.get("/api/licenses").json() == before


def test_api_body_that_is_not_json_is_refused(api: httpx.Client) -> None:
    reply = api.post(
        "/api/licenses", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 422


def test_metrics_count_requests_by_status_and_kind(server: RunningServer) -> None:
    httpx.get(f"{server.url}/{SITE}/000000000000-license.cfg")
    httpx.get(f"{server.url}/no-such-file.cfg")
    text = httpx.get(f"{server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    answers = {
        (s.labels["status"], s.labels["kind"]): s.value
        for s in families["fleetkey_http_requests"].samples
    }
    assert answers[("200", "site-license")] >= 1
    assert answers[("404", "other")] >= 1
    histogram = families["fleetkey_http_request_duration_seconds"].samples
    count = next(s.value for s in histogram if s.name.endswith("_count"))
    assert count >= 2
    for name in (
        "fleetkey_admission_rejections",
        "fleetkey_fetch_records_queue_depth",
        "fleetkey_fetch_records_written",
        "fleetkey_fetch_records_dropped",
        "fleetkey_posted_licenses",
        "fleetkey_fetch_records_pruned",  # by --fetch-retention; its log line says each prune
    ):
        assert name in families


def test_alerts_and_rollouts_through_the_api(api: httpx.Client, server: RunningServer) -> None:
    checked = api.post("/api/alerts/check")
    assert checked.status_code == 200
    open_keys = {a["key"] for a in checked.json()["open"]}
    assert set(checked.json()["fired"]) <= open_keys
    listed = api.get("/api/alerts")
    assert listed.status_code == 200
    assert {a["key"] for a in listed.json()} == open_keys
    rollouts = api.get("/api/rollouts")
    assert rollouts.status_code == 200
    known = [r["id"] for r in rollouts.json()]
    missing = api.get(f"/api/rollouts/{max(known, default=0) + 1}")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "not-found",
        "detail": f"no rollout {max(known, default=0) + 1}",
    }
    site = "100000000001"
    posted = json.loads(server.cli("licenses", "list", "--json"))
    license_id = next(
        item["id"] for item in posted if item["serial"] == site and item["state"] == "posted"
    )
    server.cli(
        "rollout",
        "plan",
        "--license",
        str(license_id),
        "--capacity",
        "100",
        "--deadline",
        "2030-12-01",
    )
    created = api.get("/api/rollouts").json()[-1]
    assert created["license"] == license_id
    assert created["state"] == "planned"
    assert created["phones"] == {"pending": 2}
    one = api.get(f"/api/rollouts/{created['id']}").json()
    one.pop("waiting"), created.pop("waiting")  # "in 3 h 12 min" moves on between the calls
    assert one == created


def _raw(server: RunningServer, request: bytes) -> tuple[list[bytes], bytes]:
    """One request (asking to close) on a raw socket: (status and header lines, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def test_a_stored_file_name_never_becomes_a_header_line(
    api: httpx.Client, server: RunningServer
) -> None:
    key = make_license(serial=NEW_MAC, expires=date(2031, 1, 1))
    name = "x\r\nSet-Cookie: stolen=1\r\nZürich-license.cfg"
    store = Store(default_url(server.data))
    with store.transaction() as session:
        license_id = registry.record(
            session,
            FixedClock(),
            "t",
            key,
            trusted_keys_for().check(key),
            content=serialize_keys([key]),
            file_name=name,
        ).id
    store.close()
    token = api.headers["authorization"].encode()
    lines, body = _raw(
        server,
        b"GET /api/licenses/%d/file HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
        b"Connection: close\r\n\r\n" % (license_id, token),
    )
    assert lines[0] == b"HTTP/1.1 200 OK"
    names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    assert b"set-cookie" not in names
    head = b"\r\n".join(lines)
    assert "ü".encode() not in head
    assert "ü".encode("latin-1") not in head
    (disposition,) = [line for line in lines if line.lower().startswith(b"content-disposition:")]
    assert disposition.endswith(
        b"filename*=UTF-8''x%0D%0ASet-Cookie%3A%20stolen%3D1%0D%0AZ%C3%BCrich-license.cfg"
    )
    assert body == serialize_keys([key])


def test_delete_of_a_collection_is_a_405_in_the_one_shape(api: httpx.Client) -> None:
    for headers in ({}, {"content-length": "0"}):  # httpx and curl send no length on DELETE
        reply = api.delete("/api/sites", headers=headers)
        assert reply.status_code == 405
        assert reply.json() == {"error": "method-not-allowed", "detail": "Method Not Allowed"}


def test_a_huge_id_is_a_422_in_the_one_shape(api: httpx.Client) -> None:
    reply = api.get("/api/licenses/" + "9" * 40)
    assert reply.status_code == 422
    assert reply.json()["error"] == "invalid-request"
    assert reply.json()["detail"].startswith("path.license_id: ")


def test_a_site_is_changed_and_removed_by_name_over_http(api: httpx.Client) -> None:
    added = api.post(
        "/api/sites",
        json={
            "serial": "100000000077",
            "name": "Lab 7",
            "timezone": "UTC",
            "window": "01:00-02:00",
        },
    )
    assert added.status_code == 201
    changed = api.patch("/api/sites/lab%207", json={"name": "Lab Seven"})
    assert changed.json()["changed"] == {"name": {"old": "Lab 7", "new": "Lab Seven"}}
    refused = api.delete(f"/api/sites/{SITE}")  # it has the fleet's phones: nothing changes
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"site {SITE} (HQ) still has ")
    removed = api.delete("/api/sites/Lab%20Seven")  # no Content-Length, as httpx sends it
    assert removed.status_code == 200
    assert removed.json()["site"]["serial"] == "100000000077"
    assert api.get("/api/sites/100000000077").status_code == 404
