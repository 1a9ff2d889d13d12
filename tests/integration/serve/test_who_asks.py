"""Real phones at three sites, booting the way they ship: the default User-Agent (no (SN:…)),
TFTP, no site prefix in any path, and two of them behind one NAT address. Each gets its own
site's license, every site-license record names the phone, a rollout over TFTP is confirmed
phone by phone, and the shared address is recorded as shared, never as a guess."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from fleetkey.emulate.addresses import phone_address
from fleetkey.store.database import default_url
from fleetkey.store.schema import FetchRow, LicenseRow, RolloutTargetRow
from fleetkey.store.store import Store
from fleetkey.store.texts import path_of

from tests.helpers import free_udp_port
from tests.serving import (
    BOOTED,
    cli,
    fleet_env,
    fleetkey_command,
    fleetkey_in_process,
    init_data,
    start_server,
    wait_for,
    window_around_now,
)

SITES = {"100000000001": "Berlin", "100000000002": "New York", "100000000003": "Tokyo"}
PER_SITE = 4
DEFAULT_UA = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application"
SITE_FILE = "000000000000-license.cfg"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, str]]:
    """Three sites of four phones (SIP contacts on their emulated addresses), a license each."""
    data, env = fleet_env(tmp_path_factory, "three-sites")
    init_data(data, env)
    sip_port = free_udp_port()
    phones: dict[str, str] = {}  # mac → site
    rows = []
    for n, (serial, name) in enumerate(SITES.items()):
        fleetkey_in_process(env, "sites", "add", serial, "--name", name, "--tz", "UTC",
                            "--window", window_around_now())  # fmt: skip
        fleetkey_in_process(env, "issue", "site", "--serial", serial, "--features",
                            "corporate-directory", "--expires",
                            f"{datetime.now(UTC).date() + timedelta(days=20)}")  # fmt: skip
        for k in range(PER_SITE):
            index = n * PER_SITE + k
            mac = f"0004f2{index:06x}"
            phones[mac] = serial
            rows.append(f"{mac},{serial},VVX_500,sip:{mac}@{phone_address(mac)}:{sip_port}")
    (data.parent / "phones.csv").write_text("mac,site,model,contact\n" + "\n".join(rows) + "\n")
    fleetkey_in_process(env, "phones", "import", str(data.parent / "phones.csv"))
    (data.parent / "macs.txt").write_text("\n".join(phones) + "\n")
    env["SIP_PORT"] = str(sip_port)
    return data, env, phones


def site_of_served(body: bytes) -> str:
    return body.split(b"Serial='", 1)[1][:12].decode()


def test_untagged_phones_over_http_get_their_own_sites_license(
    fleet: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    data, env, phones = fleet
    server = start_server(data, env)
    try:
        for n, (mac, site) in enumerate(phones.items()):
            transport = httpx.HTTPTransport(local_address=f"127.30.0.{n + 1}")
            with httpx.Client(
                base_url=server.url, transport=transport, headers={"user-agent": DEFAULT_UA}
            ) as phone:
                assert phone.get(f"/{mac}.cfg").status_code == 404  # it names itself first
                assert phone.get("/000000000000.cfg").status_code == 404
                reply = phone.get(f"/{SITE_FILE}")
            assert reply.status_code == 200
            assert site_of_served(reply.content) == site, mac
    finally:
        server.stop()
    records = json.loads(fleetkey_in_process(env, "fetches", "--json", "--limit", "10000").stdout)
    site_records = [r for r in records if r["path"] == f"/{SITE_FILE}" and r["protocol"] == "http"]
    assert len(site_records) == len(phones)
    assert {(r["mac"], r["identified_by"]) for r in site_records} == {
        (mac, "address") for mac in phones
    }


def test_phones_booting_over_tftp_get_their_sites_license_and_a_rollout_is_confirmed(
    fleet: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    data, env, phones = fleet
    work = data.parent
    server = start_server(data, env, "--http", "off", "--tftp", "127.0.0.1:0", "--tftp-uploads")
    store = Store(default_url(data))
    emulator = subprocess.Popen(
        [*fleetkey_command(), "emulate", "--server", server.url, "--phones", str(len(phones)),
         "--macs", str(work / "macs.txt"), "--sip-port", env["SIP_PORT"], "--duration", "300",
         "--report", str(work / "report.json"), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        licensed = (
            select(FetchRow.mac)
            .join(path_of, path_of.id == FetchRow.path_id)
            .where(FetchRow.protocol == "tftp", path_of.text == SITE_FILE, FetchRow.status == 200)
        )

        def booted() -> bool:  # and each boot ended: a check-sync mid-boot is absorbed (R9)
            with store.transaction() as session:
                licensed_all = set(session.scalars(licensed)) >= set(phones)
                return licensed_all and session.scalar(BOOTED) == len(phones)

        wait_for(booted, 60)
        with store.transaction() as session:
            first = session.execute(
                select(FetchRow.mac, FetchRow.identified_by, FetchRow.digest)
                .join(path_of, path_of.id == FetchRow.path_id)
                .where(FetchRow.protocol == "tftp", path_of.text == SITE_FILE)
            ).all()
            served = {
                digest: serial
                for digest, serial in session.execute(
                    select(LicenseRow.digest, LicenseRow.serial).where(LicenseRow.type == "Site")
                )
            }
        assert all(mac is not None and via == "address" for mac, via, _ in first)
        assert {mac: served[digest] for mac, _, digest in first} == phones  # its own site's
        successors = {
            serial: json.loads(fleetkey_in_process(
                env, "issue", "site", "--serial", serial, "--features", "corporate-directory",
                "--expires", f"{datetime.now(UTC).date() + timedelta(days=400)}", "--json",
            ).stdout)["license_id"]
            for serial in SITES
        }  # fmt: skip
        for serial, license_id in successors.items():
            plan = json.loads(fleetkey_in_process(
                env, "rollout", "plan", "--license", str(license_id), "--capacity", "200",
                "--slot", "1", "--json").stdout)  # fmt: skip
            assert plan["phones"] == PER_SITE, serial
            run = ["rollout", "run", str(plan["rollout"]), "--confirm-timeout", "20", "--json"]
            report = json.loads(cli(env, *run, timeout=180))
            assert report["state"] == "done"
            assert report["phones"] == {"confirmed": PER_SITE}, report
        with store.transaction() as session:
            attempts = Counter(session.scalars(select(RolloutTargetRow.attempts)))
        assert attempts == {1: len(phones)}  # every phone confirmed at its first check-sync
    finally:
        emulator.terminate()
        _, err = emulator.communicate(timeout=120)
        server.stop()
        store.close()
    assert emulator.returncode == 0, err
    report_phones = json.loads((work / "report.json").read_text())["phones"]
    installed = {p["mac"]: p["installed"]["site"]["serial"] for p in report_phones}
    assert installed == phones


def test_two_phones_behind_one_address_are_recorded_as_shared_not_as_each_other(
    fleet: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    data, env, phones = fleet
    berlin, tokyo = next(iter(phones)), list(phones)[-1]
    server = start_server(data, env)
    nat = httpx.HTTPTransport(local_address="127.77.0.1")
    try:
        with httpx.Client(
            base_url=server.url, transport=nat, headers={"user-agent": DEFAULT_UA}
        ) as shared:
            assert shared.get(f"/{berlin}.cfg").status_code == 404
            assert shared.get(f"/{tokyo}.cfg").status_code == 404
            reply = shared.get(f"/{SITE_FILE}")
    finally:
        server.stop()
    # phones of two sites: not the tree's default (another site's key for one of them), no
    # guess; the phone keeps what it has (serve/fetching.py since the admin trial of 16-17)
    assert reply.status_code == 404
    records = json.loads(fleetkey_in_process(env, "fetches", "--json", "--limit", "10000").stdout)
    from_nat = [r for r in records if r["remote_addr"] == "127.77.0.1"]
    assert [(r["path"], r["mac"], r["identified_by"]) for r in from_nat] == [
        (f"/{berlin}.cfg", berlin, "name"),
        (f"/{tokyo}.cfg", tokyo, "name"),
        (f"/{SITE_FILE}", None, "ambiguous"),
    ]
