"""FTP boots per second: `fleetkey serve --ftp` next to vsftpd and a bare pyftpdlib, same files.

    .venv/bin/python bench/ftp.py [--phones 1000] [--seconds 8] [--rounds 3] [--in-flight 64]
                                  [--json]

Needs vsftpd (`apt-get install -y vsftpd`, run as root: it is started here on a port of its
own with a throwaway configuration, never the system's). A boot is what a phone on the
factory FTP setup does (domain.md §5.1, §5.3): connect, log in, ``TYPE I``, then for each of
12 files ``EPSV`` + ``RETR`` on a new data connection, then ``QUIT``; every file is checked
byte for byte against the tree on disk. 64 boots in flight, each from a loopback address of
its own (a phone on the network; servers check that the data connection comes from the
control connection's address). Servers run pinned to core 0, the generator (asyncio on
uvloop) on core 1.

The three servers answer the same 12 names from the same tree: vsftpd anonymous (how
administrators put FTP back by hand), its transfer log on; pyftpdlib with one user and its
command log off, straight from disk; fleetkey with the shared factory login, answering through
its pipeline and recording every RETR (the run checks the count). All three run from the start;
each round measures them in turn, the order turned every round, and the figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import uvloop

from benchfleet import (
    FLEETKEY,
    bench_env,
    issue_phone_licenses,
    open_tree_to_baselines,
    stop_servers,
)

USER: Final = "PlcmSpIp"
BOOT_TIMEOUT_S: Final = 20.0  # a boot taking longer counts as failed
SERVERS: Final = ["vsftpd", "pyftpdlib", "fleetkey"]
SHARED_FILES: Final = {
    "000000000000.cfg": 1699,
    "sip.cfg": 24_000,
    "000000000000-license.cfg": 452,
    "000000000000-directory.xml": 3_000,
    "ring.wav": 16_000,
    "features.cfg": 2_000,
}
PER_PHONE: Final = ("cfg", "phone.cfg", "web.cfg", "directory.xml", "calls.xml")

PYFTPDLIB_SERVER = """
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())
logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
authorizer = DummyAuthorizer()
authorizer.add_user("PlcmSpIp", "PlcmSpIp", sys.argv[1], perm="elr")
FTPHandler.authorizer = authorizer
# a passive range: pyftpdlib binds it with SO_REUSEADDR; on port 0 (its default) the kernel
# skips ports in TIME_WAIT, and 12 data connections a boot used all of them within a minute
FTPHandler.passive_ports = range(30000, 31000)
server = FTPServer(("127.0.0.1", int(sys.argv[2])), FTPHandler)
server.max_cons = 0
server.serve_forever()
"""

VSFTPD_CONF = """listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
anonymous_enable=YES
no_anon_password=YES
anon_root={tree}
local_enable=NO
write_enable=NO
pasv_enable=YES
max_clients=0
max_per_ip=0
xferlog_enable=YES
vsftpd_log_file={log}
xferlog_file={log}
isolate=NO
isolate_network=NO
seccomp_sandbox=NO
background=NO
secure_chroot_dir=/var/run/vsftpd/empty
"""


def boot_names(mac: str) -> list[str]:
    """The 12 files of a boot, the phone's own <mac>.cfg first (it names the phone)."""
    return [
        f"{mac}.cfg",
        "000000000000.cfg",
        "sip.cfg",
        f"{mac}-phone.cfg",
        f"{mac}-web.cfg",
        "000000000000-license.cfg",
        f"{mac}-license.cfg",
        f"{mac}-directory.xml",
        "000000000000-directory.xml",
        f"{mac}-calls.xml",
        "ring.wav",
        "features.cfg",
    ]


def master(size: int, rng: random.Random) -> bytes:
    """A master configuration of about ``size`` bytes (fleetkey reads the tree's masters)."""
    head = b"<?xml version='1.0'?>\n<APPLICATION APP_FILE_PATH='sip.ld' CONFIG_FILES='sip.cfg'/>\n"
    return head + b"<!-- " + rng.randbytes(size).hex().encode()[:size] + b" -->\n"


def fill_tree(tree: Path, macs: list[str]) -> dict[str, bytes]:
    """The shared and per-phone files next to the phone licenses; every name → its bytes."""
    rng = random.Random(7)
    for name, size in SHARED_FILES.items():
        body = master(size, rng) if name == "000000000000.cfg" else rng.randbytes(size)
        (tree / name).write_bytes(body)
    for mac in macs:
        for kind in PER_PHONE:
            name = f"{mac}.{kind}" if kind == "cfg" else f"{mac}-{kind}"
            size = rng.randint(300, 3000)
            (tree / name).write_bytes(master(size, rng) if kind == "cfg" else rng.randbytes(size))
    return {path.name: path.read_bytes() for path in tree.iterdir() if path.is_file()}


class BootError(Exception):
    """A boot that did not go as a phone's would."""


async def reply(reader: asyncio.StreamReader) -> str:
    line = (await reader.readline()).decode()
    first = line
    while not (len(line) >= 4 and line[:3] == first[:3] and line[3] == " "):
        line = (await reader.readline()).decode()
        if not line:
            raise BootError(f"connection closed after {first!r}")
    return line.rstrip("\r\n")


async def command(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, line: str) -> str:
    writer.write(line.encode() + b"\r\n")
    return await reply(reader)


class Load:
    def __init__(
        self, port: int, files: dict[str, bytes], macs: list[str], user: str, subnet: int
    ) -> None:
        self.port, self.files, self.macs, self.user, self.subnet = port, files, macs, user, subnet
        self.random = random.Random(1)
        self.boots = self.retrs = self.failures = self.mismatches = 0
        self.running = True

    async def boot(self, source: str) -> None:
        mac = self.random.choice(self.macs)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, local_addr=(source, 0)
        )
        try:
            if not (await reply(reader)).startswith("220"):
                raise BootError("no banner")
            await command(writer, reader, f"USER {self.user}")
            answer = await command(writer, reader, f"PASS {self.user}")
            if not answer.startswith("230"):
                raise BootError(answer)
            await command(writer, reader, "TYPE I")
            for name in boot_names(mac):
                await self.retr(reader, writer, source, name)
            await command(writer, reader, "QUIT")
            self.boots += 1
        finally:
            writer.close()

    async def retr(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: str, name: str
    ) -> None:
        answer = await command(writer, reader, "EPSV")
        match = re.search(r"\(\|\|\|(\d+)\|\)", answer)
        if match is None:
            raise BootError(answer)
        data_reader, data_writer = await asyncio.open_connection(
            "127.0.0.1", int(match.group(1)), local_addr=(source, 0)
        )
        try:
            writer.write(f"RETR {name}\r\n".encode())
            started = await reply(reader)
            if not started.startswith(("125", "150")):
                raise BootError(f"RETR {name}: {started}")
            body = await data_reader.read()
        finally:
            data_writer.close()
        done = await reply(reader)
        if not done.startswith("226"):
            raise BootError(f"RETR {name}: {done}")
        self.retrs += 1
        if body != self.files[name]:
            self.mismatches += 1

    async def slot(self, source: str) -> None:
        while self.running:
            try:
                async with asyncio.timeout(BOOT_TIMEOUT_S):
                    await self.boot(source)
            except (BootError, OSError, TimeoutError):
                self.failures += 1
                await asyncio.sleep(0.05)

    async def run(self, seconds: float, in_flight: int) -> float:
        sources = [f"127.{self.subnet}.{1 + i // 250}.{1 + i % 250}" for i in range(in_flight)]
        tasks = [asyncio.create_task(self.slot(source)) for source in sources]
        begin = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - begin
        boots = self.boots
        self.running = False
        for task in tasks:  # boots in flight are not counted: end them now
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return boots / elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.recv(100)
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def start_servers(
    base: Path, env: dict[str, str], tree: Path, started: list[subprocess.Popen[str]]
) -> dict[str, int]:
    """All three, each pinned to core 0 and idle until its turn; fleetkey last (its summary)."""
    vsftpd = shutil.which("vsftpd") or shutil.which("vsftpd", path="/usr/sbin")
    if vsftpd is None:
        raise SystemExit("bench/ftp.py needs vsftpd: apt-get install -y vsftpd")
    ports = {"vsftpd": free_port(), "pyftpdlib": free_port()}
    conf = base / "vsftpd.conf"
    conf.write_text(VSFTPD_CONF.format(port=ports["vsftpd"], tree=tree, log=base / "xfer.log"))
    started.append(subprocess.Popen(["taskset", "-c", "0", vsftpd, str(conf)], text=True))
    script = base / "pyftpdlib_server.py"
    script.write_text(PYFTPDLIB_SERVER)
    command = [sys.executable, str(script), str(tree), str(ports["pyftpdlib"])]
    started.append(subprocess.Popen(["taskset", "-c", "0", *command], text=True))
    server = subprocess.Popen(
        ["taskset", "-c", "0", *FLEETKEY, "serve", "--http", "off", "--ftp", "127.0.0.1:0",
         "--ftp-shared-login", f"{USER}:{USER}", "--ftp-max-connections", "4096"],
        env=env, stdout=subprocess.PIPE, stderr=(base / "fleetkey.err").open("w"), text=True,
    )  # fmt: skip  # stderr to a file: a full pipe would stop the server
    started.append(server)
    assert server.stdout is not None
    ports["fleetkey"] = int(server.stdout.readline().split()[2].rsplit(":", 1)[1])
    for port in ports.values():
        wait_listening(port)
    return ports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the generator on core 1; servers get core 0
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-ftp-"))
    base.chmod(0o755)
    env = bench_env(base)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SERVERS}
    servers: list[subprocess.Popen[str]] = []
    fleetkey_retrs = 0
    try:
        tree = issue_phone_licenses(base, env, args.phones)
        macs = sorted(p.name[:12] for p in tree.glob("0004f2*-license.cfg"))
        files = fill_tree(tree, macs)
        open_tree_to_baselines(base)
        ports = start_servers(base, env, tree, servers)
        subnet = 0
        for number in range(args.rounds):
            order = SERVERS[number % len(SERVERS) :] + SERVERS[: number % len(SERVERS)]
            for name in order:
                subnet = subnet % 250 + 1
                user = "anonymous" if name == "vsftpd" else USER
                load = Load(ports[name], files, macs, user, subnet)
                cpu = time.process_time()
                rate = uvloop.run(load.run(args.seconds, args.in_flight))
                busy = (time.process_time() - cpu) / args.seconds  # the generator's own core
                if load.mismatches:
                    raise SystemExit(f"{name}: {load.mismatches} files were not byte-exact")
                if name == "fleetkey":
                    fleetkey_retrs += load.retrs
                runs[name].append(
                    {
                        "boots_per_s": rate,
                        "boots": load.boots,
                        "failed": load.failures,
                        "generator_cpu": busy,
                    }
                )
    finally:
        summary = stop_servers(servers)
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, summary, fleetkey_retrs)


def report(
    args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], summary: str, retrs: int
) -> None:
    match = re.search(
        r"(\d+) FTP transfers, (\d+) fetch records written, (\d+) not recorded", summary
    )
    # the count of complete RETRs the generator saw is a floor: boots cut at a round's end
    # leave RETRs that were sent and recorded too
    recorded = (
        match is not None
        and int(match.group(1)) == int(match.group(2))
        and int(match.group(1)) >= retrs
        and match.group(3) == "0"
    )
    rates = {name: [run["boots_per_s"] for run in values] for name, values in runs.items()}
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratios = {f"vs_{b}": medians["fleetkey"] / medians[b] for b in ("vsftpd", "pyftpdlib")}
    load = os.getloadavg()
    if args.json:
        print(json.dumps({"rounds": runs, "median_boots_per_s": medians, "ratios": ratios,
                          "fleetkey": summary, "every_transfer_recorded": recorded,
                          "load_average": load}, indent=2))  # fmt: skip
        return
    print(
        f"{args.phones} phones, 12 RETR a boot, {args.in_flight} boots in flight, {args.rounds} "
        f"rounds of {args.seconds:g} s per server, in turn; servers on core 0, generator on "
        f"core 1; every file checked byte for byte; load average at the end {load[0]:.2f}"
    )
    for name, values in rates.items():
        lost = sum(run["failed"] for run in runs[name])
        rounds = " ".join(f"{value:,.0f}" for value in values)
        generator = max(run["generator_cpu"] for run in runs[name])
        print(
            f"  {name:<9} median {medians[name]:>7,.0f} boots/s ({medians[name] * 12:,.0f} "
            f"RETR/s)   rounds: {rounds}   ({lost:.0f} failed; generator busy "
            f"{generator:.0%} of its core at most)"
        )
    print(
        f"  fleetkey: {ratios['vs_vsftpd']:.2f}x vsftpd (target 2)   "
        f"{ratios['vs_pyftpdlib']:.2f}x bare pyftpdlib (target 0.8)"
    )
    print(f"  {summary}  (every transfer recorded: {'yes' if recorded else 'NO'})")


if __name__ == "__main__":
    main()
