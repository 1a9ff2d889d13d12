"""Emulated phones boot over FTP from a real `fleetkey serve --ftp`: 1,000 of them, half with
their own provisioning login and half with the shared factory login, every file recorded with
the right MAC; then a site-license rollout over FTP, confirmed from the FTP fetch records."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import func, select

from fleetkey.emulate.addresses import phone_address
from fleetkey.store.database import default_url
from fleetkey.store.schema import FetchRow
from fleetkey.store.store import Store
from fleetkey.store.texts import path_of

from tests.helpers import free_udp_port
from tests.serving import (
    cli,
    fleet_env,
    fleetkey_command,
    fleetkey_in_process,
    init_data,
    start_ftp,
    wait_for,
    window_around_now,
)

SITE = "100000000001"


def test_1000_phones_boot_over_ftp_with_their_own_or_the_shared_login(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    phones = 1000
    data, env = fleet_env(tmp_path_factory, "ftp-fleet")
    build = partial(fleetkey_in_process, env)  # in this process: a fleet built, not tested
    work = data.parent
    macs = [f"0004f2{i:06x}" for i in range(phones)]
    own = {mac: (f"user-{mac}", f"pw-{mac}") for mac in macs[::2]}  # every other phone
    init_data(data, env)
    build("sites", "add", SITE, "--name", "HQ", "--tz", "UTC", "--window", "22:00-05:00")
    rows = [f"{m},{SITE},VVX_500,{own[m][0] if m in own else ''},{own[m][1] if m in own else ''}"
            for m in macs]  # fmt: skip
    (work / "phones.csv").write_text("mac,site,model,user,password\n" + "\n".join(rows) + "\n")
    build("phones", "import", str(work / "phones.csv"))
    build("issue", "site", "--serial", SITE, "--features", "corporate-directory",
          "--expires", "2031-12-31")  # fmt: skip
    (work / "macs.txt").write_text("".join(f"{m}\n" for m in macs))
    (work / "logins.csv").write_text("".join(f"{m},{u},{p}\n" for m, (u, p) in own.items()))
    server = start_ftp(data, env, "--ftp-shared-login", "PlcmSpIp:PlcmSpIp",
                       "--ftp-per-address", "4", "--ftp-max-logins", "512")  # fmt: skip
    try:
        done = subprocess.run(
            [*fleetkey_command(), "emulate", "--server", f"ftp://127.0.0.1:{server.port}/{SITE}",
             "--phones", str(phones), "--macs", str(work / "macs.txt"), "--sip-port", "0",
             "--credentials", str(work / "logins.csv"), "--duration", "300", "--until-booted",
             "--concurrency", "128", "--json"],
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert (summary["booted"], summary["phones_with_errors"]) == (phones, 0), done.stdout
    finally:
        server.running.stop()
    store = Store(default_url(data))
    try:
        with store.transaction() as session:
            rows_by_address: dict[str, set[str | None]] = defaultdict(set)
            via: dict[str, set[str | None]] = defaultdict(set)
            for address, mac, identified in session.execute(
                select(FetchRow.remote_addr, FetchRow.mac, FetchRow.identified_by).where(
                    FetchRow.protocol == "ftp"
                )
            ):
                rows_by_address[address].add(mac)
                via[mac].add(identified)
            licensed = session.scalar(
                select(func.count(func.distinct(FetchRow.mac)))
                .join(path_of, path_of.id == FetchRow.path_id)
                .where(
                    FetchRow.protocol == "ftp",
                    path_of.text == f"/{SITE}/000000000000-license.cfg",
                    FetchRow.status == 200,
                )
            )
    finally:
        store.close()
    expected = {phone_address(mac): {mac} for mac in macs}
    assert dict(rows_by_address) == expected  # every record of every phone names that phone
    assert licensed == phones
    assert all(via[mac] == ({"login"} if mac in own else {"name"}) for mac in macs)


def test_a_site_license_rollout_over_ftp_is_confirmed_from_the_ftp_records(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    phones = 200
    data, env = fleet_env(tmp_path_factory, "ftp-rollout")
    build = partial(fleetkey_in_process, env)  # in this process: a fleet built, not tested
    work = data.parent
    sip_port = free_udp_port()
    macs = [f"0004f2{i:06x}" for i in range(phones)]
    init_data(data, env)
    build("sites", "add", SITE, "--name", "HQ", "--tz", "UTC", "--window", window_around_now())
    rows = [f"{m},{SITE},VVX_500,sip:{m}@{phone_address(m)}:{sip_port}" for m in macs]
    (work / "phones.csv").write_text("mac,site,model,contact\n" + "\n".join(rows) + "\n")
    build("phones", "import", str(work / "phones.csv"))
    (work / "macs.txt").write_text("\n".join(macs) + "\n")
    today = datetime.now(UTC).date()
    build("issue", "site", "--serial", SITE, "--features", "corporate-directory",
          "--expires", f"{today + timedelta(days=20)}")  # fmt: skip
    server = start_ftp(data, env, "--ftp-shared-login", "PlcmSpIp:PlcmSpIp")
    store = Store(default_url(data))
    emulator = subprocess.Popen(
        [*fleetkey_command(), "emulate", "--server", f"ftp://127.0.0.1:{server.port}/{SITE}",
         "--phones", str(phones), "--macs", str(work / "macs.txt"), "--sip-port", str(sip_port),
         "--duration", "600", "--report", str(work / "report.json"), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        licensed = (
            select(func.count(func.distinct(FetchRow.mac)))
            .join(path_of, path_of.id == FetchRow.path_id)
            .where(
                FetchRow.protocol == "ftp",
                path_of.text.like("%000000000000-license.cfg"),
                FetchRow.status == 200,
            )
        )

        def booted() -> bool:
            with store.transaction() as session:
                return session.scalar(licensed) == phones

        try:
            wait_for(booted, 180)
        except AssertionError:  # say how far the boots got, and what the phones were answered
            emulator.terminate()
            out, err = emulator.communicate(timeout=120)
            with store.transaction() as session:
                got = session.scalar(licensed)
            raise AssertionError(
                f"{got} of {phones} phones licensed within 180 s; the emulator said:\n"
                f"{out[-3000:]}\n{err[-3000:]}"
            ) from None
        successor = json.loads(cli(env, "issue", "site", "--serial", SITE, "--features",
                                   "corporate-directory", "--expires",
                                   f"{today + timedelta(days=400)}", "--json"))  # fmt: skip
        plan = json.loads(
            cli(env, "rollout", "plan", "--license", str(successor["license_id"]),
                "--capacity", "400", "--slot", "5", "--json")
        )  # fmt: skip
        assert plan["phones"] == phones
        report = json.loads(
            cli(env, "rollout", "run", str(plan["rollout"]), "--confirm-timeout", "30",
                "--json", timeout=600)
        )  # fmt: skip
        assert report["state"] == "done"
        assert report["phones"] == {"confirmed": phones}
    finally:
        emulator.terminate()
        emulator.communicate(timeout=120)
        server.running.stop()
        store.close()
    installed = json.loads((work / "report.json").read_text())["phones"]
    expiry = f"{today + timedelta(days=400)}"
    assert {p["installed"]["site"]["expires"] for p in installed} == {expiry}
