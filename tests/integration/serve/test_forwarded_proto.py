"""HTTPS ended at a trusted proxy: X-Forwarded-Proto from it is recorded (``https``), from
anyone else it is a claim and ignored, and a trusted proxy's value that is neither http nor
https is refused with 400 and its reason (recorded as the 400 it was, nothing else changed).
Also: a phone's own X-Forwarded-For line before the proxy's is no say over its address."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.serving import MAC, RunningServer, fleet_env, make_fleet, start_server, wait_for

PROXY = "127.0.0.2"  # --trusted-proxy
PHONE = "127.0.0.3"  # anyone else
TAGGED = f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{MAC}) Type/Application"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "proto")
    make_fleet(data, env)
    running = start_server(data, env, "--trusted-proxy", PROXY)
    yield running
    running.stop()


def fetch(
    server: RunningServer, source: str, tag: str, headers: list[tuple[str, str]]
) -> httpx.Response:
    """GET the master configuration from ``source``, ``tag`` in the query (the record's path)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(
            f"{server.url}/000000000000.cfg?{tag}", headers=[("user-agent", TAGGED), *headers]
        )


def record_of(server: RunningServer, tag: str) -> dict[str, object]:
    """The one record of the request ``tag`` names (a refusal before the pipeline names no
    phone: found by its path)."""
    found: list[dict[str, object]] = []

    def seen() -> bool:
        rows = json.loads(server.cli("fetches", "--path", f"*?{tag}", "--json"))
        found[:] = [r for r in rows if r["path"] == f"/000000000000.cfg?{tag}"]
        return bool(found)

    wait_for(seen)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("tag", "source", "proto", "recorded"),
    [
        ("proxy-https", PROXY, "https", "https"),
        ("proxy-https-upper", PROXY, "HTTPS", "https"),
        ("proxy-http", PROXY, "http", "http"),
        ("proxy-none", PROXY, None, "http"),
        ("phone-claims-https", PHONE, "https", "http"),  # not a trusted proxy: no say
        ("phone-claims-garbage", PHONE, "gopher", "http"),  # ignored, not refused
    ],
)
def test_the_record_says_https_only_when_a_trusted_proxy_says_so(
    server: RunningServer, tag: str, source: str, proto: str | None, recorded: str
) -> None:
    headers = [("x-forwarded-proto", proto)] if proto is not None else []
    reply = fetch(server, source, tag, headers)
    assert reply.status_code == 200, reply.text
    record = record_of(server, tag)
    assert (record["protocol"], record["status"]) == (recorded, 200)


@pytest.mark.parametrize(
    ("tag", "headers"),
    [
        ("empty", [("x-forwarded-proto", "")]),
        ("ftp", [("x-forwarded-proto", "ftp")]),
        ("two-values", [("x-forwarded-proto", "https, http")]),
        # the phone's own line and then the proxy's (a proxy that adds rather than sets):
        # one list of two values, not the first line's word
        ("proto-two-lines", [("x-forwarded-proto", "https"), ("x-forwarded-proto", "http")]),
        ("a-url", [("x-forwarded-proto", "https://phones.example")]),
        ("rfc7239-style", [("x-forwarded-proto", "proto=https")]),
    ],
)
def test_a_trusted_proxys_malformed_x_forwarded_proto_is_refused_with_its_reason(
    server: RunningServer, tag: str, headers: list[tuple[str, str]]
) -> None:
    reply = fetch(server, PROXY, tag, headers)
    assert reply.status_code == 400
    assert f"from the trusted proxy {PROXY}: expected one value, http or https" in reply.text
    record = record_of(server, tag)  # recorded as the refusal it was
    assert (record["protocol"], record["status"]) == ("http", 400)


def test_a_phones_own_x_forwarded_for_line_before_the_proxys_is_no_say(
    server: RunningServer,
) -> None:
    """A proxy adds a line of its own (HAProxy's ``option forwardfor``): the phone's line
    before it is part of the same list, and the address the proxy added wins."""
    headers = [("x-forwarded-for", "198.51.100.7"), ("x-forwarded-for", "203.0.113.9")]
    assert fetch(server, PROXY, "two-lines", headers).status_code == 200
    assert record_of(server, "two-lines")["remote_addr"] == "203.0.113.9"
