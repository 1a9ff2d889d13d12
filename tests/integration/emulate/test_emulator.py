"""`fleetkey emulate` against a real `fleetkey serve`: SIP interop with sipsak, malformed SIP,
and a site license that lapses and is replaced while the phones run on a fast clock."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleetkey.emulate.addresses import generated_mac, phone_address

from tests.helpers import free_udp_port
from tests.helpers import sip_exchange as sip
from tests.helpers import sip_request as request
from tests.serving import (
    SITE,
    RunningServer,
    fleet_env,
    fleetkey_command,
    make_fleet,
    records,
    run_fleetkey,
    start_server,
    wait_for,
)

PHONES = 5
SLOW_S = 30.0  # an emulator starting or rebooting on a busy CI box
FIRST = [phone_address(generated_mac(i)) for i in range(PHONES)]  # derived from their MACs
CUSTOM = phone_address("0004f2aa0001")


@dataclass
class Emulation:
    server: RunningServer
    process: subprocess.Popen[str]
    report: Path
    sip_port: int

    def finish(self, *, now: bool = False) -> dict[str, object]:
        """The run's report once it has ended: at its --duration, or ``now`` (SIGTERM: it ends
        early with exit 0 and writes its report; for a test whose exchanges are done and that
        asserts only what they did, not waiting out the rest of the duration idle)."""
        if now:
            self.process.terminate()
        _, err = self.process.communicate(timeout=120)
        assert self.process.returncode == 0, err
        document: dict[str, object] = json.loads(self.report.read_text())
        return document


def start_emulator(server: RunningServer, *args: str, duration: float) -> Emulation:
    sip_port = free_udp_port()
    report = server.data.parent / f"report-{sip_port}.json"
    process = subprocess.Popen(
        [*fleetkey_command(), "emulate", "--server", f"{server.url}/{SITE}",
         "--phones", str(PHONES), "--sip-port", str(sip_port), "--duration", str(duration),
         "--report", str(report), "--json", *args],
        env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return Emulation(server, process, report, sip_port)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data, env = fleet_env(tmp_path_factory, "emulate")
    make_fleet(data, env)
    running = start_server(data, env)
    yield running
    running.stop()


def wait_until_listening(emulation: Emulation, address: str = FIRST[0]) -> None:
    """The emulator is up once a phone answers OPTIONS (it may take a while on a busy box)."""
    port = emulation.sip_port
    wait_for(
        lambda: (sip(address, port, request("OPTIONS", port), 0.3) or "").startswith("SIP/2.0"),
        SLOW_S,
    )


def wait_until_booted(server: RunningServer, mac: str) -> None:
    """The phone finished its power-on boot once the server has its app log (the last request
    of a boot): a check-sync before that is absorbed by the boot, as on a real phone."""
    wait_for(lambda: any(str(r["path"]).endswith("-app.log") for r in records(server, mac)), SLOW_S)


class TestSip:
    def test_sipsak_check_sync_gets_200_and_reboots_the_phone(
        self, server: RunningServer, tmp_path: Path
    ) -> None:
        emulation = start_emulator(server, duration=12)
        wait_until_listening(emulation)
        wait_until_booted(server, generated_mac(1))
        notify = tmp_path / "notify.sip"
        notify.write_text(request("NOTIFY", emulation.sip_port, event="check-sync;reboot=true"))
        target = f"sip:phone@{FIRST[1]}:{emulation.sip_port}"
        shot = subprocess.run(
            ["sipsak", "-vv", "-f", str(notify), "-s", target],  # noqa: S607  # from PATH
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert shot.returncode == 0, shot.stdout + shot.stderr
        assert "SIP/2.0 200 OK" in shot.stdout
        options = subprocess.run(
            ["sipsak", "-s", target],  # noqa: S607
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert options.returncode == 0, options.stdout + options.stderr
        report = emulation.finish(now=True)  # the reboot is noted as the 200 is sent
        phones = report["phones"]
        assert isinstance(phones, list)
        reasons = {p["address"]: [r["reason"] for r in p["reboots"]] for p in phones}
        assert reasons[FIRST[1]] == ["power-on", "check-sync"]
        assert reasons[FIRST[0]] == ["power-on"]

    def test_malformed_sip_gets_4xx_or_is_dropped_and_the_phone_lives_on(
        self, server: RunningServer
    ) -> None:
        emulation = start_emulator(server, duration=10)
        wait_until_listening(emulation)
        port = emulation.sip_port
        cases: list[tuple[str, str | None]] = [
            ("garbage \x00\x01", None),
            ("SIP/2.0 200 OK\r\nVia: x\r\n\r\n", None),  # a response: dropped
            (request("NOTIFY", port, drop="Call-ID"), "SIP/2.0 400 Bad Request"),
            (request("NOTIFY", port, drop="Via"), None),  # nowhere to answer
            (request("NOTIFY", port).replace("CSeq: 1 NOTIFY", "CSeq: x NOTIFY"), "SIP/2.0 400"),
            (request("NOTIFY", port).replace("CSeq: 1 NOTIFY", "CSeq: 1 INVITE"), "SIP/2.0 400"),
            (request("NOTIFY", port, event="presence"), "SIP/2.0 489 Bad Event"),
            (request("INVITE", port), "SIP/2.0 405 Method Not Allowed"),
            (request("FROBNICATE", port), "SIP/2.0 501 Not Implemented"),
            ("NOTIFY sip:x SIP/2.0\r\nbroken header line\r\n\r\n", None),
            ("NOTIFY " + "a" * 9000 + " SIP/2.0\r\n\r\n", None),  # oversized
        ]
        for message, expected in cases:
            answer = sip(FIRST[2], port, message, timeout=0.5)
            if expected is None:
                assert answer is None, message[:40]
            else:
                assert answer is not None, message[:40]
                assert answer.startswith(expected), answer
        assert (sip(FIRST[2], port, request("OPTIONS", port)) or "").startswith("SIP/2.0 200 OK")
        report = emulation.finish(now=True)
        phones = report["phones"]
        assert isinstance(phones, list)
        third = next(p for p in phones if p["address"] == FIRST[2])
        assert [r["reason"] for r in third["reboots"]] == ["power-on"]


def view_read_since(server: RunningServer, since: float) -> bool:
    """Whether ``server``'s posted view was last read from the store after ``since`` (this
    process's ``time.monotonic()``), as its ``/healthz`` says (``view_age_s``)."""
    asked = time.monotonic()
    age = httpx.get(f"{server.url}/healthz", timeout=30).json()["view_age_s"]
    return age is not None and age < asked - since


def wait_for_view(server: RunningServer) -> None:
    """Wait until ``server`` serves what was posted before this call: a view read that began
    after it (a sleep of 2.5 s bet on it before). A read that ended after it may have begun
    before; the server reads one at a time, every second: the read after that one did not."""
    since = time.monotonic()
    wait_for(lambda: view_read_since(server, since))
    read = time.monotonic()
    wait_for(lambda: view_read_since(server, read))


def site_fetches(server: RunningServer) -> list[dict[str, object]]:
    found: list[dict[str, object]] = json.loads(
        server.cli("fetches", "--limit", "100000", "--json")
    )
    return [f for f in found if str(f["path"]).endswith("/000000000000-license.cfg")]


def test_lapsed_site_license_then_successor_and_check_sync(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Phones reboot at the license poll after expiry, lose the features, keep them lost
    (R8) until the successor is posted and check-sync sent; then every phone has it."""
    data, env = fleet_env(tmp_path_factory, "lapse")
    make_fleet(data, env)
    subprocess.run(
        [*fleetkey_command(), "issue", "site", "--serial", SITE, "--features",
         "corporate-directory", "--expires", "2027-03-01", "--force"],  # shorter than the 2030 key
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (data / "provisioning" / "sip.ld").write_bytes(os.urandom(400_000))  # make_fleet's master's
    server = start_server(data, env)
    try:
        # virtual 2027-03-01 20:00 at 2 virtual hours per real second: the 02:00 license poll
        # after expiry comes 3 real seconds in
        emulation = start_emulator(
            server, "--clock-start", "2027-03-01T20:00:00+00:00", "--speed", "7200",
            duration=24,
        )  # fmt: skip
        wait_for(lambda: len(site_fetches(server)) >= 2 * PHONES, SLOW_S)  # power-on + expiry
        successor = subprocess.run(
            [*fleetkey_command(), "issue", "site", "--serial", SITE, "--features",
             "corporate-directory", "--expires", "2028-03-01", "--json"],
            env=env, check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert json.loads(successor.stdout)["state"] == "posted"
        wait_for_view(server)  # the server serves the successor (it reads every second)
        notify = request("NOTIFY", emulation.sip_port, event="check-sync;reboot=true")
        for address in FIRST:
            answer = sip(address, emulation.sip_port, notify)
            assert (answer or "").startswith("SIP/2.0 200 OK")
        report = emulation.finish()
    finally:
        server.stop()
    phones = report["phones"]
    assert isinstance(phones, list)
    assert len(phones) == PHONES
    for phone in phones:
        reasons = [b["reason"] for b in phone["boots"]]
        assert reasons[:3] == ["power-on", "license-expired", "check-sync"], reasons
        features = [b["features"] for b in phone["boots"]]
        assert features[0] == [0]  # corporate-directory at power-on
        assert features[1] == []  # lost: the server still had only the lapsed file
        assert features[2] == [0]  # back with the successor
        assert phone["installed"]["site"]["expires"] == "2028-03-01"
        assert phone["booted_with_expired"] is False
        # every boot read the image's header; none downloaded it (the license lapsed, the
        # firmware did not change)
        images = [(f["status"], f["bytes"]) for f in phone["fetches"] if f["name"] == "sip.ld"]
        assert len(images) == len(phone["boots"]) >= 3
        assert set(images) == {(206, 512)}
        assert phone["firmware"]["downloads"] == 0


def test_phones_boot_over_tftp_and_every_transfer_is_recorded(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data, env = fleet_env(tmp_path_factory, "emulate-tftp")
    make_fleet(data, env)
    server = start_server(data, env, "--http", "off", "--tftp", "127.0.0.1:0", "--tftp-uploads")
    try:
        result = subprocess.run(
            [*fleetkey_command(), "emulate", "--server", f"tftp://127.0.0.1:{server.port}/{SITE}",
             "--phones", "40", "--until-booted", "--duration", "60", "--sip-port", "0", "--json"],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        summary = json.loads(result.stdout)
    finally:
        stopped = server.stop()
    assert summary["booted"] == 40
    assert summary["phones_with_errors"] == 0
    assert summary["site_license_expiry"] == {"2030-12-31": 40}
    assert summary["answers_by_status"]["201"] == 80  # boot and app logs by WRQ
    assert (
        f"{summary['requests']:,} TFTP transfers, {summary['requests']:,} fetch records" in stopped
    )
    # told in TFTP's words, as the server's records name the requests (it said PUT 201, while
    # the server recorded WRQ, 204 for a log it replaced)
    assert summary["protocol"] == "tftp"
    assert summary["answers"]["WRQ ACK"] == 80
    assert not any(k.startswith(("GET", "PUT")) for k in summary["answers"]), summary["answers"]
    assert sum(summary["answers"].values()) == summary["requests"]
    fetched = json.loads(run_fleetkey(env, "fetches", "--limit", "100000", "--json").stdout)
    assert {r["method"] for r in fetched} == {k.split()[0] for k in summary["answers"]}


def test_a_phone_with_a_sip_login_challenges_and_accepts_the_right_digest(
    server: RunningServer, tmp_path: Path
) -> None:
    macs = tmp_path / "macs.csv"
    macs.write_text("mac,user,password\n0004f2aa0001,1001,s3cret\n")
    sip_port = free_udp_port()
    process = subprocess.Popen(
        [*fleetkey_command(), "emulate", "--server", f"{server.url}/{SITE}", "--phones", "1",
         "--macs", str(macs), "--sip-port", str(sip_port), "--duration", "8", "--json"],
        env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: sip(CUSTOM, sip_port, request("OPTIONS", sip_port), 0.3), SLOW_S)
        challenge = sip(CUSTOM, sip_port, request("OPTIONS", sip_port))
        assert challenge is not None
        assert challenge.startswith("SIP/2.0 401 Unauthorized")
        assert 'Digest realm="PolycomSPIP"' in challenge
        sipsak = subprocess.run(
            ["sipsak", "-s", f"sip:1001@{CUSTOM}:{sip_port}", "-a", "s3cret", "-u", "1001"],  # noqa: S607
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert sipsak.returncode == 0, sipsak.stdout + sipsak.stderr
    finally:
        process.terminate()  # done: not the rest of its --duration idle
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
