"""End to end with emulated phones over real HTTP and SIP: a successor whose site's window is
closed says until when in the site's time; `rollout run --now` (audited) sends it anyway; five
phones whose SIP contact is wrong fail, so the run ends `partial` with exit 1; with their
contacts put right, `rollout retry` and a second `--now` run bring every phone the successor,
each rebooted by check-sync once; the load plot of the run carries the rate actually served."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from fleetkey.cli.planview import rollout_picture
from fleetkey.emulate.addresses import phone_address
from fleetkey.store import rollouts
from fleetkey.store.database import default_url
from fleetkey.store.schema import FetchRow
from fleetkey.store.store import Store
from fleetkey.store.texts import path_of

from tests.helpers import free_port, free_udp_port
from tests.serving import (
    BOOTED,
    fleet_env,
    fleetkey_command,
    fleetkey_in_process,
    init_data,
    run_fleetkey,
    start_server,
    wait_for,
)

PHONES = 25
WRONG = 5  # the last five phones' contacts point at a closed port at first
SITE = "100000000003"
ZONE = "America/New_York"


cli = partial(run_fleetkey, timeout=180)  # `fleetkey ARGS`, which must exit `code`


def phones_csv(macs: list[str], sip_port: int, wrong_port: int | None) -> str:
    rows = []
    for i, mac in enumerate(macs):
        if wrong_port is not None and i >= PHONES - WRONG:
            contact = f"sip:{mac}@127.0.0.1:{wrong_port};transport=tcp"  # refused at once
        else:
            contact = f"sip:{mac}@{phone_address(mac)}:{sip_port}"
        rows.append(f"{mac},{SITE},VVX_500,{contact}")
    return "mac,site,model,contact\n" + "\n".join(rows) + "\n"


def test_a_closed_window_is_overridden_failures_fail_the_run_and_a_retry_finishes_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data, env = fleet_env(tmp_path_factory, "rollout-outcomes")
    build = partial(fleetkey_in_process, env)  # in this process: a fleet built, not tested
    env["FLEETKEY_ACTOR"] = "alice@cli"
    work = data.parent
    sip_port = free_udp_port()
    macs = [f"0004f2{i:06x}" for i in range(PHONES)]
    opens = (datetime.now(ZoneInfo(ZONE)) + timedelta(hours=3)).replace(minute=0, second=0,
                                                                         microsecond=0)  # fmt: skip
    window = f"{opens:%H}:00-{opens + timedelta(hours=2):%H}:00"  # closed for 2-3 hours
    init_data(data, env)
    build("sites", "add", SITE, "--name", "NY", "--tz", ZONE, "--window", window)
    (work / "phones.csv").write_text(phones_csv(macs, sip_port, free_port()))
    build("phones", "import", str(work / "phones.csv"))
    (work / "macs.txt").write_text("\n".join(macs) + "\n")
    today = datetime.now(UTC).date()
    build("issue", "site", "--serial", SITE, "--features", "corporate-directory",
          "--expires", f"{today + timedelta(days=20)}")  # fmt: skip
    server = start_server(data, env)
    store = Store(default_url(data))
    emulator = subprocess.Popen(
        [*fleetkey_command(), "emulate", "--server", f"{server.url}/{SITE}", "--phones",
         str(PHONES), "--macs", str(work / "macs.txt"), "--sip-port", str(sip_port),
         "--duration", "900", "--report", str(work / "report.json"), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        licensed = (
            select(func.count(func.distinct(FetchRow.mac)))
            .join(path_of, path_of.id == FetchRow.path_id)
            .where(path_of.text.like("%000000000000-license.cfg"), FetchRow.status == 200)
        )

        def booted() -> bool:  # and each boot ended: a check-sync mid-boot is absorbed (R9)
            with store.transaction() as session:
                return session.scalar(licensed) == PHONES == session.scalar(BOOTED)

        wait_for(booted, 120)
        build("issue", "site", "--serial", SITE, "--features", "corporate-directory",
              "--expires", f"{today + timedelta(days=400)}")  # fmt: skip
        cli(env, "rollout", "plan", "--license", "2", "--capacity", "1000", "--slot", "5")
        waiting = " ".join(cli(env, "rollout", "status", "1").stdout.split())
        assert re.search(
            rf"waiting until {opens:%H}:00 {ZONE}, in [23] h( \d+ min)?: site {SITE}'s window "
            rf"{window} opens then", waiting
        ), waiting  # fmt: skip

        run = ["rollout", "run", "1", "--now", "--confirm-timeout", "20", "--max-attempts", "1"]
        first = cli(env, *run, "--json", code=1)
        report = json.loads(first.stdout)
        assert report["state"] == "partial"
        assert report["phones"] == {"confirmed": PHONES - WRONG, "failed": WRONG}
        assert [f["mac"] for f in report["failures"]] == macs[-WRONG:]
        assert all("TCP connection failed" in f["reason"] for f in report["failures"])
        assert report["windows_ignored_at"] is not None  # an ended rollout keeps it
        assert f"error: rollout 1 partial: {WRONG} of {PHONES} phones failed" in first.stderr
        events = json.loads(cli(env, "audit", "list", "--json").stdout)
        now_events = [e for e in events if e["action"] == "rollout.now"]
        assert [(e["actor"], e["details"]["phones"]) for e in now_events] == [("alice@cli", PHONES)]

        (work / "phones.csv").write_text(phones_csv(macs, sip_port, None))  # contacts put right
        build("phones", "import", str(work / "phones.csv"))
        retried = json.loads(cli(env, "rollout", "retry", "1", "--json").stdout)
        assert (retried["requeued"], retried["state"]) == (WRONG, "paused")
        assert retried["windows_ignored_at"] is None  # paused: the windows hold again
        second = json.loads(cli(env, *run, "--json").stdout)  # exit 0
        assert second["state"] == "done"
        assert second["phones"] == {"confirmed": PHONES}
        assert second["failures"] == []

        plot = work / "load.png"
        cli(env, "rollout", "status", "1", "--plot", str(plot))
        assert plot.read_bytes().startswith(b"\x89PNG")
        with store.transaction() as session:
            picture = rollout_picture(session, rollouts.get(session, 1), datetime.now(UTC))
        assert picture.actual  # the rate the server answered during the run
        assert max(rate for _, rate in picture.actual) <= 1000 * 0.7 * 1.05
        assert sum(rate for _, rate in picture.planned) > 0
    finally:
        emulator.send_signal(signal.SIGTERM)
        out, err = emulator.communicate(timeout=120)
        server.stop()
        store.close()
    assert emulator.returncode == 0, err
    phones = json.loads((work / "report.json").read_text())["phones"]
    expiry = f"{today + timedelta(days=400)}"
    assert Counter(p["installed"]["site"]["expires"] for p in phones) == {expiry: PHONES}
    reboots = Counter(sum(r["reason"] == "check-sync" for r in p["reboots"]) for p in phones)
    assert reboots == {1: PHONES}  # every phone notified once it could be reached, none twice
    assert json.loads(out)["phones_with_errors"] == 0
