"""FTP and HTTPS through HAProxy (docs/deploy/haproxy.cfg) to three `fleetkey serve` on one
PostgreSQL: phones boot over FTP through the balancer, half with their own login and half with
the factory PlcmSpIp, while curl fetches licenses over HTTPS ended at HAProxy; one server is
SIGKILLed mid-boot, HAProxy takes it out, every phone ends with its site license (a phone whose
session the kill cut boots again, as a phone retries its provisioning), and every transfer a
surviving server answered is in the store."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fleetkey.emulate.addresses import phone_address
from fleetkey.store.schema import FetchRow
from fleetkey.store.store import Store
from fleetkey.store.texts import path_of

from tests.deployment import (
    Balancer,
    Server,
    passive_ranges,
    start_balancer,
    start_servers,
    take_down,
)
from tests.pg import PostgresServer
from tests.serving import cli, fleetkey_command, server_env, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.interop]
SITE = "100000000001"
PHONES = 240
# "%Ts.%ms %ci %ft %s %Tt %B %ts": the FTP frontends' log lines (haproxy.cfg)
# what the phone saw of a transfer the server made (226 of RETR and STOR, 550 no such file);
# a refused login or a cut session (403, 500) is no transfer and has no record
DONE = (200, 201, 204, 404)
TCP_LINE = re.compile(r"^\d+\.\d+ (?P<client>\S+) (?P<frontend>ftp\S*) (?P<server>\S+) ")


def make_fleet(work: Path, database: str) -> tuple[Path, dict[str, str], list[str], set[str]]:
    """The administrator's data on ``database``: a site, PHONES phones (every other one with
    its own provisioning login), the site license posted, a master configuration."""
    data = work / "admin"
    env = server_env(data)
    env["FLEETKEY_DB"] = database
    cli(env, "init")
    cli(env, "sites", "add", SITE, "--name", "HQ", "--tz", "UTC", "--window", "22:00-05:00")
    macs = [f"0004f2{i:06x}" for i in range(PHONES)]
    own = set(macs[::2])
    rows = [f"{m},{SITE},VVX_500,{f'u-{m}' if m in own else ''},{f'p-{m}' if m in own else ''}"
            for m in macs]  # fmt: skip
    (work / "phones.csv").write_text("mac,site,model,user,password\n" + "\n".join(rows) + "\n")
    cli(env, "phones", "import", str(work / "phones.csv"))
    (work / "macs.txt").write_text("".join(f"{m}\n" for m in macs))
    (work / "logins.csv").write_text("".join(f"{m},u-{m},p-{m}\n" for m in sorted(own)))
    expires = datetime.now(UTC).date() + timedelta(days=200)
    issued = json.loads(cli(env, "issue", "site", "--serial", SITE, "--features",
                            "corporate-directory", "--expires", f"{expires}", "--out",
                            str(work / "site-license.cfg"), "--json"))  # fmt: skip
    cli(env, "licenses", "post", str(issued["license_id"]))
    (data / "provisioning" / "000000000000.cfg").write_text("<APPLICATION/>\n")
    return data, env, macs, own


def emulate(work: Path, env: dict[str, str], balancer: Balancer, run: str) -> subprocess.Popen[str]:
    """Every phone boots once over FTP through the balancer."""
    return subprocess.Popen(
        [*fleetkey_command(), "emulate", "--server",
         f"ftp://127.0.0.10:{balancer.ftp_port}/{SITE}", "--phones", str(PHONES),
         "--macs", str(work / "macs.txt"), "--credentials", str(work / "logins.csv"),
         "--sip-port", "0", "--duration", "120", "--until-booted", "--concurrency", "24",
         "--report", str(work / f"{run}.json"), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


HTTPS_PHONES = 24


def boot_over_https(work: Path, env: dict[str, str], balancer: Balancer) -> dict[str, int]:
    """The first HTTPS_PHONES phones boot once more, over HTTPS through the balancer (the
    emulator trusting HAProxy's certificate); its summary."""
    done = subprocess.run(
        [*fleetkey_command(), "emulate", "--server", f"{balancer.tls_url}/{SITE}", "--cacert",
         str(balancer.certificate), "--phones", str(HTTPS_PHONES), "--macs",
         str(work / "macs.txt"), "--tag-serial", "--sip-port", "0", "--duration", "120",
         "--until-booted", "--json"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary: dict[str, int] = json.loads(done.stdout)
    return summary


def curl_license(balancer: Balancer, mac: str, *claims: str, tls: bool = True) -> tuple[int, bytes]:
    """A tagging phone's GET of its site license over HTTPS through the balancer (``tls``;
    else HTTP), from the phone's own address, checking HAProxy's certificate; ``claims``:
    headers the phone sends itself."""
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--cacert", str(balancer.certificate),  # noqa: S607
         "--interface", phone_address(mac), "--user-agent",
         f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{mac}) Type/Application",
         *(arg for claim in claims for arg in ("--header", claim)), "--write-out", "\n%{http_code}",
         f"{balancer.tls_url if tls else balancer.url}/{SITE}/000000000000-license.cfg"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body, _, code = done.stdout.rpartition(b"\n")
    return int(code), body


def ftp_servers_of(balancer: Balancer) -> dict[str, set[str]]:
    """Phone address → the servers HAProxy gave its FTP connections (control and data)."""
    found: dict[str, set[str]] = defaultdict(set)
    for line in balancer.lines():
        match = TCP_LINE.match(line)
        if match is not None:
            found[match["client"]].add(match["server"])
    return found


def records_by_mac(database: str) -> Counter[str]:
    store = Store(database)
    try:
        with store.transaction() as session:
            rows = session.execute(
                select(FetchRow.mac, func.count())
                .where(FetchRow.protocol == "ftp")
                .group_by(FetchRow.mac)
            )
            return Counter({mac: n for mac, n in rows})
    finally:
        store.close()


def http_records(database: str, mac: str) -> Counter[tuple[str, str | None]]:
    """(protocol, address) of the records the servers made of ``mac``'s HTTP(S) requests."""
    store = Store(database)
    try:
        with store.transaction() as session:
            rows = session.execute(
                select(FetchRow.protocol, FetchRow.remote_addr).where(
                    FetchRow.mac == mac, FetchRow.protocol.in_(("http", "https"))
                )
            )
            return Counter((protocol, address) for protocol, address in rows)
    finally:
        store.close()


def ftp_records(database: str) -> list[tuple[str | None, str | None, str, int]]:
    """(MAC, address, path, status) of every FTP record."""
    store = Store(database)
    try:
        with store.transaction() as session:
            rows = session.execute(
                select(FetchRow.mac, FetchRow.remote_addr, path_of.text, FetchRow.status)
                .join(path_of, path_of.id == FetchRow.path_id)
                .where(FetchRow.protocol == "ftp")
            )
            return [(mac, address, path, status) for mac, address, path, status in rows]
    finally:
        store.close()


def licenses_by_mac(database: str) -> Counter[str]:
    """Each phone's license files answered 200 over FTP, as the store has them."""
    store = Store(database)
    try:
        with store.transaction() as session:
            rows = session.execute(
                select(FetchRow.mac, func.count())
                .join(path_of, path_of.id == FetchRow.path_id)
                .where(
                    FetchRow.protocol == "ftp",
                    FetchRow.status == 200,
                    path_of.text.like("%-license.cfg"),
                )
                .group_by(FetchRow.mac)
            )
            return Counter({mac: n for mac, n in rows})
    finally:
        store.close()


def detail(database: str, work: Path, mac: str) -> tuple[list[str], list[str]]:
    """What the phone saw and what the store has of it (a failure's message)."""
    seen = [f"{f['method']} {f['name']} {f['status']}"
            for run in ("first", "again")
            for p in json.loads((work / f"{run}.json").read_text())["phones"] if p["mac"] == mac
            for f in p["fetches"]]  # fmt: skip
    store = Store(database)
    try:
        with store.transaction() as session:
            rows = session.execute(
                select(FetchRow.method, path_of.text, FetchRow.status, FetchRow.protocol)
                .join(path_of, path_of.id == FetchRow.path_id)
                .where(FetchRow.mac == mac)
                .order_by(FetchRow.id)
            )
            return seen, [" ".join(str(v) for v in row) for row in rows]
    finally:
        store.close()


def license_records(database: str) -> int:
    store = Store(database)
    try:
        with store.transaction() as session:
            return int(
                session.scalar(
                    select(func.count(func.distinct(FetchRow.mac))).where(
                        FetchRow.protocol == "ftp", FetchRow.status == 200
                    )
                )
                or 0
            )
    finally:
        store.close()


def test_phones_boot_over_ftp_and_https_through_haproxy_while_a_server_is_killed(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database()
    data, env, macs, own = make_fleet(tmp_path, database)
    license_file = (tmp_path / "site-license.cfg").read_bytes()
    passive = passive_ranges()
    servers: list[Server] = []
    balancer = None
    try:
        servers = start_servers(
            tmp_path, data, database, "--ftp-shared-login", "PlcmSpIp:PlcmSpIp",
            "--ftp-max-logins", "512", passive=passive,
        )  # fmt: skip
        balancer = start_balancer(tmp_path, servers, passive)
        # HTTPS ended at HAProxy, before anything else: the phone's address is recorded
        assert curl_license(balancer, macs[1]) == (200, license_file)
        # a phone's own X-Forwarded-Proto and X-Forwarded-For over plain HTTP are no say:
        # HAProxy sets the first, and the second's own line comes first (the server reads
        # the last address HAProxy added)
        spoofs = ("X-Forwarded-Proto: https", "X-Forwarded-For: 198.51.100.7")
        assert curl_license(balancer, macs[3], *spoofs, tls=False) == (200, license_file)
        first = emulate(tmp_path, env, balancer, "first")
        wait_for(lambda: license_records(database) >= PHONES // 3, 90)
        victim = servers[1]
        victim.kill()
        killed_at = time.time()
        wait_for(lambda: f"{victim.name} is DOWN" in balancer.log.read_text(), 20)
        down_after = time.time() - killed_at
        # HTTPS after the kill: every phone asking is answered by a surviving server
        after_kill = [curl_license(balancer, mac) for mac in macs[1:40:4]]
        out, err = first.communicate(timeout=180)
        assert first.returncode == 0, err
        again = emulate(tmp_path, env, balancer, "again")  # every phone boots once more
        out_again, err = again.communicate(timeout=180)
        assert again.returncode == 0, err
        over_https = boot_over_https(tmp_path, env, balancer)
        survivors = [s for s in servers if s is not victim]
        summaries = [s.stop() for s in survivors]
        routes = ftp_servers_of(balancer)
    finally:
        take_down(balancer, servers)
    first_boots = json.loads(out)
    cut = [p["mac"] for p in json.loads((tmp_path / "first.json").read_text())["phones"]
           if p["installed"]["site"] is None]  # fmt: skip
    print(f"\n{victim.name} out {down_after:.2f} s after its kill; first boots: "
          f"{first_boots['answers']}; without a license after them: {len(cut)}")  # fmt: skip
    assert 0 < down_after < 5
    assert after_kill == [(200, license_file)] * len(after_kill)
    # the servers recorded the phone's own address (X-Forwarded-For from HAProxy), not its,
    # and HTTPS as HTTPS (X-Forwarded-Proto from HAProxy); the spoofing phone as it was
    assert set(http_records(database, macs[1])) == {("https", phone_address(macs[1]))}
    spoofer = http_records(database, macs[3])  # it boots over HTTPS below too
    assert spoofer[("http", phone_address(macs[3]))] == 1
    assert {address for _, address in spoofer} == {phone_address(macs[3])}
    # phones booting over HTTPS through HAProxy (the emulator): recorded https, their address
    assert (over_https["booted"], over_https["phones_with_errors"]) == (HTTPS_PHONES, 0)
    assert set(http_records(database, macs[0])) == {("https", phone_address(macs[0]))}
    # every phone ends with its site license: the second boot went to surviving servers only
    summary = json.loads(out_again)
    assert (summary["booted"], summary["phones_with_errors"]) == (PHONES, 0), out_again
    phones = json.loads((tmp_path / "again.json").read_text())["phones"]
    assert all(p["installed"]["site"] is not None for p in phones)
    # the killed server had sessions of its own, some cut mid-boot
    assert any(victim.name in names for names in routes.values())
    # every transfer answered to a phone that only surviving servers served is recorded
    recorded = records_by_mac(database)
    answered: Counter[str] = Counter()
    failed: Counter[str] = Counter()  # requests whose answer did not reach the phone
    for run in ("first", "again"):
        for phone in json.loads((tmp_path / f"{run}.json").read_text())["phones"]:
            answered[phone["mac"]] += sum(1 for f in phone["fetches"] if f["status"] in DONE)
            failed[phone["mac"]] += len(phone["errors"])
    untouched = [m for m in macs if victim.name not in routes.get(phone_address(m), {victim.name})]
    assert untouched, routes
    # a transfer the phone saw fail may still have been recorded (cut, 499; or answered as
    # the phone gave up on a loaded machine), never one more than that
    wrong = [(m, answered[m], recorded[m], failed[m]) for m in untouched
             if not answered[m] <= recorded[m] <= answered[m] + failed[m]]  # fmt: skip
    assert wrong == [], (wrong, detail(database, tmp_path, wrong[0][0]))
    assert all(" 0 not recorded" in line for line in summaries), summaries
    # every license file a phone got with its 226 is recorded, the killed server's included:
    # that 226 waits for the record's commit (serve/ftp/confirming.py)
    licenses = licenses_by_mac(database)
    got: Counter[str] = Counter()
    for run in ("first", "again"):
        for phone in json.loads((tmp_path / f"{run}.json").read_text())["phones"]:
            fetches = phone["fetches"]
            got[phone["mac"]] += sum(
                1 for f in fetches if f["status"] == 200 and f["name"].endswith("-license.cfg")
            )
    assert [m for m in macs if got[m] > licenses[m]] == []
    # each phone's own address on its FTP records (HAProxy's PROXY header, send-proxy-v2),
    # not the balancer's: every record of a known phone carries that phone's address
    rows = ftp_records(database)
    wrong_address = [(m, a) for m, a, _, _ in rows if m is not None and a != phone_address(m)]
    assert wrong_address == []
    assert {a for m, a, _, _ in rows if m is None} <= {phone_address(m) for m in macs}
    # every refusal a phone saw after the kill (a 403: a PlcmSpIp session whose first file
    # was a shared one, its earlier session cut by the kill; only survivors answer then) was
    # fleetkey's, and is recorded with the phone's address
    refused = {(phone_address(p["mac"]), f["name"]) for run in ("first", "again")
               for p in json.loads((tmp_path / f"{run}.json").read_text())["phones"]
               for f in p["fetches"]
               if f["status"] == 403
               and datetime.fromisoformat(f["at"]).timestamp() > killed_at}  # fmt: skip
    saids = {f.get("said") for run in ("first", "again")
             for p in json.loads((tmp_path / f"{run}.json").read_text())["phones"]
             for f in p["fetches"] if f["status"] == 403}  # fmt: skip
    assert saids <= {"550 per-device files need a login here."}, saids  # the server's words
    recorded_refusals = {
        (a, path.rsplit("/", 1)[-1]) for _, a, path, status in rows if status == 403
    }
    assert refused <= recorded_refusals, refused - recorded_refusals
    assert {p["mac"] for p in phones} == set(macs)
    assert own  # half logged in with their own login, the others with PlcmSpIp
