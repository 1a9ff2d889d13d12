"""TFTP throughput: `fleetkey serve --tftp` next to in.tftpd (tftpd-hpa) and tftpy, same files.

    .venv/bin/python bench/tftp.py [--files 1000] [--seconds 8] [--rounds 3] [--in-flight 64]
                                   [--json]

Needs in.tftpd (`apt-get install -y tftpd-hpa`) and tftpy (`pip install tftpy`). Each server
runs pinned to core 0, the load generator to core 1. The generator is asyncio on uvloop with
one non-blocking UDP socket per transfer (64 in flight, each slot on its own loopback
address like a phone on the network): it sends an RRQ for a random
license file, answers OACK and DATA with ACKs, and checks every file byte for byte against the
original. Plain RFC 1350 transfers (blksize 512, no options) and blksize 1428 (with OACK).
fleetkey records every transfer as a fetch record; the run checks that the count matches.
All three servers run from the start; each round measures them in turn (the order turned every
round) and the figures are the medians over the rounds: the machine's speed drifts between
runs, and this way the drift falls on every server alike instead of on one.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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

TFTPY_SERVER = """
import logging, sys, tftpy
logging.disable(logging.CRITICAL)  # tftpy logs every timeout at INFO and above
tftpy.TftpServer(sys.argv[1]).listen("127.0.0.1", int(sys.argv[2]))
"""


def need(program: str, package: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin")
    if found is None:
        raise SystemExit(f"bench/tftp.py needs {program}: apt-get install -y {package}")
    return found


def need_tftpy() -> None:
    """The pure-Python baseline runs under this interpreter: say so before anything starts."""
    if importlib.util.find_spec("tftpy") is None:
        raise SystemExit(f"bench/tftp.py needs tftpy: {sys.executable} -m pip install tftpy")


class Slot:
    """One transfer at a time: RRQ → (OACK → ACK 0) → DATA → ACK, each from a fresh socket.

    A fresh socket per transfer is what phones do (a new TID each time), and it keeps late
    packets of an earlier transfer from ever mixing into the next one.
    """

    def __init__(self, bench: Load, source: str) -> None:
        self.bench = bench
        self.source = source  # an address of its own, as each phone has
        self.sock: socket.socket | None = None
        self.name = ""
        self.parts: list[bytes] = []
        self.server: tuple[str, int] | None = None
        self.started = 0.0

    def start(self) -> None:
        bench = self.bench
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((self.source, 0))  # before the old socket closes: never its port again
        self.close()
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self.readable)
        self.name = bench.random.choice(bench.names)
        self.parts, self.server, self.started = [], None, time.perf_counter()
        options = b"" if bench.blksize == 512 else b"blksize\0%d\0" % bench.blksize
        sock.sendto(b"\x00\x01" + self.name.encode() + b"\0octet\0" + options, bench.address)

    def close(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            packet, addr = sock.recvfrom(70000)
        except (BlockingIOError, ConnectionRefusedError):
            return
        opcode = packet[1]
        if self.server is None:
            self.server = addr
        elif addr != self.server:
            return
        if opcode == 6:  # OACK
            sock.sendto(b"\x00\x04\x00\x00", addr)
        elif opcode == 3:
            if int.from_bytes(packet[2:4], "big") != len(self.parts) + 1:
                return  # a repeated block
            self.parts.append(packet[4:])
            sock.sendto(b"\x00\x04" + packet[2:4], addr)
            if len(packet) - 4 < self.bench.blksize:
                self.bench.done(self, b"".join(self.parts))
        elif opcode == 5:
            self.bench.failed(self, packet[4:-1].decode(errors="replace"))

    def stalled(self) -> bool:
        return time.perf_counter() - self.started > 2.0


class Load:
    def __init__(
        self,
        address: tuple[str, int],
        files: dict[str, bytes],
        blksize: int,
        in_flight: int,
        subnet: int = 1,
    ) -> None:
        self.address, self.files, self.blksize = address, files, blksize
        # slots take their addresses in 127.<subnet>.0.0/16: a new subnet for every run, so
        # a server still retransmitting to a finished run's ports never reaches this one
        self.subnet = subnet
        self.names = sorted(files)
        self.random = random.Random(1)
        self.completed = self.failures = self.mismatches = 0
        self.slots: list[Slot] = []
        self.in_flight = in_flight
        self.running = True

    def done(self, slot: Slot, body: bytes) -> None:
        if body != self.files[slot.name]:
            self.mismatches += 1
        self.completed += 1
        if self.running:
            slot.start()

    def failed(self, slot: Slot, reason: str) -> None:
        self.failures += 1
        if self.running:
            slot.start()

    async def run(self, seconds: float) -> float:
        self.slots = [
            Slot(self, f"127.{self.subnet}.{1 + i // 250}.{1 + i % 250}")
            for i in range(self.in_flight)
        ]
        begin = time.perf_counter()
        for slot in self.slots:
            slot.start()
        while time.perf_counter() - begin < seconds:
            await asyncio.sleep(0.5)
            for slot in self.slots:  # a lost packet: count it, start over
                if slot.stalled():
                    self.failed(slot, "stalled")
        elapsed = time.perf_counter() - begin
        self.running = False
        for slot in self.slots:
            slot.close()
        return self.completed / elapsed


def measure(
    port: int,
    files: dict[str, bytes],
    blksize: int,
    seconds: float,
    in_flight: int,
    subnet: int = 1,
    label: str = "",
) -> dict[str, float]:
    load = Load(("127.0.0.1", port), files, blksize, in_flight, subnet)
    rate = uvloop.run(load.run(seconds))
    if load.mismatches:
        raise SystemExit(
            f"{label or 'port'} {port}: {load.mismatches} transfers were not byte-exact"
        )
    return {"transfers_per_s": rate, "completed": load.completed, "failed": load.failures}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVERS: Final = ["in.tftpd", "tftpy", "fleetkey"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the generator on core 1; servers get core 0
    in_tftpd = need("in.tftpd", "tftpd-hpa")
    need_tftpy()
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-tftp-"))
    base.chmod(0o755)
    env = bench_env(base)
    runs: dict[str, dict[int, list[dict[str, float]]]] = {
        name: {512: [], 1428: []} for name in SERVERS
    }
    servers: list[subprocess.Popen[str]] = []
    try:
        tree = issue_phone_licenses(base, env, args.files)
        files = {p.name: p.read_bytes() for p in tree.glob("*-license.cfg")}
        open_tree_to_baselines(base)
        ports = start_servers(base, env, tree, in_tftpd, servers)
        # rounds, each server in turn and the order turned every round: this VM's speed
        # drifts by up to 25 % over minutes, and a baseline measured minutes apart from the
        # server it is compared with would carry that drift into the ratio
        subnet = 0
        for number in range(args.rounds):
            order = SERVERS[number % len(SERVERS) :] + SERVERS[: number % len(SERVERS)]
            for name in order:
                for size in (512, 1428):
                    subnet = subnet % 250 + 1
                    figures = measure(
                        ports[name], files, size, args.seconds, args.in_flight, subnet, name
                    )
                    runs[name][size].append(figures)
    finally:
        summary = stop_servers(servers)
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, summary, len(files))


def start_servers(
    base: Path,
    env: dict[str, str],
    tree: Path,
    in_tftpd: str,
    started: list[subprocess.Popen[str]],
) -> dict[str, int]:
    """All three, each pinned to core 0 and idle until its turn; fleetkey last (its summary)."""
    ports = {"in.tftpd": free_port(), "tftpy": free_port()}
    command = ["taskset", "-c", "0", in_tftpd, "-L", "-a", f"127.0.0.1:{ports['in.tftpd']}"]
    started.append(subprocess.Popen([*command, "-s", str(tree), "-B", "1468"], text=True))
    script = base / "tftpy_server.py"
    script.write_text(TFTPY_SERVER)
    started.append(
        subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, str(script), str(tree), str(ports["tftpy"])],
            text=True,
        )
    )
    server = subprocess.Popen(
        ["taskset", "-c", "0", *FLEETKEY, "serve", "--http", "off", "--tftp", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(server)
    assert server.stdout is not None
    ports["fleetkey"] = int(server.stdout.readline().split()[2].rsplit(":", 1)[1])
    time.sleep(1.0)  # tftpy and in.tftpd print nothing when they listen
    return ports


def report(
    args: argparse.Namespace,
    runs: dict[str, dict[int, list[dict[str, float]]]],
    summary: str,
    file_count: int,
) -> None:
    match = re.search(
        r"([\d,]+) TFTP transfers, ([\d,]+) fetch records written, ([\d,]+) not recorded", summary
    )  # counts as fleetkey prints them for people: 1,234
    recorded = match is not None and match.group(1) == match.group(2) and match.group(3) == "0"
    rates = {
        name: {size: [run["transfers_per_s"] for run in sizes[size]] for size in sizes}
        for name, sizes in runs.items()
    }
    medians = {
        name: {size: statistics.median(values) for size, values in sizes.items()}
        for name, sizes in rates.items()
    }
    ratios = {
        size: {
            f"vs_{base}": medians["fleetkey"][size] / medians[base][size]
            for base in ("in.tftpd", "tftpy")
        }
        for size in (512, 1428)
    }
    # each round's own ratios: its servers ran minutes apart at most
    paired = {
        size: {
            f"vs_{base}": [
                mine / theirs
                for mine, theirs in zip(rates["fleetkey"][size], rates[base][size], strict=True)
            ]
            for base in ("in.tftpd", "tftpy")
        }
        for size in (512, 1428)
    }
    if args.json:
        print(
            json.dumps(
                {
                    "rounds": runs,
                    "median_transfers_per_s": medians,
                    "ratios": ratios,
                    "ratios_by_round": paired,
                    "fleetkey": summary,
                    "every_transfer_recorded": recorded,
                },
                indent=2,
            )
        )
        return
    print(
        f"{file_count} license files, {args.in_flight} transfers in flight, {args.rounds} rounds "
        f"of {args.seconds:g} s per server and blksize, servers in turn; servers on core 0, "
        "generator on core 1; every file checked byte for byte"
    )
    for name, sizes in rates.items():
        for size, values in sizes.items():
            lost = sum(run["failed"] for run in runs[name][size])
            rounds = " ".join(f"{value:,.0f}" for value in values)
            print(
                f"  {name:<9} blksize {size:<5} median {medians[name][size]:>9,.0f} transfers/s"
                f"   rounds: {rounds}   ({lost:.0f} lost/failed)"
            )
    for size, pair in ratios.items():
        print(
            f"  blksize {size}: {pair['vs_in.tftpd']:.1f}x in.tftpd (target 12)   "
            f"{pair['vs_tftpy']:.2f}x tftpy (target 2)   (ratios of the medians)"
        )
    for size in (512, 1428):
        print(
            f"  blksize {size}, round by round:"
            + "".join(
                f"   {base} {' '.join(f'{r:.2f}x' for r in paired[size][f'vs_{base}'])}"
                for base in ("in.tftpd", "tftpy")
            )
        )
    print(f"  {summary}  (every transfer recorded: {'yes' if recorded else 'NO'})")


if __name__ == "__main__":
    main()
