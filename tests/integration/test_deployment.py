"""Several servers, one fleet (issue 22): three `fleetkey serve` on their own loopback addresses,
one PostgreSQL, a real HAProxy running docs/deploy/haproxy.cfg with its checks on /healthz.

The files docs/deploy.md shows are the ones used here, and they parse."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.deployment import (
    HAPROXY_CONFIG,
    REPO,
    SUMMARY,
    Balancer,
    Poller,
    Server,
    count,
    haproxy,
    start_balancer,
    start_servers,
    take_down,
)
from tests.fleetrun import describe, roll_out_through_the_balancer
from tests.helpers import self_signed
from tests.pg import PostgresServer
from tests.serving import fleetkey_command, fleetkey_in_process, server_env, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.interop]
SITE = "100000000001"
MAC = "0004f2a00001"
VVX = f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{MAC}) Type/Application"
DEPLOY = REPO / "docs" / "deploy"


def make_admin(tmp_path: Path, database: str) -> tuple[Path, dict[str, str]]:
    """The administrator's data directory on ``database``: one site, one phone, a site
    license posted, a master configuration in the shared tree."""
    data = tmp_path / "admin"
    env = server_env(data)
    env["FLEETKEY_DB"] = database
    cli = partial(fleetkey_in_process, env)  # in this process: a fleet built, not tested
    cli("init")
    cli("sites", "add", SITE, "--name", "HQ", "--tz", "UTC", "--window", "22:00-05:00")
    (tmp_path / "phones.csv").write_text(f"mac,site,model\n{MAC},{SITE},VVX_500\n")
    cli("phones", "import", str(tmp_path / "phones.csv"))
    expires = datetime.now(UTC).date() + timedelta(days=20)
    cli("issue", "site", "--serial", SITE, "--features", "corporate-directory",
        "--expires", f"{expires}")  # fmt: skip
    (data / "provisioning" / "000000000000.cfg").write_text("<APPLICATION/>\n")
    return data, env


@contextlib.contextmanager
def deployed(tmp_path: Path, admin: Path, database: str) -> Iterator[tuple[list[Server], Balancer]]:
    """Three servers on ``database`` and HAProxy in front; all stopped at the end."""
    servers = start_servers(tmp_path, admin, database)
    balancer = None
    try:
        balancer = start_balancer(tmp_path, servers)
        yield servers, balancer
    finally:
        take_down(balancer, servers)


@pytest.fixture
def admin(tmp_path: Path, postgres_server: PostgresServer) -> tuple[Path, dict[str, str]]:
    return make_admin(tmp_path, postgres_server.create_database())


@pytest.fixture
def deployment(
    tmp_path: Path, admin: tuple[Path, dict[str, str]]
) -> Iterator[tuple[list[Server], Balancer]]:
    data, env = admin
    with deployed(tmp_path, data, env["FLEETKEY_DB"]) as running:
        yield running


def test_docs_deploy_md_shows_every_file_of_docs_deploy_whole() -> None:
    shown = (REPO / "docs" / "deploy.md").read_text()
    files = sorted(p for p in DEPLOY.iterdir() if p.is_file())
    assert len(files) == 6
    for path in files:
        assert f"`docs/deploy/{path.name}`:" in shown, path.name
        assert f"\n{path.read_text().rstrip()}\n```" in shown, f"{path.name} differs from deploy.md"


def test_the_haproxy_configuration_docs_deploy_shows_is_valid(tmp_path: Path) -> None:
    """Checked with its own defaults, the phones' certificate (a file HAProxy opens) made."""
    certificate, key = self_signed(tmp_path)
    pem = tmp_path / "fleetkey.pem"
    pem.write_bytes(certificate.read_bytes() + key.read_bytes())
    done = subprocess.run([haproxy(), "-c", "-f", str(HAPROXY_CONFIG)], capture_output=True,
                          text=True, check=False, timeout=30,
                          env={**os.environ, "FLEETKEY_TLS_PEM": str(pem)})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout


def test_the_systemd_units_docs_deploy_shows_are_valid(tmp_path: Path) -> None:
    units = sorted(DEPLOY.glob("*.service")) + sorted(DEPLOY.glob("*.timer"))
    assert units, "docs/deploy has no systemd units"
    for unit in units:
        sections = parse_unit(unit.read_text())
        assert {"Unit", "Service"} <= sections.keys() or {"Unit", "Timer"} <= sections.keys()
        if "Service" in sections:
            assert any(k == "ExecStart" for k, _ in sections["Service"]), unit.name
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # parsed above; systemd-analyze verifies more where it is installed
    for unit in units:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text())
    done = subprocess.run([analyze, "verify", *(str(tmp_path / u.name) for u in units)],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "is not executable" not in line and "No such file" not in line
    ]  # the programs it names are not installed on the test machine
    assert complaints == [], "\n".join(complaints)


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file's sections and their settings; raises on a line that is neither."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], [])
            continue
        key, sep, value = stripped.partition("=")
        if not sep or current is None or not key.strip().isidentifier():
            raise AssertionError(f"line {number}: {line!r} is not KEY=VALUE in a section")
        current.append((key.strip(), value.strip()))
    return sections


def test_the_journald_settings_docs_deploy_shows_parse() -> None:
    sections = parse_unit((DEPLOY / "journald-fleetkey.conf").read_text())
    assert set(sections) == {"Journal"}
    assert {key for key, _ in sections["Journal"]} == {
        "SystemMaxUse", "SystemKeepFree", "MaxRetentionSec", "MaxFileSec"
    }  # fmt: skip


def test_the_backup_unit_copies_a_store_being_written_and_the_keyring(
    tmp_path: Path, initialized: Path
) -> None:
    """The backup unit's command, run as systemd would run it ($$ and %% unescaped), against
    a SQLite store that another connection is writing: a consistent copy and the keys."""
    settings = dict(parse_unit((DEPLOY / "fleetkey-backup.service").read_text())["Service"])
    command = settings["ExecStart"].replace("$$", "$").replace("%%", "%")
    assert command.startswith("/bin/sh -c '")
    assert command.endswith("'")
    script = command[len("/bin/sh -c '") : -1]
    backups = tmp_path / "backups"
    writer = sqlite3.connect(initialized / "fleetkey.db")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE audit_head SET seq = seq")  # a write under way, not committed
    try:
        done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                              check=False, timeout=60,
                              env={**os.environ, "FLEETKEY_DATA": str(initialized),
                                   "BACKUPS": str(backups)})  # fmt: skip
    finally:
        writer.rollback()
        writer.close()
    assert done.returncode == 0, done.stderr
    (day,) = backups.iterdir()
    copy = sqlite3.connect(day / "fleetkey.db")
    tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master")}
    copy.close()
    assert {"licenses", "audit_head", "fetches"} <= tables
    with tarfile.open(day / "keys.tar") as kept:
        names = set(kept.getnames())
    assert "features.toml" in names
    assert any(name.startswith("keys/") and name.endswith(".pem") for name in names), names


def test_every_server_finds_an_upload_and_serves_a_successor_within_2_s_of_posting(
    admin: tuple[Path, dict[str, str]], deployment: tuple[list[Server], Balancer]
) -> None:
    data, env = admin
    servers, balancer = deployment
    log = b"boot log line\n"
    reply = httpx.put(f"{balancer.url}/{MAC}-boot.log", content=log,
                      headers={"user-agent": VVX}, timeout=10)  # fmt: skip
    assert reply.status_code in (201, 204), reply.text
    for server in servers:  # whichever stored it, every server serves it back
        got = httpx.get(f"{server.url}/{MAC}-boot.log", headers={"user-agent": VVX}, timeout=10)
        assert (server.name, got.status_code, got.content) == (server.name, 200, log)
    expires = datetime.now(UTC).date() + timedelta(days=400)
    successor_file = data / "successor.cfg"
    issued = json.loads(fleetkey_in_process(
        env, "issue", "site", "--serial", SITE, "--features", "corporate-directory",
        "--expires", f"{expires}", "--out", str(successor_file), "--json").stdout)  # fmt: skip
    poller = Poller(servers, f"/{SITE}/000000000000-license.cfg", successor_file.read_bytes())
    poster = subprocess.Popen(
        [*fleetkey_command(), "licenses", "post", str(issued["license_id"])], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    poller.run_until_all(timeout_s=60)
    _, err = poster.communicate(timeout=60)
    assert poster.returncode == 0, err
    posted_at = posted_time(env, issued["license_id"])
    delays = {name: round(seen - posted_at, 3) for name, seen in poller.first_seen.items()}
    print(f"\nsuccessor served after posting: {delays} s")
    assert set(delays) == {s.name for s in servers}
    assert all(0 <= delay <= 2.0 for delay in delays.values()), delays
    summaries = [server.stop() for server in servers]
    assert all("0 not recorded" in line for line in summaries), summaries


def posted_time(env: dict[str, str], license_id: int) -> float:
    shown = json.loads(
        fleetkey_in_process(env, "licenses", "show", str(license_id), "--json").stdout
    )
    return datetime.fromisoformat(shown["posted_at"]).timestamp()


def test_in_a_database_outage_every_server_is_out_and_phones_are_still_served(
    tmp_path: Path,
) -> None:
    """PostgreSQL stops: every /healthz says 503 at once and HAProxy takes all three out;
    its unchecked backups (the same servers) still answer phones from their views, holding
    the records, which reach the store when it is back."""
    postgres = PostgresServer().start()
    try:
        database = postgres.create_database()
        data, _ = make_admin(tmp_path, database)
        with deployed(tmp_path, data, database) as (servers, balancer):
            answers, summaries = _through_an_outage(postgres, servers, balancer)
    finally:
        postgres.stop()
    assert answers == [200] * 30
    written = sum(count(SUMMARY.search(line)[1]) for line in summaries)  # type: ignore[index]
    assert written == 31  # every answer, the outage's included, is in the store
    assert all(" 0 not recorded" in line for line in summaries), summaries


def _through_an_outage(
    postgres: PostgresServer, servers: list[Server], balancer: Balancer
) -> tuple[list[int], list[str]]:
    with httpx.Client(base_url=balancer.url, headers={"user-agent": VVX}, timeout=10) as phone:
        assert phone.get("/000000000000-license.cfg").status_code == 200
        postgres.pause()
        try:
            wait_for(lambda: all(f"{s.name} is DOWN" in balancer.log.read_text()
                                 for s in servers), 20)  # fmt: skip
            answers = [phone.get("/000000000000-license.cfg").status_code for _ in range(30)]
        finally:
            postgres.resume()
        wait_for(lambda: all(f"{s.name} is UP" in balancer.log.read_text()
                             for s in servers), 30)  # fmt: skip
    during = [r for r in balancer.requests() if r.server.endswith("-anyway")]
    assert len(during) == 30
    return answers, [server.stop() for server in servers]


PHONES = 600  # bench/deploy.py runs the same with 3,000 (docs/deploy.md: how long each took)
RECORD_QUEUE = 20_000


@pytest.mark.slow
def test_a_fleet_rolls_out_through_haproxy_while_a_server_and_an_executor_are_killed(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    run = roll_out_through_the_balancer(
        tmp_path, postgres_server.create_database(), PHONES, capacity=300.0,
        record_queue=RECORD_QUEUE,
    )  # fmt: skip
    print(f"\n{describe(run)}")
    expiry = str(datetime.now(UTC).date() + timedelta(days=400))
    # every phone has its site's successor, confirmed, each rolled out to completion
    assert run.installed == {expiry: PHONES}
    assert run.targets == {"confirmed": PHONES}
    assert set(run.rollout_states.values()) == {"done"}
    assert run.executor_codes == [0] * 6
    # mid-rollout: some phones were confirmed before the kills, not all
    assert 0 < run.confirmed_before_kill < PHONES
    # one check-sync each, no phone notified twice: a license answer is sent only once its
    # record is committed (serve/commits.py), so the killed server lost no confirmation of
    # an answer it sent
    assert run.twice == []
    assert run.check_syncs == {1: PHONES}
    assert run.checksync_reboots == run.check_syncs
    # HAProxy took the dead server out within its checks (fall 2, inter 1 s), and every
    # request of every phone was answered in the end (retries by HAProxy and by the phones)
    assert run.down_after_s is not None
    assert 0 < run.down_after_s < 5
    assert run.phones_with_errors == 0
    # the successor was served by every server within 2 s of its posting
    for site, delays in run.post_delays.items():
        assert set(delays) == {"serve1", "serve2", "serve3"}, site
        assert all(0 <= d <= 2.0 for d in delays.values()), (site, delays)
    # every answer of a surviving server recorded; the killed one lost at most its queue.
    # HAProxy logs a request once, when it ends, under the server that answered it last
    # (a backup line, serveN-anyway, is serveN's process: counted as serveN); a server
    # records every request it read. The counts differ only by requests HAProxy sent again
    # (%rc): one may reach a server, and be recorded there, before its answer is lost to
    # HAProxy. serve2 commits a license answer's record before sending it, so one killed in
    # between is recorded by serve2 and by the server the retry went to (serve2's count
    # below zero: -6 in one run); a survivor above what HAProxy logged under it is the same,
    # a request that reached it and went again (one run: serve1 +12, serve3 +9, 160 requests
    # sent again; how those answers were lost was not seen; the "+ 1" allowed here before
    # had no ground). So a server's records, less the poller's direct requests, are at least
    # what it answered through HAProxy and at most what HAProxy forwarded to it plus every
    # retry (one may go to the same server again). Each request recorded twice would pass
    # that by thousands; a few recorded twice would hide among the retries (printed above).
    for name in ("serve1", "serve3"):
        assert run.not_recorded[name] == 0
        answered, forwarded = run.answered_by[name], run.forwarded_by[name]
        assert answered <= run.written[name] - run.polls[name] <= forwarded + run.retries, name
    assert -run.retries <= run.killed_lost <= RECORD_QUEUE
