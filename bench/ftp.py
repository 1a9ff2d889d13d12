"""FTP boots per second: `fleetkey serve --ftp` next to vsftpd and a bare pyftpdlib, same files.

    .venv/bin/python bench/ftp.py [--phones 1000] [--seconds 8] [--rounds 3] [--in-flight 64]
                                  [--json] [--profile DIR]

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
import pstats
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

import uvloop

from benchfleet import bench_env, issue_phone_licenses, open_tree_to_baselines, stop_servers
from fleetkey.serve.ftp.server import ephemeral_ports
from ftpservers import USER, start_servers

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run fleetkey's FTP thread and the bare pyftpdlib under cProfile, write their "
        "stats to DIR and print where their time went (the rates are then the profiled ones)",
    )
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
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        ports = start_servers(base, env, tree, servers, args.profile)
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
                        "time_wait": time_wait(),
                    }
                )
    finally:
        summary = stop_servers(servers)
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, summary, fleetkey_retrs)
    if args.profile is not None:
        for name in ("fleetkey", "pyftpdlib"):
            print(f"\n{name}: where the time went (cProfile, by own time)")
            stats = pstats.Stats(str(args.profile / f"{name}.prof"))
            stats.sort_stats("tottime").print_stats(25)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def time_wait() -> int:
    """Sockets of 127.0.0.1 in TIME_WAIT now (the host's: other programs' too)."""
    listed = subprocess.run(
        ["ss", "-Htan", "state", "time-wait", "src", "127.0.0.1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return len(listed.stdout.splitlines())


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
                          "load_average": load, "uptime": uptime()}, indent=2))  # fmt: skip
        return
    low, high = ephemeral_ports()
    print(f"uptime: {uptime()}; ephemeral ports {low}-{high} ({high - low + 1:,})")
    print(
        f"{args.phones} phones, 12 RETR a boot, {args.in_flight} boots in flight, {args.rounds} "
        f"rounds of {args.seconds:g} s per server, in turn; servers on core 0, generator on "
        f"core 1; every file checked byte for byte; load average at the end {load[0]:.2f}"
    )
    for name, values in rates.items():
        lost = sum(run["failed"] for run in runs[name])
        rounds = " ".join(f"{value:,.0f}" for value in values)
        generator = max(run["generator_cpu"] for run in runs[name])
        waiting = max(run["time_wait"] for run in runs[name])
        print(
            f"  {name:<9} median {medians[name]:>7,.0f} boots/s ({medians[name] * 12:,.0f} "
            f"RETR/s)   rounds: {rounds}   ({lost:.0f} failed; generator busy "
            f"{generator:.0%} of its core at most; up to {waiting:,} sockets of 127.0.0.1 in "
            "TIME_WAIT after its rounds)"
        )
    print(
        f"  fleetkey: {ratios['vs_vsftpd']:.2f}x vsftpd (target 2)   "
        f"{ratios['vs_pyftpdlib']:.2f}x bare pyftpdlib (target 0.8)"
    )
    print(f"  {summary}  (every transfer recorded: {'yes' if recorded else 'NO'})")


if __name__ == "__main__":
    main()
