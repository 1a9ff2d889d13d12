"""`fleetkey serve --workers 2` as a process: two workers on one HTTP port and one TFTP port,
real clients (httpx, curl's TFTP), a worker killed and started again, SIGTERM and SIGINT that
stop every worker with every record written, /metrics over both, and what is refused."""

from __future__ import annotations

import ftplib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_until
from tests.serving import (
    MAC,
    SITE,
    RunningServer,
    fleet_env,
    fleetkey_command,
    make_fleet,
    start_ftp,
    start_server,
)

CURL = shutil.which("curl") or "curl"  # scripts/test-deps installs it
UA = f"FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{MAC}) Type/Application"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data, env = fleet_env(tmp_path_factory, "workers")
    make_fleet(data, env)
    return data, env


def workers_of(server: RunningServer) -> list[int]:
    """The supervisor's children: its workers' process ids."""
    pid = server.process.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def fetch_count(server: RunningServer) -> int:
    found = json.loads(server.cli("fetches", "--json", "--limit", "100000"))
    return len(found)


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples in an exposition."""
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def licenses(url: str, count: int, source: str | None = None) -> list[int]:
    """``count`` license requests, each on a new connection (the kernel spreads connections
    over the workers, not requests), from the loopback address ``source`` if given."""
    statuses = []
    for _ in range(count):
        transport = httpx.HTTPTransport(local_address=source) if source else None
        with httpx.Client(base_url=url, headers={"user-agent": UA}, transport=transport) as phone:
            statuses.append(phone.get(f"/{MAC}-license.cfg").status_code)
    return statuses


def tftp_get(port: int, name: str, into: Path) -> bytes:
    subprocess.run(
        [CURL, "-sS", "--fail", "-o", str(into), f"tftp://127.0.0.1:{port}/{name}"],
        check=True,
        timeout=60,
    )
    return into.read_bytes()


def stopped(server: RunningServer, signum: int = signal.SIGTERM) -> tuple[str, str]:
    server.process.send_signal(signum)
    out, err = server.process.communicate(timeout=120)
    assert server.process.returncode == 0, err
    return out, err


def totals(line: str) -> tuple[int, int, int]:
    """Requests answered, fetch records written, not recorded, from the totals line."""
    found = re.search(
        r"([\d,]+) requests answered .* ([\d,]+) fetch records written, ([\d,]+) not recorded",
        line,
    )
    assert found is not None, line
    answered, written, lost = (int(group.replace(",", "")) for group in found.groups())
    return answered, written, lost


class TestServing:
    def test_two_workers_answer_http_and_tftp_on_one_port_each_and_record_every_answer(
        self, fleet: tuple[Path, dict[str, str]], tmp_path: Path
    ) -> None:
        data, env = fleet
        server = start_server(
            data, env, "--workers", "2", "--http", "127.0.0.1:0", "--tftp", "127.0.0.1:0"
        )
        assert server.process.stdout is not None
        tftp_line = server.process.stdout.readline()
        assert "2 workers" in tftp_line
        tftp_port = int(tftp_line.split()[2].rsplit(":", 1)[1])
        before = fetch_count(server)
        try:
            assert len(workers_of(server)) == 2
            assert licenses(server.url, 60) == [200] * 60
            license_file = (data / "provisioning" / f"{MAC}-license.cfg").read_bytes()
            for number in range(6):
                got = tftp_get(tftp_port, f"{MAC}-license.cfg", tmp_path / f"{number}.cfg")
                assert got == license_file
        finally:
            out, _ = stopped(server)
        line = out.strip().splitlines()[-1]
        assert line.startswith("stopped: 2 workers: 60 requests answered (0 busy), "), line
        assert "6 TFTP transfers" in line
        _, written, lost = totals(line)
        assert (written, lost) == (66, 0)
        assert fetch_count(server) - before == 66

    def test_metrics_answered_by_either_worker_sum_both(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        data, env = fleet
        server = start_server(data, env, "--workers", "2")
        try:
            assert licenses(server.url, 40) == [200] * 40

            def scraped() -> list[str]:
                return [httpx.get(f"{server.url}/metrics").text for _ in range(8)]

            # each worker publishes its snapshot every second (later on a loaded machine):
            # wait until every scrape counts the 40, then take the scrapes asserted below
            wait_until(
                lambda: all(metric(t, "fleetkey_fetches_total") == 40 for t in scraped()),
                every_s=0.25,
            )
            scrapes = scraped()
        finally:
            stopped(server)
        for text in scrapes:
            assert metric(text, "fleetkey_fetches_total") == 40
            assert metric(text, "fleetkey_workers") == 2
            assert metric(text, "fleetkey_posted_licenses") == 2  # not 4: the same in both
            assert metric(text, "fleetkey_http_request_duration_seconds_count") >= 40


def from_address(
    server: RunningServer, source: str, path: str, token: str | None = None
) -> httpx.Response:
    """GET ``path`` from the loopback address ``source``: the kernel steers each address to
    one worker (serve/steering.py), so addresses are how a test reaches a given worker."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.get(f"{server.url}{path}", headers=headers)


SOURCES = [f"127.0.0.{n}" for n in range(2, 18)]


def answering(server: RunningServer) -> dict[int, str]:
    """A source address reaching each worker (by the worker /healthz names)."""
    found: dict[int, str] = {}
    for source in SOURCES:
        found.setdefault(int(from_address(server, source, "/healthz").json()["worker"]), source)
    return found


class TestWholeServer:
    def test_healthz_and_status_answered_by_either_worker_describe_both(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        data, env = fleet
        server = start_server(data, env, "--workers", "2", "--http", "127.0.0.1:0")
        token = json.loads(server.cli("token", "--json"))["api_token"]
        try:
            reach = answering(server)
            assert set(reach) == {1, 2}
            for source in SOURCES[:6]:
                assert licenses(server.url, 3, source) == [200] * 3

            def reported() -> bool:  # every worker's report counts its answers (within ~1 s)
                for address in reach.values():
                    body = from_address(server, address, "/api/status", token).json()
                    if body["fetch_records"]["written"] < 18 or not all(
                        w["requests"] > 0 for w in body["workers"]
                    ):
                        return False
                return True

            wait_until(reported, every_s=0.25)
            healths = {n: from_address(server, a, "/healthz") for n, a in reach.items()}
            statuses = {n: from_address(server, a, "/api/status", token) for n, a in reach.items()}
        finally:
            stopped(server)
        pids = None
        for number, reply in healths.items():
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert (body["healthy"], body["reasons"], body["worker"]) == (True, [], number)
            assert body["database"]["ok"] is True
            assert [w["worker"] for w in body["workers"]] == [1, 2]
            assert all(w["healthy"] and w["reasons"] == [] for w in body["workers"])
            assert all(w["record_queue"]["writer_alive"] for w in body["workers"])
            seen = [w["pid"] for w in body["workers"]]
            assert pids is None or seen == pids  # both answer with the same two processes
            pids = seen
        assert pids is not None
        assert len(set(pids)) == 2
        for number, reply in statuses.items():
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["worker"] == number
            assert body["workers_running"] == 2
            rows = body["workers"]
            assert [w["worker"] for w in rows] == [1, 2]
            assert body["requests"] == sum(w["requests"] for w in rows)
            assert body["fetch_records"]["written"] == sum(
                w["fetch_records"]["written"] for w in rows
            )
            assert body["fetch_records"]["written"] >= 18  # the 18 license answers
            assert all(w["requests"] > 0 for w in rows)  # each worker answered some
            assert body["serving"]["licenses"] == 2  # the same store: not summed

    def test_a_worker_that_stops_reporting_makes_the_whole_server_unhealthy(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        """A worker frozen (SIGSTOP): the other answers /healthz 503 naming it, and 200 again
        once it runs on."""
        data, env = fleet
        server = start_server(data, env, "--workers", "2", "--http", "127.0.0.1:0")
        try:
            reach = answering(server)
            frozen = workers_of(server)
            pid_of = {
                w["worker"]: w["pid"]
                for w in from_address(server, reach[1], "/healthz").json()["workers"]
            }
            assert sorted(pid_of.values()) == sorted(frozen)
            os.kill(pid_of[2], signal.SIGSTOP)
            try:
                wait_until(
                    lambda: from_address(server, reach[1], "/healthz").status_code == 503, 30
                )
                body = from_address(server, reach[1], "/healthz").json()
            finally:
                os.kill(pid_of[2], signal.SIGCONT)
            wait_until(lambda: from_address(server, reach[1], "/healthz").status_code == 200, 30)
        finally:
            stopped(server)
        assert body["healthy"] is False
        assert len(body["reasons"]) == 1
        assert re.fullmatch(r"worker 2: no report for \d+\.\d s", body["reasons"][0])
        assert [w["healthy"] for w in body["workers"]] == [True, False]


def tftp_from(source: str, port: int, name: str) -> bytes:
    """A TFTP read from ``source`` (a fresh source port, as each of a phone's transfers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
        phone.bind((source, 0))
        phone.settimeout(10)
        phone.sendto(b"\x00\x01" + name.encode() + b"\x00octet\x00", ("127.0.0.1", port))
        received = b""
        while True:
            packet, server = phone.recvfrom(1024)
            assert packet[:2] == b"\x00\x03", packet  # DATA
            received += packet[4:]
            phone.sendto(b"\x00\x04" + packet[2:4], server)
            if len(packet) - 4 < 512:
                return received


class TestFtp:
    def test_ftp_is_served_by_every_worker_and_counted_in_the_totals(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        """Sessions from 16 addresses, each held open after a download: the kernel spreads
        them over both workers (each address to one), every passive data connection reaches
        the worker that opened its listener, and the totals count every transfer."""
        data, env = fleet
        served = start_ftp(data, env, "--workers", "2", "--ftp-shared-login", "PlcmSpIp:PlcmSpIp")
        license_file = (data / "provisioning" / f"{MAC}-license.cfg").read_bytes()
        clients = []
        try:
            for last in range(1, 17):
                client = ftplib.FTP(timeout=30, source_address=(f"127.0.0.{last}", 0))  # noqa: S321
                clients.append(client)
                client.connect("127.0.0.1", served.port)
                client.login("PlcmSpIp", "PlcmSpIp")
                for _ in range(2):  # the second on the listener its session kept
                    body = io.BytesIO()
                    client.retrbinary(f"RETR {MAC}-license.cfg", body.write)
                    assert body.getvalue() == license_file
            owners = session_owners(workers_of(served.running), served.port)
            assert len(owners) == 16
            assert len(set(owners.values())) == 2  # both workers hold sessions
            for client in clients:
                client.quit()
        finally:
            out, _ = stopped(served.running)
        line = out.strip().splitlines()[-1]
        assert "32 FTP transfers" in line
        assert totals(line)[1:] == (32, 0)

    def test_ftp_sessions_from_a_proxy_that_names_its_phones_are_spread_over_both_workers(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        """Every session behind HAProxy comes from its one address; steered by that address,
        one worker would take them all. A ``--ftp-proxy-protocol`` source is left to the
        kernel's hash, as a ``--trusted-proxy`` is (16 sessions all on one worker by chance:
        2 in 65,536)."""
        data, env = fleet
        served = start_ftp(data, env, "--workers", "2", "--ftp-proxy-protocol", "127.0.0.1")
        sessions = []
        try:
            for last in range(1, 17):
                sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
                sessions.append(sock)
                sock.sendall(f"PROXY TCP4 10.0.0.{last} 127.0.0.1 40000 21\r\n".encode())
                assert sock.makefile("rb").readline().startswith(b"220")  # a session began
            owners = session_owners(workers_of(served.running), served.port, by_port=True)
            assert len(owners) == 16
            assert len(set(owners.values())) == 2
        finally:
            for sock in sessions:
                sock.close()
            stopped(served.running)


def session_owners(workers: list[int], port: int, *, by_port: bool = False) -> dict[str, int]:
    """The worker holding each established FTP control connection on ``port``, by the
    client's address, or its address and port (from /proc/net/tcp and the workers'
    descriptors)."""
    inodes: dict[str, str] = {}
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and int(local.split(":")[1], 16) == port:
            packed = bytes.fromhex(remote.split(":")[0])[::-1]  # little-endian IPv4
            client = socket.inet_ntoa(packed)
            inodes[inode] = f"{client}:{int(remote.split(':')[1], 16)}" if by_port else client
    owners: dict[str, int] = {}
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
            if inode in inodes:
                owners[inodes[inode]] = pid
    return owners


class TestIdentity:
    def test_a_tftp_phone_is_known_by_its_address_on_every_transfer_whatever_the_worker(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        """Each transfer comes from a new source port; the address steers them all to the
        worker that heard the phone name itself, so its site license is its site's."""
        data, env = fleet
        server = start_server(data, env, "--workers", "2", "--http", "off", "--tftp", "0")
        site_license = (data / "provisioning" / "000000000000-license.cfg").read_bytes()
        try:
            for last in range(5, 11):  # six phones' addresses, spread over both workers
                tftp_from(f"127.0.0.{last}", server.port, f"{MAC}-directory.xml")
                for _ in range(4):
                    got = tftp_from(f"127.0.0.{last}", server.port, "000000000000-license.cfg")
                    assert got == site_license
        finally:
            stopped(server)
        found = json.loads(server.cli("fetches", "--mac", MAC, "--json", "--limit", "1000"))
        site = [r for r in found if r["path"].endswith("000000000000-license.cfg")]
        assert len(site) == 24
        assert {r["identified_by"] for r in site} == {"address"}

    def test_a_digest_nonce_one_worker_gave_is_good_at_the_other(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """Behind a trusted proxy (here 127.0.0.1) connections are spread by the kernel's
        hash; a phone that reuses its nonce on a new connection must not be challenged again
        by the worker that did not give it."""
        data, env = fleet_env(tmp_path_factory, "workers-digest")
        make_fleet(data, env, f"mac,site,model,user,password\n{MAC},{SITE},VVX_500,vvx,s3cret\n")
        server = start_server(
            data, env, "--workers", "2", "--auth", "digest", "--trusted-proxy", "127.0.0.1"
        )
        auth = httpx.DigestAuth("vvx", "s3cret")  # keeps the challenge, counts the nonce
        answers = []
        try:
            for _ in range(20):
                with httpx.Client(base_url=server.url, auth=auth) as phone:  # a new connection
                    answers.append(phone.get(f"/{MAC}-license.cfg"))
        finally:
            stopped(server)
        assert [a.status_code for a in answers] == [200] * 20
        assert [len(a.history) for a in answers[1:]] == [0] * 19  # never challenged again


class TestRestartsAndStops:
    def test_a_killed_worker_is_started_again_and_its_port_keeps_answering(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        data, env = fleet
        server = start_server(data, env, "--workers", "2")
        try:
            assert licenses(server.url, 20) == [200] * 20
            time.sleep(1.5)  # the killed worker's counters are in its last snapshot
            first, second = workers_of(server)
            os.kill(second, signal.SIGKILL)
            wait_until(lambda: second not in workers_of(server) and len(workers_of(server)) == 2)
            assert first in workers_of(server)
            assert licenses(server.url, 40) == [200] * 40  # both sockets answered again
            time.sleep(1.5)
            text = httpx.get(f"{server.url}/metrics").text
        finally:
            out, err = stopped(server)
        assert f"worker 2 (pid {second}) killed by SIGKILL: starting another" in err
        assert metric(text, "fleetkey_fetches_total") == 60  # the dead worker's stay counted
        line = out.strip().splitlines()[-1]
        assert line.startswith("stopped: 3 workers (1 ended early and restarted; 0 fetch records")
        answered, written, lost = totals(line)
        assert (answered, written, lost) == (61, 60, 0)  # and /metrics, not a fetch

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_a_stop_under_load_writes_a_record_for_every_answer_of_every_worker(
        self, tmp_path_factory: pytest.TempPathFactory, signum: int
    ) -> None:
        data, env = fleet_env(tmp_path_factory, "workers-stop")
        make_fleet(data, env)
        self._stop_under_load(data, env, signum)

    @pytest.mark.postgres
    def test_on_postgresql_each_worker_writes_every_record_of_its_own(
        self, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
    ) -> None:
        data, env = fleet_env(tmp_path_factory, "workers-pg")
        env["FLEETKEY_DB"] = request.getfixturevalue("postgres_server").create_database()
        make_fleet(data, env)
        self._stop_under_load(data, env, signal.SIGTERM)

    def _stop_under_load(self, data: Path, env: dict[str, str], signum: int) -> None:
        server = start_server(data, env, "--workers", "2")
        received: list[int] = []
        failed: list[int] = []
        going = threading.Event()
        going.set()

        def phone() -> None:
            while going.is_set():
                try:
                    received.append(licenses(server.url, 1)[0])
                except httpx.HTTPError:
                    failed.append(1)
                    return  # the server stopped listening

        threads = [threading.Thread(target=phone) for _ in range(8)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(received) >= 200, 60)
        out, _ = stopped(server, signum)
        going.clear()
        for thread in threads:
            thread.join(30)
        line = out.strip().splitlines()[-1]
        answered, written, lost = totals(line)
        assert lost == 0
        assert written == answered  # no operator requests: every answer is a fetch record
        assert fetch_count(server) == written
        # every answer a phone got was recorded; an answer cut at the stop may not have arrived
        assert set(received) == {200}
        assert len(received) <= written <= len(received) + len(failed)


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`fleetkey serve ARGS` that is expected to stop by itself."""
    return subprocess.run(
        [*fleetkey_command(), "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestRefused:
    @pytest.mark.parametrize(
        ("given", "said"),
        [
            ("0", "0 workers: give 1 to 64"),
            ("-1", "-1 workers: give 1 to 64"),
            ("abc", "'abc' is not a number of workers nor 'auto'"),
            ("65", "65 workers: give 1 to 64"),
            ("", "'' is not a number of workers nor 'auto'"),
        ],
    )
    def test_a_worker_count_that_is_not_one_is_a_usage_error(
        self, fleet: tuple[Path, dict[str, str]], given: str, said: str
    ) -> None:
        _, env = fleet
        done = serve(env, "--workers", given, "--http", "127.0.0.1:0")
        assert done.returncode == 2, done.stderr
        assert "Invalid value for '--workers'" in done.stderr
        assert said in done.stderr
        assert "fleetkey serving" not in done.stdout

    def test_a_port_in_use_is_said_once_and_no_worker_starts(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        _, env = fleet
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = serve(env, "--workers", "2", "--http", f"127.0.0.1:{port}")
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr.startswith(
            f"error: cannot listen for HTTP on 127.0.0.1:{port}: the port is already in use"
        )
        assert "hint: another program listens on HTTP port" in done.stderr

    def test_another_serve_with_workers_on_the_same_port_is_refused_not_joined(
        self, fleet: tuple[Path, dict[str, str]]
    ) -> None:
        """SO_REUSEPORT lets a process of the same user join the port: bound alone first,
        a second `serve --workers` is refused instead of taking half the phones."""
        data, env = fleet
        server = start_server(data, env, "--workers", "2")
        try:
            done = serve(env, "--workers", "2", "--http", f"127.0.0.1:{server.port}")
        finally:
            stopped(server)
        assert done.returncode == 1
        assert "the port is already in use" in done.stderr
