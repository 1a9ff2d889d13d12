"""Several `fleetkey serve` on one PostgreSQL behind a real HAProxy, as docs/deploy.md deploys
them: the parts tests/integration/test_deployment.py and tests/fleetrun.py (the Show, also run
by bench/deploy.py) start, never a test module importing another.

HAProxy balances HTTP, HTTPS (ended at HAProxy, on to the servers' HTTP) and FTP (the control
connection as TCP; each server's passive ports a part of one range HAProxy listens on, the
data connection going to the server whose part holds its port): every frontend is always
there, its ports free ones of the balancer's address; servers serve FTP when asked
(``ftp=True``).

Each server has a data directory of its own (its held and unwritten fetch records) whose
``provisioning`` and ``uploads`` are the one shared directory of the deployment (docs/deploy.md:
NFS or any shared file system; here the administrator's data directory), and listens on a
loopback address of its own. HAProxy runs ``docs/deploy/haproxy.cfg`` itself, the addresses
given in its environment, and logs every request (who answered it) to a file.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers import self_signed
from tests.serving import fleetkey_command, server_env

REPO = Path(__file__).resolve().parent.parent
HAPROXY_CONFIG = REPO / "docs" / "deploy" / "haproxy.cfg"
BALANCER_HOST = "127.0.0.10"
SERVER_HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
NAMES = ("serve1", "serve2", "serve3")  # as haproxy.cfg names them
# the line of totals `fleetkey serve` prints when it stops (counts with separators: 1,234)
SUMMARY = re.compile(r"([\d,]+) fetch records written, ([\d,]+) not recorded")


def count(text: str) -> int:
    """A count as `fleetkey` prints it for people (``1,234``)."""
    return int(text.replace(",", ""))


# "%Ts.%ms %ci %HM %HP %ST %s %rc %Tt %tsc" (haproxy.cfg's log-format)
REQUEST_LINE = re.compile(
    r"^(?P<at>\d+\.\d+) (?P<client>\S+) (?P<method>\S+) (?P<path>\S+) (?P<status>-?\d+) "
    r"(?P<server>\S+) (?P<retries>\+?\d+) (?P<total_ms>-?\d+) (?P<state>\S+)$"
)


def haproxy() -> str:
    """HAProxy's program (scripts/test-deps installs Debian's)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if found is None:
        raise AssertionError("haproxy is not installed: run scripts/test-deps as root")
    return found


def free_port_on(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_udp_port_on(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


PASSIVE_PORTS = 200  # each server's part of the passive range (few reuses of a port)


def free_sip_port() -> int:
    """A port for the emulated phones' SIP (UDP on each phone's address, TCP on the wildcard)
    below the passive ranges and the kernel's ephemeral ports: one of those, free when chosen,
    was taken seconds later as the own port of one of the deployment's own connections
    (HAProxy's to the servers), and the emulator's TCP listener failed with "Address already
    in use" (one run)."""
    for _ in range(200):
        port = 10_000 + secrets.randbelow(10_000)
        if _free(BALANCER_HOST, port) and _free("0.0.0.0", port) and _free_udp(port):  # noqa: S104
            return port
    raise AssertionError("no port free for SIP in 10000-19999")


def _free_udp(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104  # only to see that it is free
        except OSError:
            return False
        return True


def passive_ranges(count: int = len(SERVER_HOSTS)) -> list[tuple[int, int]]:
    """A part of one passive range for each server (first, last), below the kernel's
    ephemeral ports, every port of it free on the balancer's address (HAProxy binds them)."""
    for _ in range(50):
        base = 20_000 + secrets.randbelow(12_000 - count * PASSIVE_PORTS)
        ports = range(base, base + count * PASSIVE_PORTS)
        if all(_free(BALANCER_HOST, port) for port in ports):
            return [
                (base + i * PASSIVE_PORTS, base + (i + 1) * PASSIVE_PORTS - 1) for i in range(count)
            ]
    raise AssertionError(f"no {count * PASSIVE_PORTS} free ports in a row on {BALANCER_HOST}")


def _free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class Served:
    """A request HAProxy logged."""

    at: float  # time.time() it was received
    client: str
    method: str
    path: str
    status: int  # -1: no answer reached the phone
    server: str  # serveN (serveN-anyway: the same process as an unchecked backup), <NOSRV>
    redispatched: bool  # sent to another server after its first failed
    total_ms: int
    retries: int = 0  # %rc: the times HAProxy sent it again (to any server, the same too)

    @property
    def process(self) -> str:
        """The server process that answered: a backup line is its checked server's process."""
        return self.server.removesuffix("-anyway")


@dataclass
class Balancer:
    process: subprocess.Popen[bytes]
    log: Path
    url: str
    tls_url: str  # HTTPS, ended at HAProxy (its certificate: ``certificate``)
    ftp_port: int
    certificate: Path

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def requests(self) -> list[Served]:
        found = []
        for line in self.lines():
            match = REQUEST_LINE.match(line)
            if match is not None:
                found.append(
                    Served(
                        float(match["at"]),
                        match["client"],
                        match["method"],
                        match["path"],
                        int(match["status"]),
                        match["server"],
                        match["retries"].startswith("+"),
                        int(match["total_ms"]),
                        int(match["retries"].lstrip("+")),
                    )
                )
        return found

    def answered_by(self) -> Counter[str]:
        """Requests each server answered (a status reached the phone through HAProxy)."""
        return Counter(r.server for r in self.requests() if r.status > 0)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


def balancer_env(
    work: Path, servers: list[Server], passive: list[tuple[int, int]]
) -> tuple[dict[str, str], dict[str, int]]:
    """haproxy.cfg's variables for ``servers`` (a server without FTP gets port 1 there:
    nothing listens) and the balancer's ports (http, https, ftp); its certificate made."""
    certificate, key = self_signed(work, BALANCER_HOST)
    pem = work / "balancer.pem"
    pem.write_bytes(certificate.read_bytes() + key.read_bytes())
    ports = {name: free_port_on(BALANCER_HOST) for name in ("http", "https", "ftp")}
    env = {
        "FLEETKEY_PHONES_BIND": f"{BALANCER_HOST}:{ports['http']}",
        "FLEETKEY_TLS_BIND": f"{BALANCER_HOST}:{ports['https']}",
        "FLEETKEY_TLS_PEM": str(pem),
        "FLEETKEY_FTP_BIND": f"{BALANCER_HOST}:{ports['ftp']}",
        "FLEETKEY_PASSIVE_BIND": f"{BALANCER_HOST}:{passive[0][0]}-{passive[-1][1]}",
    }
    for i, server in enumerate(servers, 1):
        first, last = passive[i - 1]
        env[f"FLEETKEY_SERVE_{i}"] = f"{server.host}:{server.port}"
        env[f"FLEETKEY_FTP_{i}"] = f"{server.host}:{server.ftp_port or 1}"
        env[f"FLEETKEY_HOST_{i}"] = server.host
        env[f"FLEETKEY_PASSIVE_{i}"] = f"{first}:{last}"
    return env, ports


def start_balancer(
    work: Path, servers: list[Server], passive: list[tuple[int, int]] | None = None
) -> Balancer:
    """HAProxy in the foreground with docs/deploy/haproxy.cfg, logging to ``work/haproxy.log``;
    ``passive``: the servers' passive ranges (``start_servers``'), else free ones."""
    settings, ports = balancer_env(work, servers, passive or passive_ranges())
    port = ports["http"]
    env = {**os.environ, **settings}
    log = work / "haproxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [haproxy(), "-db", "-f", str(HAPROXY_CONFIG)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
    balancer = Balancer(
        process,
        log,
        f"http://{BALANCER_HOST}:{port}",
        f"https://{BALANCER_HOST}:{ports['https']}",
        ports["ftp"],
        work / "server.crt",
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"haproxy exited {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection((BALANCER_HOST, port), timeout=1):
                return balancer
        except OSError:
            time.sleep(0.1)
    balancer.stop()
    raise AssertionError(f"haproxy did not listen within 30 s: {log.read_text()}")


@dataclass
class Server:
    name: str
    host: str
    port: int
    data: Path
    process: subprocess.Popen[str]
    ftp_port: int | None = None
    tftp_port: int | None = None
    summary: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> str:
        """SIGTERM; its line of totals (it must exit 0: every record written)."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, f"{self.name} exited {self.process.returncode}: {err}"
        self.summary = out.strip().splitlines()[-1]
        return self.summary

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=30)


def server_data(work: Path, name: str, admin: Path) -> Path:
    """A server's own data directory as docs/deploy.md makes it: its tree and uploads the
    deployment's shared ones, the admin API's token hash and the feature catalog copied from
    the administrator's, and no private key (servers sign nothing)."""
    data = work / name
    (data / "keys").mkdir(mode=0o700, parents=True)
    shutil.copy2(admin / "keys" / "api-token.sha256", data / "keys" / "api-token.sha256")
    shutil.copy2(admin / "features.toml", data / "features.toml")
    (data / "provisioning").symlink_to(admin / "provisioning")
    (data / "uploads").symlink_to(admin / "uploads")
    return data


def start_servers(
    work: Path,
    shared: Path,
    database: str,
    *args: str,
    hosts: tuple[str, ...] = SERVER_HOSTS,
    passive: list[tuple[int, int]] | None = None,
    tftp: bool = False,
) -> list[Server]:
    """`fleetkey serve` on each loopback host, believing X-Forwarded-For from HAProxy (which
    reaches them from 127.0.0.1); started together, then each awaited. ``passive``: FTP too,
    each server with its part of the passive range, announcing the balancer's address and
    reading HAProxy's PROXY header (send-proxy-v2) on control connections from 127.0.0.1;
    ``tftp``: TFTP too, on a free port of the server's own address (``Server.tftp_port``)."""
    (shared / "uploads").mkdir(mode=0o700, exist_ok=True)
    started = []
    for i, (name, host) in enumerate(zip(NAMES, hosts, strict=False)):
        data = server_data(work, name, shared)
        env = server_env(data)
        env["FLEETKEY_DB"] = database
        port = free_port_on(host)
        ftp: list[str] = []
        ftp_port = None
        if passive is not None:
            ftp_port = free_port_on(host)
            first, last = passive[i]
            ftp = ["--ftp", f"{host}:{ftp_port}", "--ftp-passive", f"{first}-{last}",
                   "--ftp-masquerade", BALANCER_HOST,
                   "--ftp-proxy-protocol", "127.0.0.1/32"]  # fmt: skip
        tftp_port = free_udp_port_on(host) if tftp else None
        udp = ["--tftp", f"{host}:{tftp_port}"] if tftp_port else []
        process = subprocess.Popen(
            [*fleetkey_command(), "serve", "--http", f"{host}:{port}",
             "--trusted-proxy", "127.0.0.1/32", *ftp, *udp, *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(Server(name, host, port, data, process, ftp_port, tftp_port))
    for server in started:
        assert server.process.stdout is not None
        listeners = 1 + bool(server.ftp_port) + bool(server.tftp_port)
        lines = [server.process.stdout.readline() for _ in range(listeners)]
        if not all(line.startswith("fleetkey serving ") for line in lines):
            for other in started:
                other.process.kill()
            raise AssertionError(f"{server.name} did not start: {lines!r}")
    return started


def take_down(balancer: Balancer | None, servers: list[Server]) -> None:
    """Stop HAProxy and SIGKILL every server still running (a test's cleanup, whatever
    happened before it)."""
    if balancer is not None:
        balancer.stop()
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate(timeout=30)


@dataclass
class Poller:
    """Asks each server directly for a site's license every ``every_s`` and notes when each
    first served ``expected`` (bytes); its requests are counted (each is a fetch record)."""

    servers: list[Server]
    path: str
    expected: bytes
    every_s: float = 0.05
    first_seen: dict[str, float] = field(default_factory=dict)  # name → time.time()
    asked: Counter[str] = field(default_factory=Counter)

    def run_until_all(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        clients = {s.name: httpx.Client(base_url=s.url, timeout=5) for s in self.servers}
        try:
            while len(self.first_seen) < len(self.servers) and time.monotonic() < deadline:
                for server in self.servers:
                    if server.name in self.first_seen:
                        continue
                    reply = clients[server.name].get(self.path)
                    self.asked[server.name] += 1
                    if reply.status_code == 200 and reply.content == self.expected:
                        self.first_seen[server.name] = time.time()
                time.sleep(self.every_s)
        finally:
            for client in clients.values():
                client.close()
