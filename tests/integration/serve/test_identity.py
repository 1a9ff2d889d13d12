"""Who may fetch: per-device Basic and Digest, unknown MACs, X-Forwarded-For, last seen, HTTPS."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.helpers import PASSPHRASE, self_signed
from tests.serving import (
    MAC,
    SITE,
    SP_MAC,
    RunningServer,
    fleet_env,
    fleetkey_command,
    make_fleet,
    records,
    start_server,
    wait_for,
)

PHONES = (
    "mac,site,model,firmware,user,password\n"
    f"{MAC},{SITE},VVX_500,5.9.7.4477,vvx500-a1b2c3,s3cret-vvx\n"
    f"{SP_MAC},{SITE},SPIP_550,,spip550-1a1a1a,s3cret-spip\n"
)
VVX_UA = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application"
VVX = ("vvx500-a1b2c3", "s3cret-vvx")
STRANGER = "0004f2deadbe"


def stranger_ua(mac: str = STRANGER) -> str:
    return f"FileTransport PolycomVVX-VVX_400-UA/6.4.6.2014 (SN:{mac}) Type/Application"


def phone(server: RunningServer, mac: str) -> dict[str, object] | None:
    phones: list[dict[str, object]] = json.loads(server.cli("phones", "list", "--json"))
    return next((p for p in phones if p["mac"] == mac), None)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "auth")
    make_fleet(data, env, PHONES)
    running = start_server(
        data, env, "--http", "127.0.0.1:0", "--auth", "any", "--trusted-proxy", "127.0.0.2"
    )
    yield running
    running.stop()


class TestDeviceAuthentication:
    def test_no_credentials_get_both_challenges(self, guarded: RunningServer) -> None:
        reply = httpx.get(f"{guarded.url}/{MAC}-license.cfg")
        assert reply.status_code == 401
        challenges = reply.headers.get_list("www-authenticate")
        assert challenges[0].startswith('Digest realm="fleetkey", qop="auth", algorithm=MD5')
        assert challenges[1] == 'Basic realm="fleetkey"'

    def test_digest_login_gets_the_phones_own_license(self, guarded: RunningServer) -> None:
        with httpx.Client(base_url=guarded.url, auth=httpx.DigestAuth(*VVX)) as client:
            license_file = client.get(f"/{MAC}-license.cfg")
            site = client.get("/000000000000-license.cfg", headers={"user-agent": VVX_UA})
        assert license_file.status_code == 200
        assert f"Serial='{MAC}'".encode() in license_file.content
        # no (SN:…) in the User-Agent: the login says which phone, hence which site
        assert f"Serial='{SITE}'".encode() in site.content

    def test_basic_login_is_accepted_and_remembered(self, guarded: RunningServer) -> None:
        with httpx.Client(base_url=guarded.url, auth=httpx.BasicAuth(*VVX)) as client:
            replies = [client.get(f"/{MAC}-license.cfg").status_code for _ in range(3)]
        assert replies == [200, 200, 200]

    def test_curl_digest_login(self, guarded: RunningServer) -> None:
        result = subprocess.run(
            [  # noqa: S607  # the real client from PATH
                "curl",
                "-sS",
                "--digest",
                "-u",
                ":".join(VVX),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                f"{guarded.url}/{MAC}-license.cfg",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert result.stdout == "200"

    @pytest.mark.parametrize(
        ("auth", "reason"),
        [
            (httpx.BasicAuth("vvx500-a1b2c3", "wrong"), "wrong password"),
            (httpx.DigestAuth("vvx500-a1b2c3", "wrong"), "wrong Digest response"),
            (httpx.BasicAuth("nobody", "x"), "no phone has the login"),
            (httpx.DigestAuth("nobody", "x"), "wrong Digest response"),
        ],
    )
    def test_wrong_credentials_are_refused(
        self, guarded: RunningServer, auth: httpx.Auth, reason: str
    ) -> None:
        reply = httpx.get(f"{guarded.url}/{MAC}-license.cfg", auth=auth)
        assert reply.status_code == 401
        assert reason in reply.text

    @pytest.mark.parametrize(
        ("header", "reason"),
        [
            ("Basic !!!", "not base64"),
            ("Basic dXNlcg==", "not user:password"),  # "user"
            ("Bearer abc", "bearer authentication is not accepted"),
            ('Digest username="vvx500-a1b2c3", realm="fleetkey"', "lack username, nonce"),
            ('Digest username="x", nonce="1.2", response="0", realm="other"', "realm must be"),
            ('Digest username="x", nonce="1.2", response="0", realm="fleetkey"', "uri does not"),
            ('Digest username="x", realm="fleetkey", nonce="zz", response="0", uri="/a"', ""),
            ("Digest username=x,,", "malformed"),
        ],
    )
    def test_malformed_authorization_is_refused(
        self, guarded: RunningServer, header: str, reason: str
    ) -> None:
        reply = httpx.get(f"{guarded.url}/a", headers={"authorization": header})
        assert reply.status_code == 401
        assert reason in reply.text

    @pytest.mark.parametrize("size", [10, 100_000])  # on the event loop; on a worker thread
    def test_a_phone_uploads_its_log_with_a_digest_login(
        self, guarded: RunningServer, size: int
    ) -> None:
        """A log over 64 KiB is written on a worker thread: its Digest answer is checked once
        (checked twice, it was a replay the second time: 401)."""
        body = b"x" * size
        upload = httpx.put(
            f"{guarded.url}/{MAC}-app.log", content=body, auth=httpx.DigestAuth(*VVX)
        )
        assert upload.status_code in (201, 204)
        assert (guarded.data / "uploads" / MAC / f"{MAC}-app.log").read_bytes() == body

    def test_a_phone_cannot_fetch_another_phones_license(self, guarded: RunningServer) -> None:
        reply = httpx.get(f"{guarded.url}/{SP_MAC}-license.cfg", auth=httpx.DigestAuth(*VVX))
        assert reply.status_code == 403
        upload = httpx.put(
            f"{guarded.url}/{SP_MAC}-app.log", content=b"x", auth=httpx.DigestAuth(*VVX)
        )
        assert upload.status_code == 403
        assert not (guarded.data / "uploads" / SP_MAC).exists()

    def test_another_site_or_phones_files_are_refused_whatever_their_name(
        self, guarded: RunningServer
    ) -> None:
        (guarded.data / "provisioning" / SP_MAC).mkdir(exist_ok=True)
        (guarded.data / "provisioning" / SP_MAC / "phone.cfg").write_text("<secret/>")
        (guarded.data / "provisioning" / f"phone{SP_MAC}.cfg").write_text("<secret/>")
        with httpx.Client(base_url=guarded.url, auth=httpx.DigestAuth(*VVX)) as client:
            replies = {
                path: client.get(path).status_code
                for path in (
                    f"/{SP_MAC}/phone.cfg",
                    f"/phone{SP_MAC}.cfg",
                    "/100000000009/000000000000-license.cfg",
                    f"/{SITE}/000000000000-license.cfg",
                )
            }
        assert replies == {
            f"/{SP_MAC}/phone.cfg": 403,
            f"/phone{SP_MAC}.cfg": 403,
            "/100000000009/000000000000-license.cfg": 403,  # another site's serial
            f"/{SITE}/000000000000-license.cfg": 200,  # its own site
        }

    def test_500_wrong_passwords_from_one_address_do_not_hold_up_a_phone(
        self, guarded: RunningServer
    ) -> None:
        async def attack() -> list[int]:
            attacker = httpx.AsyncHTTPTransport(local_address="127.0.0.7")
            async with httpx.AsyncClient(  # a pool wait of 60 s, not 5: the machine may be busy
                base_url=guarded.url, transport=attacker, timeout=60
            ) as client:
                replies = await asyncio.gather(
                    *(
                        client.get(f"/{MAC}-license.cfg", auth=httpx.BasicAuth(VVX[0], f"x{n}"))
                        for n in range(500)
                    )
                )
            return [r.status_code for r in replies]

        statuses = asyncio.run(attack())
        assert set(statuses) <= {401, 429}
        assert statuses.count(429) >= 490  # refused before scrypt: 5 were checked
        began = time.monotonic()
        with httpx.Client(
            base_url=guarded.url, transport=httpx.HTTPTransport(local_address="127.0.0.8")
        ) as phone:
            reply = phone.get(f"/{MAC}-license.cfg", auth=httpx.BasicAuth(*VVX))
        assert reply.status_code == 200
        assert time.monotonic() - began < 1.0
        with httpx.Client(
            base_url=guarded.url, transport=httpx.HTTPTransport(local_address="127.0.0.7")
        ) as attacker:
            locked = attacker.get(f"/{MAC}-license.cfg", auth=httpx.BasicAuth(VVX[0], "guess"))
            known = attacker.get(f"/{MAC}-license.cfg", auth=httpx.BasicAuth(*VVX))
        assert locked.status_code == 429  # a new guess from the attacking address: at once
        assert 0 < int(locked.headers["retry-after"]) <= 10
        assert known.status_code == 200  # a login already proven is not held back (a NAT)

    def test_replayed_digest_answer_is_refused(self, guarded: RunningServer) -> None:
        with httpx.Client(base_url=guarded.url, auth=httpx.DigestAuth(*VVX)) as client:
            first = client.get(f"/{MAC}-license.cfg")
        authorization = first.request.headers["authorization"]
        replay = httpx.get(
            f"{guarded.url}/{MAC}-license.cfg", headers={"authorization": authorization}
        )
        assert first.status_code == 200
        assert replay.status_code == 401
        assert "stale=true" in replay.headers["www-authenticate"]

    def test_fetches_are_recorded_under_the_logged_in_phone(self, guarded: RunningServer) -> None:
        httpx.get(f"{guarded.url}/000000000000.cfg", auth=httpx.DigestAuth(*VVX))
        wait_for(
            lambda: any(r["path"] == "/000000000000.cfg" for r in records(guarded, MAC)),
        )


class TestForwardedFor:
    def via(self, server: RunningServer, source: str, forwarded: str) -> None:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, auth=httpx.DigestAuth(*VVX)) as client:
            reply = client.get(
                f"{server.url}/{MAC}-license.cfg?via={source}",
                headers={"x-forwarded-for": forwarded},
            )
        assert reply.status_code == 200

    def address_of(self, server: RunningServer, source: str) -> object:
        path = f"/{MAC}-license.cfg?via={source}"
        found = [r for r in records(server, MAC) if r["path"] == path]
        return found[-1]["remote_addr"] if found else None

    def test_trusted_proxy_header_gives_the_client_address(self, guarded: RunningServer) -> None:
        self.via(guarded, "127.0.0.2", "10.20.30.40, 127.0.0.2")
        wait_for(lambda: self.address_of(guarded, "127.0.0.2") is not None)
        assert self.address_of(guarded, "127.0.0.2") == "10.20.30.40"

    def test_header_from_anyone_else_is_ignored(self, guarded: RunningServer) -> None:
        self.via(guarded, "127.0.0.3", "10.20.30.40")
        wait_for(lambda: self.address_of(guarded, "127.0.0.3") is not None)
        assert self.address_of(guarded, "127.0.0.3") == "127.0.0.3"


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "refuse")
    make_fleet(data, env, PHONES)
    running = start_server(data, env, "--http", "127.0.0.1:0", "--unknown", "refuse")
    yield running
    running.stop()


class TestUnknownPhones:
    def test_refuse_answers_403_to_unknown_macs_only(self, refusing: RunningServer) -> None:
        unknown = httpx.get(
            f"{refusing.url}/000000000000.cfg", headers={"user-agent": stranger_ua()}
        )
        by_name = httpx.get(f"{refusing.url}/{STRANGER}-license.cfg")
        known = httpx.get(f"{refusing.url}/{MAC}-license.cfg")
        anonymous = httpx.get(f"{refusing.url}/000000000000.cfg")
        assert (unknown.status_code, by_name.status_code) == (403, 403)
        assert "not in the inventory" in unknown.text
        assert (known.status_code, anonymous.status_code) == (200, 200)

    def test_last_seen_address_and_firmware_are_updated(self, refusing: RunningServer) -> None:
        agent = f"FileTransport PolycomVVX-VVX_500-UA/6.4.6.2014 (SN:{MAC}) Type/Application"
        before = datetime.now(UTC) - timedelta(seconds=1)
        transport = httpx.HTTPTransport(local_address="127.0.0.9")
        with httpx.Client(transport=transport) as client:
            reply = client.get(f"{refusing.url}/000000000000.cfg", headers={"user-agent": agent})
        assert reply.status_code == 200
        wait_for(lambda: (phone(refusing, MAC) or {}).get("last_address") == "127.0.0.9")
        seen = phone(refusing, MAC)
        assert seen is not None
        assert seen["last_user_agent"] == agent
        assert seen["firmware"] == "6.4.6.2014"
        assert datetime.fromisoformat(str(seen["last_seen_at"])) >= before
        assert phone(refusing, STRANGER) is None


@pytest.fixture(scope="module")
def registering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "register")
    make_fleet(data, env, PHONES)
    cert, key = self_signed(data.parent)
    running = start_server(
        data,
        env,
        "--https",
        "127.0.0.1:0",
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--http",
        "off",
        "--unknown",
        "register",
        "--register-site",
        SITE,
    )
    yield running
    running.stop()


class TestRegistrationAndHttps:
    def test_https_serves_with_the_operators_certificate(self, registering: RunningServer) -> None:
        assert registering.url.startswith("https://")
        cert = registering.data.parent / "server.crt"
        reply = httpx.get(
            f"{registering.url}/{MAC}-license.cfg", verify=ssl.create_default_context(cafile=cert)
        )
        assert reply.status_code == 200
        result = subprocess.run(
            [  # noqa: S607  # the real client from PATH
                "curl",
                "-sS",
                "--cacert",
                str(cert),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                f"{registering.url}/000000000000.cfg",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert result.stdout == "200"
        wait_for(lambda: any(r["protocol"] == "https" for r in records(registering, MAC)))

    def test_unknown_phone_is_registered_at_the_registration_site(
        self, registering: RunningServer
    ) -> None:
        cert = registering.data.parent / "server.crt"
        newcomer = "0004f2c0ffee"
        reply = httpx.get(
            f"{registering.url}/000000000000.cfg",
            headers={"user-agent": stranger_ua(newcomer)},
            verify=ssl.create_default_context(cafile=cert),
        )
        assert reply.status_code == 200
        wait_for(lambda: phone(registering, newcomer) is not None)
        added = phone(registering, newcomer)
        assert added is not None
        assert (added["site"], added["model"], added["firmware"]) == (SITE, "VVX_400", "6.4.6.2014")
        events = json.loads(registering.cli("audit", "list", "--json"))
        assert any(e["action"] == "phones.register" for e in events)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--https", "127.0.0.1:0"), "--https needs --cert and --key"),
        (("--cert", "x.crt"), "--cert and --key go with --https"),
        (("--https", ":0", "--cert", "missing.crt", "--key", "missing.key"), "cannot read"),
        (("--http", "off"), "nothing to serve"),
        (("--trusted-proxy", "not-an-ip"), "is not an IP address or network"),
        (
            ("--unknown", "register", "--register-site", "999999999999"),
            "site 999999999999 does not exist",
        ),
        (("--register-site", "Atlantis"), "site 'Atlantis' does not exist: no site has that"),
    ],
)
def test_bad_serve_options_are_refused_clearly(
    initialized: Path, args: tuple[str, ...], message: str
) -> None:
    data = initialized  # a copy of the session's `fleetkey init`
    env = {
        "FLEETKEY_DATA": str(data),
        "FLEETKEY_KEY_PASSPHRASE": PASSPHRASE,
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [*fleetkey_command(), "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=data.parent,
    )
    assert result.returncode == 1
    assert message in result.stderr
