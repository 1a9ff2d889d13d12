"""The Show of issue 22 as one function: emulated phones at three sites booting through HAProxy
in front of three servers (tests/deployment.py), each site's successor posted (timed on every
server) and rolled out by two executors, a server and an executor SIGKILLed mid-rollout; what
happened, measured from the phones' report, HAProxy's log, the servers' totals and the store.
Run by tests/integration/test_deployment.py (600 phones) and bench/deploy.py (3,000).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from fleetkey.store.schema import FetchRow, RolloutRow, RolloutTargetRow
from fleetkey.store.store import Store

from tests.deployment import (
    SUMMARY,
    Balancer,
    Poller,
    Server,
    count,
    free_sip_port,
    start_balancer,
    start_servers,
    take_down,
)
from tests.serving import (
    SITE_LICENSED,
    fleetkey_command,
    fleetkey_in_process,
    import_sip_phones,
    server_env,
    wait_for,
    window_around_now,
)

SITES = ("100000000001", "100000000002", "100000000003")


@dataclass
class FleetRun:
    """What a rollout through the balancer did, measured from every side: the phones' own
    report, HAProxy's log, the servers' totals and the store."""

    phones: int
    booted_s: float  # every phone's first boot, through the balancer
    post_delays: dict[str, dict[str, float]]  # site → server → seconds from posting to served
    killed_at: float  # time.time() serve2 and an executor were SIGKILLed
    confirmed_before_kill: int
    rollout_s: float  # first check-sync to the last executor's exit
    executor_codes: list[int | None]
    rollout_states: dict[int, str]
    targets: Counter[str]  # rollout target states
    installed: Counter[str]  # site-license expiry installed on the phones
    check_syncs: Counter[int]  # phones by check-syncs received
    checksync_reboots: Counter[int]  # phones by reboots for check-sync
    twice: list[str]  # MACs notified more than once
    phones_with_errors: int
    down_after_s: float | None  # from the kill to HAProxy's "serve2 is DOWN"
    answered_by: Counter[str]  # requests per server that reached the phone, HAProxy's log
    forwarded_by: Counter[str]  # requests per server, answered or not (a phone gone first)
    redispatched: int  # requests HAProxy sent again to another server
    retries: int  # the times HAProxy sent a request again, to any server (%rc, summed)
    failed_through_balancer: Counter[int]  # statuses 5xx or -1 HAProxy gave phones
    written: dict[str, int]  # records each surviving server says it wrote
    not_recorded: dict[str, int]
    polls: Counter[str]  # the poller's requests to each server (recorded too)
    records_in_store: int
    killed_lost: int  # answers of serve2 with no record: lost with its queue
    killed_license_answers: set[str] = field(default_factory=set)  # serve2's last 5 s


def _scalar(store: Store, statement: Any) -> int:
    with store.transaction() as session:
        return int(session.scalar(statement) or 0)


def _store_counts(store: Store) -> tuple[int, dict[int, str], Counter[str]]:
    with store.transaction() as session:
        records = int(session.scalar(select(func.count()).select_from(FetchRow)) or 0)
        states = {r.id: r.state for r in session.scalars(select(RolloutRow))}
        targets = Counter(session.scalars(select(RolloutTargetRow.state)))
    return records, states, targets


def _admin(work: Path, database: str, phones: int, sip_port: int) -> tuple[Path, dict[str, str]]:
    """The administrator's data directory: three sites with their windows open now, the
    phones spread over them (SIP contacts on the emulator's addresses, every other one over
    TCP), each site's license 20 days from expiry."""
    data = work / "admin"
    env = server_env(data)
    env["FLEETKEY_DB"] = database
    cli = partial(fleetkey_in_process, env)  # in this process: a fleet built, not tested
    cli("init")
    for n, site in enumerate(SITES):
        cli("sites", "add", site, "--name", f"site-{n + 1}", "--tz", "UTC",
            "--window", window_around_now())  # fmt: skip
    import_sip_phones(env, work, [f"0004f2{i:06x}" for i in range(phones)], SITES, sip_port)
    expires = datetime.now(UTC).date() + timedelta(days=20)
    for site in SITES:
        cli("issue", "site", "--serial", site, "--features", "corporate-directory",
            "--expires", f"{expires}")  # fmt: skip
    return data, env


def post_and_time(
    env: dict[str, str],
    servers: list[Server],
    site: str,
    expires: date,
    out: Path,
    polls: Counter[str],
) -> tuple[int, dict[str, float]]:
    """Issue ``site``'s successor into a file, post it while polling every server for it;
    (license id, seconds from the post's commit to each server serving it)."""
    issued = json.loads(fleetkey_in_process(env, "issue", "site", "--serial", site, "--features",
                                            "corporate-directory", "--expires", f"{expires}",
                                            "--out", str(out), "--json").stdout)  # fmt: skip
    license_id = int(issued["license_id"])
    poller = Poller(servers, f"/{site}/000000000000-license.cfg", out.read_bytes())
    poster = subprocess.Popen([*fleetkey_command(), "licenses", "post", str(license_id)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    poller.run_until_all(timeout_s=60)
    _, err = poster.communicate(timeout=60)
    assert poster.returncode == 0, err
    shown = json.loads(
        fleetkey_in_process(env, "licenses", "show", str(license_id), "--json").stdout
    )
    posted_at = datetime.fromisoformat(shown["posted_at"]).timestamp()
    polls.update(poller.asked)
    return license_id, {n: round(t - posted_at, 3) for n, t in poller.first_seen.items()}


def _taken_out(balancer: Balancer, name: str, since: float, timeout_s: float = 15) -> float | None:
    """Seconds from ``since`` until HAProxy logs ``name`` DOWN (None: not within the timeout;
    its state changes carry no time of their own, so the log is watched)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(f"{name} is DOWN" in line for line in balancer.lines()):
            return round(time.time() - since, 2)
        time.sleep(0.05)
    return None


def _executor(env: dict[str, str], rollout: int, confirm_timeout_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*fleetkey_command(), "rollout", "run", str(rollout), "--confirm-timeout",
         str(confirm_timeout_s), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def roll_out_through_the_balancer(
    work: Path,
    database: str,
    phones: int,
    *,
    capacity: float,
    record_queue: int = 20_000,
    confirm_timeout_s: float = 30.0,
    kill_after: float = 1 / 3,
) -> FleetRun:
    """``phones`` emulated phones at three sites boot through HAProxy in front of three
    servers; each site's successor is posted (timed on every server) and rolled out by two
    executors each; once ``kill_after`` of the phones are confirmed, serve2 and one executor
    are SIGKILLed and that executor started again. Everything is stopped before returning."""
    sip_port = free_sip_port()
    data, env = _admin(work, database, phones, sip_port)
    servers = start_servers(work, data, database, "--record-queue", str(record_queue))
    store = Store(database)
    balancer = emulator = None
    executors: list[list[subprocess.Popen[str]]] = []
    try:
        balancer = start_balancer(work, servers)
        began = time.monotonic()
        emulator = subprocess.Popen(
            [*fleetkey_command(), "emulate", "--server", balancer.url, "--phones", str(phones),
             "--macs", str(work / "macs.txt"), "--tag-serial", "--sip-port", str(sip_port),
             "--duration", "3600", "--report", str(work / "report.json"), "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(
            lambda: emulator.poll() is not None or _scalar(store, SITE_LICENSED) >= phones, 600
        )
        if emulator.poll() is not None:  # said now, not after the wait's ten minutes
            raise AssertionError(
                f"the emulator ended (exit {emulator.returncode}) before every phone booted: "
                f"{emulator.communicate()[1][-3000:]}"
            )
        booted_s = time.monotonic() - began
        expires = datetime.now(UTC).date() + timedelta(days=400)
        polls: Counter[str] = Counter()
        delays: dict[str, dict[str, float]] = {}
        rollouts = []
        for site in SITES:
            license_id, delays[site] = post_and_time(
                env, servers, site, expires, work / f"{site}-successor.cfg", polls
            )
            planned = fleetkey_in_process(env, "rollout", "plan", "--license", str(license_id),
                                          "--capacity", str(capacity), "--slot", "5",
                                          "--json").stdout  # fmt: skip
            plan = json.loads(planned)
            rollouts.append(int(plan["rollout"]))
        started = time.monotonic()
        executors = [[_executor(env, r, confirm_timeout_s) for _ in range(2)] for r in rollouts]
        confirmed = select(func.count()).where(RolloutTargetRow.state == "confirmed")
        wait_for(lambda: _scalar(store, confirmed) >= phones * kill_after, 600)
        killed_at = time.time()
        servers[1].kill()
        executors[0][0].send_signal(signal.SIGKILL)
        executors[0][0].communicate(timeout=30)
        before_kill = _scalar(store, confirmed)
        executors[0][0] = _executor(env, rollouts[0], confirm_timeout_s)
        down_after_s = _taken_out(balancer, "serve2", killed_at)
        codes = []
        for pair in executors:
            for executor in pair:
                executor.communicate(timeout=900)
                codes.append(executor.returncode)
        rollout_s = time.monotonic() - started
        emulator.send_signal(signal.SIGTERM)
        out, err = emulator.communicate(timeout=300)
        assert emulator.returncode == 0, err
        summaries = {s.name: s.stop() for s in (servers[0], servers[2])}
        balancer.stop()
    finally:
        for pair in executors:
            for executor in pair:
                if executor.poll() is None:
                    executor.kill()
                    executor.communicate(timeout=30)
        if emulator is not None and emulator.poll() is None:
            emulator.kill()
            emulator.communicate(timeout=30)
        take_down(balancer, servers)
    records, states, targets = _store_counts(store)
    store.close()
    return _measure(
        work, balancer, out, summaries, polls, records, states, targets,
        phones=phones, booted_s=booted_s, delays=delays, killed_at=killed_at,
        before_kill=before_kill, rollout_s=rollout_s, codes=codes, down_after_s=down_after_s,
    )  # fmt: skip


def _measure(
    work: Path,
    balancer: Balancer,
    emulator_out: str,
    summaries: dict[str, str],
    polls: Counter[str],
    records: int,
    states: dict[int, str],
    targets: Counter[str],
    **known: Any,
) -> FleetRun:
    phones = json.loads((work / "report.json").read_text())["phones"]
    served = balancer.requests()
    answered = Counter(r.process for r in served if r.status > 0)
    written, unrecorded = {}, {}
    for name, line in summaries.items():
        match = SUMMARY.search(line)
        assert match is not None, line
        written[name], unrecorded[name] = count(match[1]), count(match[2])
    killed_written = records - sum(written.values())
    killed_lost = answered["serve2"] + polls["serve2"] - killed_written
    twice = [p["mac"] for p in phones if len(p["check_syncs"]) > 1]
    license_answers = {
        r.client for r in served
        if r.server == "serve2" and r.status == 200 and r.path.endswith("000000000000-license.cfg")
        and r.at >= known["killed_at"] - 5
    }  # fmt: skip
    return FleetRun(
        phones=known["phones"],
        booted_s=known["booted_s"],
        post_delays=known["delays"],
        killed_at=known["killed_at"],
        confirmed_before_kill=known["before_kill"],
        rollout_s=known["rollout_s"],
        executor_codes=known["codes"],
        rollout_states=states,
        targets=targets,
        installed=Counter(p["installed"]["site"]["expires"] for p in phones),
        check_syncs=Counter(len(p["check_syncs"]) for p in phones),
        checksync_reboots=Counter(
            sum(r["reason"] == "check-sync" for r in p["reboots"]) for p in phones
        ),
        twice=twice,
        phones_with_errors=int(json.loads(emulator_out)["phones_with_errors"]),
        down_after_s=known["down_after_s"],
        answered_by=answered,
        forwarded_by=Counter(r.process for r in served),
        redispatched=sum(r.redispatched for r in served),
        retries=sum(r.retries for r in served),
        failed_through_balancer=Counter(r.status for r in served if not 0 < r.status < 500),
        written=written,
        not_recorded=unrecorded,
        polls=polls,
        records_in_store=records,
        killed_lost=killed_lost,
        killed_license_answers=license_answers,
    )


def describe(run: FleetRun) -> str:
    """The run in a few lines, for the test's output and bench/deploy.py."""
    worst = max(d for delays in run.post_delays.values() for d in delays.values())
    return "\n".join(
        [
            f"{run.phones} phones at 3 sites booted through HAProxy in {run.booted_s:.0f} s",
            f"successors served by all 3 servers {worst:.2f} s after posting at worst "
            f"({run.post_delays})",
            f"rollout: {run.rollout_s:.0f} s; {run.confirmed_before_kill} confirmed when serve2 "
            f"and an executor were SIGKILLed; targets {dict(run.targets)}; executors exited "
            f"{run.executor_codes}",
            f"phones by check-syncs received {dict(run.check_syncs)}, by check-sync reboots "
            f"{dict(run.checksync_reboots)}; notified twice: {len(run.twice)}",
            f"HAProxy: serve2 DOWN {run.down_after_s} s after the kill; answered "
            f"{dict(run.answered_by)}; redispatched {run.redispatched} (retries "
            f"{run.retries}); failures given to "
            f"phones {dict(run.failed_through_balancer)}; phones with errors "
            f"{run.phones_with_errors}; forwarded {dict(run.forwarded_by)}",
            f"records: store {run.records_in_store:,}; surviving servers wrote {run.written} "
            f"(not recorded {run.not_recorded}, polls {dict(run.polls)}); serve2 lost "
            f"{run.killed_lost} answers with its queue ({len(run.killed_license_answers)} "
            f"license answers in its last 5 s)",
        ]
    )
