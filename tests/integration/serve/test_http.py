"""The HTTP server with real clients: phone boot sequences, conditionals, ranges, bad requests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess

import httpx
import pytest

from tests.serving import MAC, SITE, SP_MAC, RunningServer, fleet_env, make_fleet, start_server

VVX_UA = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application"
SP_UA = f"FileTransport PolycomSoundPointIP-SPIP_550-UA/4.0.15.1047 (SN:{SP_MAC}) Type/Application"


def raw(server: RunningServer, data: bytes) -> bytes:
    """Send bytes on a fresh connection and half-close it; read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        try:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: read its answer
        chunks = []
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


class TestBootSequences:
    def test_vvx_500_boot_sequence_over_httpx(self, server: RunningServer) -> None:
        """domain.md §5.1, VVX 500 on UC 5.9.7: what exists is 200, the rest 404."""
        expected = [
            (f"/{MAC}.cfg", 404),
            ("/000000000000.cfg", 200),
            ("/2345-12500-001.sip.ld", 200),
            (f"/{MAC}-phone.cfg", 404),
            (f"/{MAC}-web.cfg", 404),
            ("/000000000000-license.cfg", 200),
            (f"/{MAC}-license.cfg", 200),
            (f"/{MAC}-calls.xml", 404),
            (f"/{MAC}-directory.xml", 200),
            ("/000000000000-directory.xml", 404),
        ]
        with httpx.Client(base_url=server.url, headers={"user-agent": VVX_UA}) as client:
            got = [(path, client.get(path).status_code) for path, _ in expected]
            site = client.get("/000000000000-license.cfg")
            phone = client.get(f"/{MAC}-license.cfg")
        assert got == expected
        assert f"Serial='{SITE}'".encode() in site.content
        assert f"Serial='{MAC}'".encode() in phone.content
        assert site.headers["content-type"] == "application/xml"

    def test_soundpoint_550_over_curl_gets_its_site_license_by_serial(
        self, server: RunningServer
    ) -> None:
        result = subprocess.run(
            [  # noqa: S607  # curl from PATH: the real client, installed by the machine
                "curl",
                "-sS",
                "-A",
                SP_UA,
                "-o",
                "-",
                "-w",
                "\\n%{http_code}",
                f"{server.url}/000000000000-license.cfg",
            ],
            capture_output=True,
            check=True,
            timeout=30,
        )
        body, code = result.stdout.rsplit(b"\n", 1)
        assert code == b"200"
        assert f"Serial='{SITE}'".encode() in body

    def test_unknown_phone_gets_the_default_site_file(self, server: RunningServer) -> None:
        ua = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:0004f2999999) Type/Application"
        reply = httpx.get(f"{server.url}/000000000000-license.cfg", headers={"user-agent": ua})
        default = server.data / "provisioning" / "000000000000-license.cfg"
        assert (reply.status_code, reply.content) == (200, default.read_bytes())

    def test_site_prefix_serves_that_site(self, server: RunningServer) -> None:
        reply = httpx.get(f"{server.url}/{SITE}/000000000000-license.cfg")
        assert reply.status_code == 200
        assert f"Serial='{SITE}'".encode() in reply.content


class TestHttpSemantics:
    def test_etag_and_last_modified_give_304(self, server: RunningServer) -> None:
        first = httpx.get(f"{server.url}/{MAC}-license.cfg")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        again = httpx.get(f"{server.url}/{MAC}-license.cfg", headers={"if-none-match": etag})
        assert (again.status_code, again.content) == (304, b"")
        assert "content-length" not in again.headers
        since = httpx.get(
            f"{server.url}/000000000000.cfg",
            headers={"if-modified-since": "Thu, 01 Jan 2099 00:00:00 GMT"},
        )
        assert since.status_code == 304
        assert modified

    def test_head_has_length_and_no_body(self, server: RunningServer) -> None:
        reply = httpx.head(f"{server.url}/2345-12500-001.sip.ld")
        assert reply.status_code == 200
        assert reply.headers["content-length"] == str(20 * 1024 * 1024)
        assert reply.content == b""

    def test_range_requests(self, server: RunningServer) -> None:
        data = (server.data / "provisioning" / "2345-12500-001.sip.ld").read_bytes()
        part = httpx.get(f"{server.url}/2345-12500-001.sip.ld", headers={"range": "bytes=100-199"})
        assert (part.status_code, part.content) == (206, data[100:200])
        assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
        tail = httpx.get(f"{server.url}/2345-12500-001.sip.ld", headers={"range": "bytes=-10"})
        assert tail.content == data[-10:]
        beyond = httpx.get(
            f"{server.url}/2345-12500-001.sip.ld", headers={"range": f"bytes={len(data)}-"}
        )
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(data)}"

    def test_large_file_streams_byte_exact_to_curl(self, server: RunningServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
        target = tmp_path / "sip.ld"
        subprocess.run(
            ["curl", "-sS", "-o", str(target), f"{server.url}/2345-12500-001.sip.ld"],  # noqa: S607
            check=True,
            timeout=60,
        )
        original = server.data / "provisioning" / "2345-12500-001.sip.ld"
        assert (
            hashlib.sha256(target.read_bytes()).digest()
            == hashlib.sha256(original.read_bytes()).digest()
        )

    def test_pipelined_requests_are_answered_in_order(self, server: RunningServer) -> None:
        request = (
            f"GET /{MAC}-license.cfg HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /000000000000.cfg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        reply = raw(server, request.encode())
        statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)]
        assert statuses == [200, 404, 200]


MALFORMED = [
    ("dot dot", b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("encoded dot dot", b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("double encoded", b"GET /%252e%252e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("backslashes", b"GET /a%5c..%5c..%5cetc HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("overlong utf-8", b"GET /%c0%ae%c0%ae/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("nul", b"GET /x.cfg%00.png HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("hidden temp file", b"GET /.0004f2a1b2c3-license.cfg.tmp HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("absolute form", b"GET http://evil/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("huge url", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("huge header", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    (
        "many headers",
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(70)) + b"\r\n",
        431,
    ),
    ("post", b"POST /x.cfg HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", 405),
    ("delete", b"DELETE /000000000000.cfg HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (
        "put of a name phones do not upload",
        b"PUT /0004f2a1b2c3-license.cfg HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        403,
    ),
    (
        "put over the cap",
        b"PUT /0004f2a1b2c3-web.cfg HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
        413,
    ),
    (
        "put without a length",
        b"PUT /0004f2a1b2c3-app.log HTTP/1.1\r\nHost: x\r\n\r\n",
        411,
    ),
    (
        "put with traversal",
        b"PUT /../0004f2a1b2c3-app.log HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    (
        "put of the site-wide name",
        b"PUT /000000000000-app.log HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        403,
    ),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 400),
    ("bad version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    (
        "upgrade",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        400,
    ),
    (
        "oversized GET body",
        b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"z" * 100000,
        413,
    ),
]


@pytest.mark.parametrize(
    ("request_bytes", "status"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_requests_get_exact_statuses(
    server: RunningServer, request_bytes: bytes, status: int
) -> None:
    before = sorted(p.name for p in server.data.parent.rglob("*"))
    reply = raw(server, request_bytes)
    assert status_of(reply) == status
    assert sorted(p.name for p in server.data.parent.rglob("*")) == before


class TestUploads:
    def test_phone_logs_are_stored_per_mac_byte_exact(
        self,
        server: RunningServer,
        tmp_path,  # type: ignore[no-untyped-def]
    ) -> None:
        log = tmp_path / "app.log"
        log.write_bytes(os.urandom(300_000))
        result = subprocess.run(
            [  # noqa: S607  # curl from PATH: the real client
                "curl",
                "-sS",
                "-T",
                str(log),
                "-A",
                VVX_UA,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                f"{server.url}/{MAC}-app.log",
            ],
            capture_output=True,
            check=True,
            timeout=30,
        )
        assert result.stdout == b"201"
        stored = server.data / "uploads" / MAC / f"{MAC}-app.log"
        assert stored.read_bytes() == log.read_bytes()
        again = httpx.put(
            f"{server.url}/{MAC.upper()}-app.log", content=b"second", headers={"user-agent": VVX_UA}
        )
        assert again.status_code == 204
        assert stored.read_bytes() == b"second"

    def test_chunked_upload(self, server: RunningServer) -> None:
        reply = httpx.put(f"{server.url}/{MAC}-calls.xml", content=iter([b"<calls>", b"</calls>"]))
        assert reply.status_code == 201
        assert (server.data / "uploads" / MAC / f"{MAC}-calls.xml").read_bytes() == (
            b"<calls></calls>"
        )


def test_server_survives_bad_requests(server: RunningServer) -> None:
    for _, request_bytes, _ in MALFORMED:
        raw(server, request_bytes)
    assert httpx.get(f"{server.url}/000000000000.cfg").status_code == 200


def test_every_response_is_recorded_once_and_flushed_at_stop(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A server of its own, so its fetch table holds exactly these requests."""
    data, env = fleet_env(tmp_path_factory, "records")
    make_fleet(data, env)
    server = start_server(data, env)
    url = server.url
    observed = []
    with httpx.Client(base_url=url, headers={"user-agent": VVX_UA}) as client:
        for path in [
            "/000000000000.cfg",
            f"/{MAC}-license.cfg",
            "/000000000000-license.cfg",
            "/missing.cfg",
            "/%2e%2e/x",
        ] * 20:
            reply = client.get(path)
            observed.append((path, reply.status_code, len(reply.content)))
    # requests the framing refuses before they are complete are fetches too
    refused = [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "/" + "a" * 1023, 414),
        (b"GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", "/big", 431),
        (
            b"PUT /x-app.log HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
            "/x-app.log",
            413,
        ),
        (f"PUT /{MAC}-app.log HTTP/1.1\r\nHost: x\r\n\r\n".encode(), f"/{MAC}-app.log", 411),
        (b"GET /v HTTP/9.9\r\nHost: x\r\n\r\n", "/v", 400),
    ]
    for request_bytes, _, status in refused:
        assert status_of(raw(server, request_bytes)) == status
    summary = server.stop()
    assert "100 requests answered (0 busy), 105 fetch records written, 0 not recorded" in summary
    records = json.loads(server.cli("fetches", "--json", "--limit", "1000"))
    assert [(r["path"], r["status"], r["bytes"]) for r in records[:100]] == observed
    assert [(r["path"], r["status"]) for r in records[100:]] == [(p, s) for _, p, s in refused]
    records = records[:100]
    licenses = [r for r in records if r["path"] == f"/{MAC}-license.cfg"]
    assert {r["mac"] for r in licenses} == {MAC}
    stored = json.loads(server.cli("licenses", "list", "--state", "posted", "--json"))
    phone_digest = next(k["digest"] for k in stored if k["serial"] == MAC)
    assert {r["digest"] for r in licenses} == {phone_digest}
    assert {r["user_agent"] for r in records} == {VVX_UA}
