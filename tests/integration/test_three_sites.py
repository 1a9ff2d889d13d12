"""End to end, three sites kept apart: Berlin, New York and Tokyo each get a site key in their own
place; emulated phones pointed at their site's directory boot over HTTP and over TFTP from a real
`fleetkey serve` and install their own site's key, never another's, and the tree has no default
nobody asked for. New York's shorter successor is refused without --force; forced, then rolled
back; phones told by SIP check-sync fetch the forced key (and keep the longer one, R7), then the
restored one, as the server's fetch records and the phones' own reports show."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetkey.core.sip import Contact
from fleetkey.emulate.addresses import phone_address
from fleetkey.ops.notifier import Notifier

from tests.helpers import free_udp_port
from tests.serving import fleet_env, fleetkey_command, fleetkey_in_process, init_data, wait_for
from tests.serving import run_fleetkey as cli

SITE_FILE = "000000000000-license.cfg"
SITES = {"100000000001": ("Berlin", "2030-12-31"), "100000000002": ("New York", "2031-06-30"),
         "100000000003": ("Tokyo", "2032-01-31")}  # fmt: skip
NEW_YORK = "100000000002"
PHONES = 2  # per site and protocol


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def macs_file(work: Path, name: str, first: int) -> Path:
    path = work / f"{name}.macs"
    path.write_text("".join(f"0004f2{first + i:06x}\n" for i in range(PHONES)))
    return path


def emulate(env: dict[str, str], server: str, macs: Path, report: Path) -> list[dict[str, Any]]:
    """Boot the phones of ``macs`` from ``server`` once each; their report."""
    cli(env, "emulate", "--server", server, "--phones", str(PHONES), "--macs", str(macs),
        "--until-booted", "--duration", "60", "--sip-port", "0",
        "--report", str(report))  # fmt: skip
    phones: list[dict[str, Any]] = json.loads(report.read_text())["phones"]
    return phones


def site_fetches(env: dict[str, str], mac: str) -> list[dict[str, Any]]:
    found = json.loads(fleetkey_in_process(env, "fetches", "--mac", mac, "--json").stdout)
    return [f for f in found if f["path"].endswith(SITE_FILE) and f["status"] == 200]


def served(http_url: str) -> bytes:
    """What the server answers for New York's site license now (its view refreshes each second:
    a check-sync sent before would boot the phones into the key posted before)."""
    return httpx.get(f"{http_url}/{NEW_YORK}/{SITE_FILE}").content


def check_sync(sip_port: int, macs: list[str]) -> None:
    async def send() -> None:
        async with Notifier() as notifier:
            for mac in macs:
                contact = Contact.parse(f"sip:phone@{phone_address(mac)}:{sip_port}")
                result = await notifier.notify(contact, reboot=True)
                assert result.ok, result

    asyncio.run(send())


@pytest.mark.slow
def test_three_sites_apart_a_shorter_successor_forced_then_rolled_back(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data, env = fleet_env(tmp_path_factory, "three-sites-apart")
    work, tree = data.parent, data / "provisioning"
    init_data(data, env)
    for serial, (name, expires) in SITES.items():
        fleetkey_in_process(env, "sites", "add", serial, "--name", name, "--tz", "UTC",
                            "--window", "22:00-05:00")  # fmt: skip
        fleetkey_in_process(env, "issue", "site", "--serial", serial, "--features",
                            "corporate-directory", "--expires", expires)  # fmt: skip
    places = {serial: tree / serial / SITE_FILE for serial in SITES}
    assert sorted(p.relative_to(tree) for p in tree.rglob("*-license.cfg")) == sorted(
        p.relative_to(tree) for p in places.values()
    )
    server = subprocess.Popen(
        [*fleetkey_command(), "serve", "--http", "127.0.0.1:0", "--tftp", "127.0.0.1:0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    http_url = server.stdout.readline().split()[2]
    tftp_url = server.stdout.readline().split()[2]
    assert (http_url[:7], tftp_url[:7]) == ("http://", "tftp://")
    emulator = None
    try:
        # phones the inventory does not place, pointed at their site's directory
        for n, serial in enumerate(SITES):
            for m, url in enumerate((http_url, tftp_url)):
                macs = macs_file(work, f"{serial}-{m}", 0x100 * (2 * n + m + 1))
                phones = emulate(env, f"{url}/{serial}", macs, work / f"{serial}-{m}.json")
                installed = {p["installed"]["site"]["serial"] for p in phones}
                digests = {p["installed"]["site"]["file_digest"] for p in phones}
                assert (installed, digests) == ({serial}, {digest(places[serial])}), url
        assert httpx.get(f"{http_url}/{SITE_FILE}").status_code == 404  # no default, unasked

        # New York's phones run, answering check-sync, with the key they booted with
        sip_port = free_udp_port()
        macs = [f"0004f2{0xA00 + i:06x}" for i in range(PHONES)]
        (work / "ny.macs").write_text("\n".join(macs) + "\n")
        emulator = subprocess.Popen(
            [*fleetkey_command(), "emulate", "--server", f"{http_url}/{NEW_YORK}", "--phones",
             str(PHONES), "--macs", str(work / "ny.macs"), "--sip-port", str(sip_port),
             "--duration", "300", "--report", str(work / "ny.json"), "--json",
             "--tag-serial"],  # named by their User-Agent: the addresses served other MACs
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        first = digest(places[NEW_YORK])
        wait_for(lambda: all(site_fetches(env, mac) for mac in macs), 60)

        shorter = ["issue", "site", "--serial", NEW_YORK, "--features", "corporate-directory",
                   "--expires", "2030-01-20"]  # fmt: skip
        refused = fleetkey_in_process(env, *shorter, code=1)
        assert refused.stderr.startswith(
            f"error: issuing and posting the Site key for {NEW_YORK} would take from phones "
            "what they have:\n  it lasts until 2030-01-20, license 2 until 2031-06-30: phones "
            "that installed license 2 ignore it (R7)\n"
        )
        assert digest(places[NEW_YORK]) == first
        fleetkey_in_process(env, *shorter, "--force")
        forced = digest(places[NEW_YORK])
        assert forced != first
        wait_for(lambda: served(http_url) == places[NEW_YORK].read_bytes(), 10)  # the view
        check_sync(sip_port, macs)
        wait_for(lambda: all(f["digest"] == forced for f in [
            site_fetches(env, mac)[-1] for mac in macs]), 60)  # fmt: skip

        rolled = json.loads(
            fleetkey_in_process(env, "licenses", "rollback", NEW_YORK, "--json").stdout
        )
        assert (rolled["license"]["id"], rolled["replaces"]) == (2, 4)
        assert digest(places[NEW_YORK]) == first
        wait_for(lambda: served(http_url) == places[NEW_YORK].read_bytes(), 10)  # the view
        check_sync(sip_port, macs)
        wait_for(lambda: all(f["digest"] == first for f in [
            site_fetches(env, mac)[-1] for mac in macs]), 60)  # fmt: skip
        for serial in SITES:  # the other sites' files never moved
            if serial != NEW_YORK:
                assert (tree / serial / SITE_FILE).is_file()
        assert not (tree / SITE_FILE).exists()
    finally:
        if emulator is not None:
            emulator.send_signal(signal.SIGTERM)
            _, err = emulator.communicate(timeout=60)
            assert emulator.returncode == 0, err
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    phones = json.loads((work / "ny.json").read_text())["phones"]
    assert {p["installed"]["site"]["expires"] for p in phones} == {"2031-06-30"}  # R7, restored
    assert [sum(r["reason"] == "check-sync" for r in p["reboots"]) for p in phones] == [2, 2]
    audit = fleetkey_in_process(env, "audit", "list", "--json").stdout
    actions = [e["action"] for e in json.loads(audit)]
    assert actions[-2:] == ["license.post", "license.rollback"]
