"""A real server answering the same license request again and again (serve.http.repeats).

Repeated plain GETs are answered from memory while the posted view stays the same; these tests
repeat a request until it is remembered (on this module's own server: conftest's
``server`` is module-scoped), change what the store says, and check that the very
next answers follow the store within a refresh, and that remembered answers are recorded and
counted like any other.
"""

from __future__ import annotations

import json
import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.serve.conftest import (
    MAC,
    SITE,
    SP_MAC,
    RunningServer,
    records,
    wait_for,
)

VVX_UA = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application"
SP_UA = f"FileTransport PolycomSoundPointIP-SPIP_550-UA/4.0.15.1047 (SN:{SP_MAC}) Type/Application"
OTHER_SITE = "100000000002"
REPEATS = 5


def posted_digest(server: RunningServer, serial: str) -> str:
    keys = json.loads(server.cli("licenses", "list", "--state", "posted", "--json"))
    found: str = next(k["digest"] for k in keys if k["serial"] == serial)
    return found


def fetch(client: httpx.Client, path: str, times: int = REPEATS) -> list[httpx.Response]:
    return [client.get(path) for _ in range(times)]


def test_a_newly_posted_key_replaces_the_remembered_answer_within_a_refresh(
    server: RunningServer,
) -> None:
    path = f"/{MAC}-license.cfg"
    with httpx.Client(base_url=server.url, headers={"user-agent": VVX_UA}) as client:
        before = fetch(client, path)
        assert {(r.status_code, r.content) for r in before} == {(200, before[0].content)}
        server.cli(  # make_fleet issued vqmon alone: these are other bytes
            "issue",
            "phone",
            "--mac",
            MAC,
            "--features",
            "vqmon,call-recording",
            "--expires",
            "never",
        )
        newest = (server.data / "provisioning" / f"{MAC}-license.cfg").read_bytes()
        assert newest != before[0].content
        wait_for(lambda: client.get(path).content == newest, timeout=5)
        assert {r.content for r in fetch(client, path)} == {newest}
    digest = posted_digest(server, MAC)  # oldest first: the last REPEATS got the new key
    wait_for(lambda: {r["digest"] for r in records(server, MAC)[-REPEATS:]} == {digest})


def test_a_revoked_key_is_no_longer_served_from_memory(server: RunningServer) -> None:
    path = f"/{MAC}-license.cfg"
    with httpx.Client(base_url=server.url, headers={"user-agent": VVX_UA}) as client:
        assert {r.status_code for r in fetch(client, path)} == {200}
        keys = json.loads(server.cli("licenses", "list", "--state", "posted", "--json"))
        server.cli("licenses", "revoke", str(next(k["id"] for k in keys if k["serial"] == MAC)))
        wait_for(lambda: client.get(path).status_code == 404, timeout=5)
        assert {r.status_code for r in fetch(client, path)} == {404}


def test_a_phone_moved_to_another_site_gets_that_sites_license(server: RunningServer) -> None:
    path = "/000000000000-license.cfg"
    server.cli(
        "sites", "add", OTHER_SITE, "--name", "Branch", "--tz", "UTC", "--window", "01:00-04:00"
    )
    server.cli(
        "issue",
        "site",
        "--serial",
        OTHER_SITE,
        "--features",
        "corporate-directory",
        "--expires",
        "2030-12-31",
        "--out",
        "-",
    )
    keys = json.loads(server.cli("licenses", "list", "--json"))
    other = next(k for k in keys if k["serial"] == OTHER_SITE)
    if other["state"] != "posted":
        server.cli("licenses", "post", str(other["id"]))
    with httpx.Client(base_url=server.url, headers={"user-agent": SP_UA}) as client:
        home = fetch(client, path)
        assert {r.status_code for r in home} == {200}
        assert SITE.encode() in home[0].content
        csv = server.data.parent / "moved.csv"
        csv.write_text(f"mac,site,model\n{SP_MAC},{OTHER_SITE},SPIP_550\n")
        server.cli("phones", "import", str(csv))
        wait_for(lambda: client.get(path).content != home[0].content, timeout=5)
        moved = fetch(client, path)
    served = {r.content for r in moved}
    assert len(served) == 1
    assert OTHER_SITE.encode() in served.pop()


def test_remembered_answers_are_recorded_one_by_one_with_the_served_digest(
    server: RunningServer,
) -> None:
    path = "/000000000000-license.cfg"
    agent = SP_UA.replace("4.0.15.1047", "4.0.15.1048")  # these records, whatever came before

    def mine() -> list[dict[str, object]]:
        return [r for r in records(server, SP_MAC) if r["user_agent"] == agent]

    with httpx.Client(base_url=server.url, headers={"user-agent": agent}) as client:
        answers = fetch(client, path, times=20)
    assert {r.status_code for r in answers} == {200}
    wait_for(lambda: len(mine()) == 20)
    newest = mine()
    assert len(newest) == 20
    digest = posted_digest(server, OTHER_SITE)
    assert {(r["path"], r["status"], r["digest"], r["mac"]) for r in newest} == {
        (path, 200, digest, SP_MAC)
    }
    assert len({r["at"] for r in newest}) == 20  # each its own moment, not a copy


def test_conditional_and_range_requests_after_remembered_ones_are_answered_in_full(
    server: RunningServer,
) -> None:
    path = "/000000000000-license.cfg"
    with httpx.Client(base_url=server.url, headers={"user-agent": SP_UA}) as client:
        plain = fetch(client, path)[-1]
        etag = plain.headers["etag"]
        assert client.get(path, headers={"if-none-match": etag}).status_code == 304
        stale = client.get(path, headers={"if-none-match": '"other"'})
        assert (stale.status_code, stale.content) == (200, plain.content)
        part = client.get(path, headers={"range": "bytes=0-9"})
        assert (part.status_code, part.content) == (206, plain.content[:10])
        head = client.head(path)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(plain.content))


def test_a_connection_close_request_after_keep_alive_ones_closes(
    server: RunningServer,
) -> None:
    path = "/000000000000-license.cfg"
    with httpx.Client(base_url=server.url, headers={"user-agent": SP_UA}) as client:
        kept = fetch(client, path)[-1]
    assert "connection" not in kept.headers
    ask = f"GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: {SP_UA}\r\nConnection: close\r\n\r\n"
    for _ in range(3):  # the first may decide, the next ones are remembered
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
            connection.sendall(ask.encode())
            reply = b""
            while chunk := connection.recv(65536):  # ends only when the server closes
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nconnection: close" in head.lower()
        assert body == kept.content


def memory_metrics(server: RunningServer) -> tuple[float, float]:
    """(answers given from memory so far, answers held) from /metrics."""
    text = httpx.get(f"{server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    recalled = families["fleetkey_http_recalled_answers"].samples[0].value
    held = families["fleetkey_http_remembered_answers"].samples[0].value
    return recalled, held


def test_metrics_count_answers_given_from_memory(server: RunningServer) -> None:
    path = "/000000000000-license.cfg"
    agent = SP_UA.replace("4.0.15.1047", "4.0.15.1049")  # a request shape not seen before
    before, _ = memory_metrics(server)
    with httpx.Client(base_url=server.url, headers={"user-agent": agent}) as client:
        answers = fetch(client, path, times=10)
    assert {r.status_code for r in answers} == {200}
    after, held = memory_metrics(server)
    assert after - before == 9  # the first was decided, the next nine remembered
    assert held >= 1
