"""FTP boots per second: `fleetkey serve --ftp` next to vsftpd and a bare pyftpdlib, same files.

    .venv/bin/python bench/ftp.py [--phones 1000] [--seconds 8] [--rounds 3] [--in-flight 64]
                                  [--servers vsftpd,pyftpdlib,fleetkey] [--before REV]
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
``--before REV`` adds fleetkey from an earlier commit (fleetkey-before), so a change is judged
against its baseline in the same rounds; each fleetkey's CPU per boot (the whole server and
its FTP thread, from /proc) is the figure to compare on a loaded machine, where the rates move
with the load.
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
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

import uvloop

from benchfleet import TICKS, bench_env, cpu_seconds, issue_phone_licenses, open_tree_to_baselines
from fleetkey.serve.ftp.passive import ephemeral_ports
from ftpservers import USER, before_fleet, before_source, start_servers

BOOT_TIMEOUT_S: Final = 20.0  # a boot taking longer counts as failed
SERVERS: Final = ["vsftpd", "pyftpdlib", "fleetkey"]
FTP_THREAD: Final = "fleetkey-ftp"  # the name fleetkey gives its FTP thread (ps -L, top -H)
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
        "--servers",
        default=",".join(SERVERS),
        help=f"which servers to measure, comma-separated, of {', '.join(SERVERS)} and "
        "fleetkey-before (default: the first three; fleetkey-before with --before)",
    )
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also measure fleetkey from commit REV of this repository, or from the checkout "
        "in directory REV (fleetkey-before), in the same rounds: a before/after comparison "
        "of one change in one run",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run fleetkey's FTP thread and the bare pyftpdlib under cProfile, write their "
        "stats to DIR and print where their time went (the rates are then the profiled ones)",
    )
    args = parser.parse_args()
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    if args.before and "fleetkey-before" not in names:
        names.append("fleetkey-before")
    unknown = [name for name in names if name not in (*SERVERS, "fleetkey-before")]
    if unknown or not names:
        parser.error(f"--servers: unknown {', '.join(unknown) or 'nothing named'}")
    if "fleetkey-before" in names and not args.before:
        parser.error("--servers fleetkey-before needs --before REV")
    os.sched_setaffinity(0, {1})  # the generator on core 1; servers get core 0
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-ftp-"))
    base.chmod(0o755)
    env = bench_env(base)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    servers: dict[str, subprocess.Popen[str]] = {}
    retrs = dict.fromkeys(names, 0)
    summaries: dict[str, str] = {}
    try:
        tree = issue_phone_licenses(base, env, args.phones)
        macs = sorted(p.name[:12] for p in tree.glob("0004f2*-license.cfg"))
        files = fill_tree(tree, macs)
        served = dict.fromkeys(names, files)  # what each server must answer, byte for byte
        before = None
        if args.before:  # its own data directory, made by its own code: its own licenses
            before, before_tree = before_fleet(base, before_source(base, args.before), args.phones)
            served["fleetkey-before"] = fill_tree(before_tree, macs)
        open_tree_to_baselines(base)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        ports = start_servers(base, env, tree, servers, names, args.profile, before)
        subnet = 0
        for number in range(args.rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            for name in order:
                subnet = subnet % 250 + 1
                user = "anonymous" if name == "vsftpd" else USER
                load = Load(ports[name], served[name], macs, user, subnet)
                pid = servers[name].pid
                cpu, server_cpu, ftp_cpu = time.process_time(), cpu_seconds(pid), ftp_thread(pid)
                rate = uvloop.run(load.run(args.seconds, args.in_flight))
                busy = (time.process_time() - cpu) / args.seconds  # the generator's own core
                if load.mismatches:
                    raise SystemExit(f"{name}: {load.mismatches} files were not byte-exact")
                retrs[name] += load.retrs
                boots = max(load.boots, 1)
                runs[name].append(
                    {
                        "boots_per_s": rate,
                        "boots": load.boots,
                        "failed": load.failures,
                        "generator_cpu": busy,
                        "time_wait": time_wait(),
                        # the server's CPU per boot: the whole process (vsftpd: its listener
                        # only, sessions are children) and fleetkey's FTP thread
                        "cpu_ms_per_boot": (cpu_seconds(pid) - server_cpu) * 1000 / boots,
                        "ftp_thread_ms_per_boot": (ftp_thread(pid) - ftp_cpu) * 1000 / boots,
                    }
                )
    finally:
        summaries = stop_all(servers)
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, summaries, retrs)
    if args.profile is not None:
        for name in (n for n in ("fleetkey", "fleetkey-before", "pyftpdlib") if n in names):
            print(f"\n{name}: where the time went (cProfile, by own time)")
            stats = pstats.Stats(str(args.profile / f"{name}.prof"))
            stats.sort_stats("tottime").print_stats(25)


def ftp_thread(pid: int) -> float:
    """CPU seconds of fleetkey's FTP thread (named fleetkey-ftp); 0 when there is none."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            if (task / "comm").read_text().strip() == FTP_THREAD:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / TICKS
        except OSError:
            continue
    return 0.0


def stop_all(servers: dict[str, subprocess.Popen[str]]) -> dict[str, str]:
    """SIGTERM every server and wait; each fleetkey's stop summary (its last line), by name."""
    for server in servers.values():
        server.send_signal(signal.SIGTERM)
    summaries: dict[str, str] = {}
    for name, server in servers.items():
        try:
            out, _ = server.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
        if name.startswith("fleetkey") and out:
            summaries[name] = out.strip().splitlines()[-1]
    return summaries


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def time_wait() -> int:
    """Sockets of 127.0.0.1 in TIME_WAIT now (the host's: other programs' too)."""
    listed = subprocess.run(
        ["ss", "-Htan", "state", "time-wait", "src", "127.0.0.1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return len(listed.stdout.splitlines())


def all_recorded(summary: str, retrs: int) -> bool:
    """Whether a fleetkey's stop summary shows every transfer recorded (at least ``retrs``:
    boots cut at a round's end leave RETRs that were sent and recorded too)."""
    match = re.search(
        r"([\d,]+) FTP transfers, ([\d,]+) fetch records written, ([\d,]+) not recorded", summary
    )  # counts as fleetkey prints them for people: 1,234
    return (
        match is not None
        and match.group(1) == match.group(2)
        and int(match.group(1).replace(",", "")) >= retrs
        and match.group(3) == "0"
    )


def report(
    args: argparse.Namespace,
    runs: dict[str, list[dict[str, float]]],
    summaries: dict[str, str],
    retrs: dict[str, int],
) -> None:
    recorded = {name: all_recorded(summaries.get(name, ""), retrs[name]) for name in summaries}
    rates = {name: [run["boots_per_s"] for run in values] for name, values in runs.items()}
    medians = {name: statistics.median(values) for name, values in rates.items()}
    cpu = {
        name: {
            key: statistics.median(run[key] for run in values)
            for key in ("cpu_ms_per_boot", "ftp_thread_ms_per_boot")
        }
        for name, values in runs.items()
    }
    ratios = {
        f"{name}_vs_{other}": medians[name] / medians[other]
        for name in ("fleetkey", "fleetkey-before")
        for other in ("vsftpd", "pyftpdlib", "fleetkey-before")
        if name in medians and other in medians and name != other and medians[other]
    }
    load = os.getloadavg()
    if args.json:
        print(json.dumps({"rounds": runs, "median_boots_per_s": medians, "ratios": ratios,
                          "median_cpu_per_boot": cpu, "fleetkey": summaries,
                          "every_transfer_recorded": recorded, "load_average": load,
                          "uptime": uptime()}, indent=2))  # fmt: skip
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
            f"  {name:<15} median {medians[name]:>7,.0f} boots/s ({medians[name] * 12:,.0f} "
            f"RETR/s)   rounds: {rounds}   ({lost:.0f} failed; generator busy "
            f"{generator:.0%} of its core at most; up to {waiting:,} sockets of 127.0.0.1 in "
            "TIME_WAIT after its rounds)"
        )
        if name.startswith("fleetkey"):
            thread, whole = cpu[name]["ftp_thread_ms_per_boot"], cpu[name]["cpu_ms_per_boot"]
            print(
                f"  {'':<15} CPU per boot (median of rounds): {whole:.2f} ms the whole server, "
                + (f"{thread:.2f} ms its FTP thread" if thread else "FTP thread not named")
            )
    for key, value in ratios.items():
        target = {"vsftpd": " (target 2)", "pyftpdlib": " (target 0.8)"}
        other = key.split("_vs_")[1]
        print(f"  {key.replace('_vs_', ' vs ')}: {value:.2f}x{target.get(other, '')}")
    for name, summary in summaries.items():
        print(f"  {name}: {summary}  (every transfer recorded: "
              f"{'yes' if recorded[name] else 'NO'})")  # fmt: skip


if __name__ == "__main__":
    main()
