"""TFTP across several servers (docs/deploy.md): HAProxy has no UDP, so a site's phones are
pointed at a server of their own (DHCP option 66/150, or a DNS name). Two `fleetkey serve` on
one PostgreSQL, each phone of the site booting from one of them over TFTP; a site-license
rollout is confirmed from both servers' records."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleetkey.emulate.addresses import phone_address
from fleetkey.store.store import Store

from tests.deployment import SERVER_HOSTS, Server, start_servers, take_down
from tests.helpers import free_udp_port
from tests.pg import PostgresServer
from tests.serving import (
    SITE_LICENSED,
    cli,
    fleetkey_command,
    server_env,
    wait_for,
    window_around_now,
)

pytestmark = [pytest.mark.postgres, pytest.mark.interop]
SITE = "100000000001"
PHONES = 80  # half booting from each server


def emulate(work: Path, env: dict[str, str], server: Server, group: str, sip: int) -> Any:
    return subprocess.Popen(
        [*fleetkey_command(), "emulate", "--server",
         f"tftp://{server.host}:{server.tftp_port}/{SITE}", "--phones", str(PHONES // 2),
         "--macs", str(work / f"{group}.txt"), "--sip-port", str(sip), "--duration", "600",
         "--report", str(work / f"{group}.json"), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_site_split_over_two_tftp_servers_is_rolled_out_from_both(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database()
    data = tmp_path / "admin"
    env = server_env(data)
    env["FLEETKEY_DB"] = database
    cli(env, "init")
    cli(env, "sites", "add", SITE, "--name", "HQ", "--tz", "UTC", "--window", window_around_now())
    macs = [f"0004f2{i:06x}" for i in range(PHONES)]
    groups = {"first": macs[::2], "second": macs[1::2]}  # DHCP hands each half one server
    ports = {"first": free_udp_port(phone_address(macs[0])),
             "second": free_udp_port(phone_address(macs[1]))}  # fmt: skip
    rows = []
    for group, members in groups.items():
        (tmp_path / f"{group}.txt").write_text("".join(f"{m}\n" for m in members))
        rows += [f"{m},{SITE},VVX_500,sip:{m}@{phone_address(m)}:{ports[group]}" for m in members]
    (tmp_path / "phones.csv").write_text("mac,site,model,contact\n" + "\n".join(rows) + "\n")
    cli(env, "phones", "import", str(tmp_path / "phones.csv"))
    today = datetime.now(UTC).date()
    cli(env, "issue", "site", "--serial", SITE, "--features", "corporate-directory",
        "--expires", f"{today + timedelta(days=20)}")  # fmt: skip
    servers = start_servers(tmp_path, data, database, hosts=SERVER_HOSTS[:2], tftp=True)
    emulators = []
    store = Store(database)
    try:
        emulators = [
            emulate(tmp_path, env, server, group, ports[group])
            for server, group in zip(servers, groups, strict=True)
        ]

        def booted() -> bool:
            with store.transaction() as session:
                return session.scalar(SITE_LICENSED) == PHONES

        wait_for(booted, 180)
        successor = json.loads(cli(env, "issue", "site", "--serial", SITE, "--features",
                                   "corporate-directory", "--expires",
                                   f"{today + timedelta(days=400)}", "--json"))  # fmt: skip
        plan = json.loads(cli(env, "rollout", "plan", "--license", str(successor["license_id"]),
                              "--capacity", "400", "--slot", "5", "--json"))  # fmt: skip
        assert plan["phones"] == PHONES
        report = json.loads(cli(env, "rollout", "run", str(plan["rollout"]),
                                "--confirm-timeout", "30", "--json", timeout=600))  # fmt: skip
        summaries = [server.stop() for server in servers]
    finally:
        for emulator in emulators:
            emulator.terminate()
            emulator.communicate(timeout=120)
        take_down(None, servers)
        store.close()
    assert report["state"] == "done"
    assert report["phones"] == {"confirmed": PHONES}
    expiry = f"{today + timedelta(days=400)}"
    for group, members in groups.items():
        installed = json.loads((tmp_path / f"{group}.json").read_text())["phones"]
        assert {p["mac"] for p in installed} == set(members)
        assert {p["installed"]["site"]["expires"] for p in installed} == {expiry}, group
    # each server served and recorded its half, every answer recorded
    for line in summaries:
        transfers = int(line.split(" TFTP transfers")[0].rsplit(" ", 1)[1].replace(",", ""))
        assert transfers >= PHONES // 2 * 2, line  # both license files at least, each phone
        assert " 0 not recorded" in line, line
