"""TFTP throughput: `fleetkey serve --tftp` next to in.tftpd (tftpd-hpa) and tftpy, same files.

    .venv/bin/python bench/tftp.py [--files 1000] [--seconds 8] [--in-flight 64] [--json]

Needs in.tftpd (`apt-get install -y tftpd-hpa`) and tftpy (`pip install tftpy`). Each server
runs pinned to core 0, the load generator to core 1. The generator is asyncio on uvloop with
one non-blocking UDP socket per transfer (64 in flight, each slot on its own loopback
address like a phone on the network): it sends an RRQ for a random
license file, answers OACK and DATA with ACKs, and checks every file byte for byte against the
original. Plain RFC 1350 transfers (blksize 512, no options) and blksize 1428 (with OACK).
fleetkey records every transfer as a fetch record; the run checks that the count matches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from benchfleet import FLEETKEY, bench_env, issue_phone_licenses

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
        self.close()
        sock = self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((self.source, 0))
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
        self, address: tuple[str, int], files: dict[str, bytes], blksize: int, in_flight: int
    ) -> None:
        self.address, self.files, self.blksize = address, files, blksize
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
            Slot(self, f"127.0.{1 + i // 250}.{1 + i % 250}") for i in range(self.in_flight)
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
    port: int, files: dict[str, bytes], blksize: int, seconds: float, in_flight: int
) -> dict[str, float]:
    load = Load(("127.0.0.1", port), files, blksize, in_flight)
    rate = uvloop.run(load.run(seconds))
    if load.mismatches:
        raise SystemExit(f"port {port}: {load.mismatches} transfers were not byte-exact")
    return {"transfers_per_s": rate, "completed": load.completed, "failed": load.failures}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the generator on core 1; servers get core 0
    in_tftpd = need("in.tftpd", "tftpd-hpa")
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-tftp-"))
    base.chmod(0o755)
    env = bench_env(base)
    fleetkey = FLEETKEY
    results: dict[str, dict[int, dict[str, float]]] = {}
    summary = ""
    try:
        tree = issue_phone_licenses(base, env, args.files)
        files = {p.name: p.read_bytes() for p in tree.glob("*-license.cfg")}
        for path in tree.iterdir():
            path.chmod(0o644)
        tree.chmod(0o755)
        (base / "data").chmod(0o755)

        def run_all(name: str) -> None:
            results[name] = {
                size: measure(port, files, size, args.seconds, args.in_flight)
                for size in (512, 1428)
            }

        port = free_port()
        tftpd = subprocess.Popen(
            ["taskset", "-c", "0", in_tftpd, "-L", "-a", f"127.0.0.1:{port}", "-s", str(tree),
             "-B", "1468"],
        )  # fmt: skip
        time.sleep(0.5)
        try:
            run_all("in.tftpd")
        finally:
            tftpd.terminate()
            tftpd.wait(10)

        port = free_port()
        script = base / "tftpy_server.py"
        script.write_text(TFTPY_SERVER)
        tftpy = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, str(script), str(tree), str(port)]
        )
        time.sleep(1.0)
        try:
            run_all("tftpy")
        finally:
            tftpy.terminate()
            tftpy.wait(10)

        server = subprocess.Popen(
            ["taskset", "-c", "0", *fleetkey, "serve", "--http", "off", "--tftp", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[2].rsplit(":", 1)[1])
        try:
            run_all("fleetkey")
        finally:
            server.send_signal(signal.SIGTERM)
            summary = server.communicate(timeout=120)[0].strip()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    match = re.search(
        r"(\d+) TFTP transfers, (\d+) fetch records written, (\d+) not recorded", summary
    )
    recorded = match is not None and match.group(1) == match.group(2) and match.group(3) == "0"
    ratios = {
        size: {
            "vs_in.tftpd": results["fleetkey"][size]["transfers_per_s"]
            / results["in.tftpd"][size]["transfers_per_s"],
            "vs_tftpy": results["fleetkey"][size]["transfers_per_s"]
            / results["tftpy"][size]["transfers_per_s"],
        }
        for size in (512, 1428)
    }
    if args.json:
        print(
            json.dumps(
                {
                    "results": results,
                    "ratios": ratios,
                    "fleetkey": summary,
                    "every_transfer_recorded": recorded,
                },
                indent=2,
            )
        )
        return
    print(
        f"{len(files)} license files, {args.in_flight} transfers in flight, {args.seconds:g} s per "
        "run; servers on core 0, generator on core 1; every file checked byte for byte"
    )
    for name, sizes in results.items():
        for size, figures in sizes.items():
            print(
                f"  {name:<9} blksize {size:<5} {figures['transfers_per_s']:>9,.0f} transfers/s"
                f"   ({figures['failed']:.0f} lost/failed)"
            )
    for size, pair in ratios.items():
        print(
            f"  blksize {size}: {pair['vs_in.tftpd']:.1f}x in.tftpd (target 12)   "
            f"{pair['vs_tftpy']:.1f}x tftpy (target 2)"
        )
    print(f"  {summary}  (every transfer recorded: {'yes' if recorded else 'NO'})")


if __name__ == "__main__":
    main()
