"""End to end: 2,000 emulated phones, a site license 20 days from expiry, its successor posted,
a planned rollout executed by check-sync over real SIP (half UDP, half TCP), the executor
killed halfway and started again: every phone ends up with the successor, none is notified
twice, the check-syncs keep the plan's pace in every slot, and the server's load over any 30 s
of the rollout stays within the planned cap (its peak per 5-s slot is not asserted: on a
loaded machine the emulator's boots bunch up)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import func, select

from fleetkey.store.database import default_url
from fleetkey.store.schema import FetchRow, RolloutTargetRow
from fleetkey.store.store import Store

from tests.helpers import free_udp_port
from tests.serving import (
    SITE_LICENSED,
    cli,
    fleet_env,
    fleetkey_command,
    fleetkey_in_process,
    import_sip_phones,
    init_data,
    start_server,
    wait_for,
    window_around_now,
)

PHONES = 2000
SITE = "100000000001"
CAPACITY = 1000.0  # req/s; x 0.7 headroom over ~10 requests a boot: ~70 check-syncs a second
SLOT_S = 5
WINDOW_S = 30  # the server's load is asserted over any window this long of the rollout


def scalar(store: Store, statement: object) -> int:
    with store.transaction() as session:
        return int(session.scalar(statement) or 0)  # type: ignore[call-overload]


def test_rollout_of_a_successor_reaches_2000_phones_once_each_under_the_cap(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data, env = fleet_env(tmp_path_factory, "rollout")
    build = partial(fleetkey_in_process, env)  # in this process: a fleet built, not tested
    work = data.parent
    sip_port = free_udp_port()
    macs = [f"0004f2{i:06x}" for i in range(PHONES)]
    init_data(data, env)
    build("sites", "add", SITE, "--name", "HQ", "--tz", "UTC", "--window", window_around_now())
    import_sip_phones(env, work, macs, (SITE,), sip_port)  # half notified over UDP, half TCP
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
        wait_for(lambda: scalar(store, SITE_LICENSED) == PHONES, 120)  # every phone booted once
        before = json.loads(cli(env, "alerts", "--json"))
        assert set(before["fired"]) == {f"lead-time:Site:{SITE}:1:30d", f"storm:{SITE}:1"}
        successor = json.loads(cli(env, "issue", "site", "--serial", SITE, "--features",
                                   "corporate-directory", "--expires",
                                   f"{today + timedelta(days=400)}", "--json"))  # fmt: skip
        plan = json.loads(
            cli(env, "rollout", "plan", "--license", str(successor["license_id"]),
                "--capacity", str(CAPACITY), "--slot", str(SLOT_S), "--json")
        )  # fmt: skip
        assert plan["phones"] == PHONES
        posted = json.loads(cli(env, "alerts", "--json"))
        assert posted["fired"] == [f"not-fetched:{SITE}:2"]  # posted, not yet fetched
        assert posted["resolved"] == [f"lead-time:Site:{SITE}:1:30d", f"storm:{SITE}:1"]
        assert plan["boot"]["source"].startswith("measured from 2,000 boots")
        rollout = str(plan["rollout"])
        began = datetime.now(UTC)
        run = [*fleetkey_command(), "rollout", "run", rollout, "--confirm-timeout", "15", "--json"]
        first = subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        confirmed = select(func.count()).where(RolloutTargetRow.state == "confirmed")
        wait_for(lambda: scalar(store, confirmed) >= PHONES // 3, 120)
        first.send_signal(signal.SIGKILL)  # halfway, mid-send, no goodbye
        first.wait(timeout=30)
        halfway = scalar(store, confirmed)
        assert halfway < PHONES
        report = json.loads(cli(env, *run[3:], timeout=300))
        finished = datetime.now(UTC)
        assert report["state"] == "done"
        after = json.loads(cli(env, "alerts", "--json"))
        assert (after["fired"], after["resolved"]) == ([], [f"not-fetched:{SITE}:2"])
        assert after["alerts"] == []  # every phone has the successor: nothing left to say
        assert report["phones"] == {"confirmed": PHONES}
        with store.transaction() as session:
            attempts = Counter(session.scalars(select(RolloutTargetRow.attempts)))
            per_second = Counter(
                int((at.replace(tzinfo=UTC) - began).total_seconds())
                for at in session.scalars(select(FetchRow.at).where(FetchRow.at >= began))
            )
            sent = Counter(
                int((at.replace(tzinfo=UTC) - began).total_seconds()) // SLOT_S
                for at in session.scalars(select(RolloutTargetRow.notified_at))
                if at is not None
            )
        assert set(attempts) <= {1, 2}  # a second attempt only for a phone claimed, never sent
        assert attempts[2] <= 100
        peak = (
            max(
                sum(per_second[s] for s in range(start, start + SLOT_S))
                for start in range(0, max(per_second) + 1, SLOT_S)
            )
            / SLOT_S
        )
        cap = CAPACITY * plan["headroom"]
        seconds = (finished - began).total_seconds()
        print(f"\n{PHONES} phones; confirmed {halfway} before the kill; rollout took "
              f"{seconds:.0f} s; attempts {dict(attempts)}; server peak {peak:.0f} req/s "
              f"over {SLOT_S}-s slots, planned cap {cap:.0f}, "
              f"predicted {plan['peak_load']:.0f}")  # fmt: skip
        # What the rollout controls: its check-syncs, at the plan's pace shared by both
        # executors (the killed one's and its successor's), never a burst after the kill: in
        # any slot a slot's worth, plus the pace's burst of two ticks (0.2 s) and one more.
        # The server's own peak per slot follows only as long as the emulator boots each phone
        # at once; on a loaded machine its boots bunch up (it was checked: flaky at load 5-7).
        rate = cap / plan["boot"]["requests"]
        assert max(sent.values()) <= rate * (SLOT_S + 0.2) + 1, sorted(sent.items())
        # The server's load over any 30 s of the active span (first to last request): the
        # average over the whole rollout, its pauses included (the kill, the confirmations
        # awaited), stayed low even when the load while it ran was over the cap. 10 % more
        # is 3 s of boots bunched into a window by a loaded machine.
        first_s, last_s = min(per_second), max(per_second)
        windows = {
            start: sum(per_second[s] for s in range(start, start + WINDOW_S)) / WINDOW_S
            for start in range(first_s, max(first_s, last_s - WINDOW_S + 1) + 1)
        }
        busiest = max(windows, key=lambda start: windows[start])
        assert windows[busiest] <= cap * 1.1, (busiest, windows[busiest], cap)
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
    assert reboots == {1: PHONES}  # every phone notified, none twice
    summary = json.loads(out)
    assert summary["phones_with_errors"] == 0
