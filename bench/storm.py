"""Boot storm: N phone boots against one `fleetkey serve --workers W`, next to one worker and to
nginx with `worker_processes W`, same tree, same run.

    .venv/bin/python bench/storm.py [--boots 20000] [--phones 20000] [--workers 2]
                                    [--concurrency 256] [--rounds 3] [--tmp DIR]
                                    [--before TREE ...] [--json]

Needs gcc and nginx (with the DAV module, as Debian builds it). The fleet, the boot and the
generator are bench/boot.py's (domain.md §5.1: eleven requests a boot, two log PUTs, about
54 % 404s, a quarter of the phones tagging `(SN:…)`, every phone from its own 127.x address,
one keep-alive connection per boot), built with the CLI; each phone PUTs its logs once to
every server first, so the storm's PUTs replace files. A storm is ``--boots`` boots, 256 at
once, as fast as the server answers them: boots/s and p99 latency over the whole storm.

Nothing is pinned: the servers and the generator share both cores, as they would on a
2-core box under a real storm, so each process's CPU is reported apart (the servers' from
/proc, their workers included; the generator's from its own getrusage) with the machine's
load average before each storm. Each round storms the three servers in turn (the order turned
every round); figures are medians over the rounds. At the end both fleetkey servers are
stopped with SIGTERM and the fetch records in their database are compared with every answer
the generator received from them.

`--before TREE` (repeatable): one more server, `fleetkey serve --workers W` from another source
tree (a git worktree of the code before a change: `git worktree add /tmp/before <commit>`),
stormed in the same turns as the others. Its fleet is built by its own code in a data
directory of its own (the same sites, phones and licenses: an older tree may not read a newer
schema), and its records are counted there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchfleet import (
    bench_env,
    cpu_by_process,
    need,
    start_fleetkey,
    stop_servers,
    worker_shares,
)
from boot import build_fleet, prepare, wait_listening


def storm(
    bootload: Path, sequence: Path, port: int, server: int, boots: int, first: int,
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    load = os.getloadavg()[0]
    used = cpu_by_process(server)
    began = time.monotonic()
    result = subprocess.run(
        [
            str(bootload), "--port", str(port), "--sequence", str(sequence),
            "--phones", str(args.phones), "--concurrency", str(args.concurrency),
            "--tagged", "0.25", "--mode", "keepalive", "--warmup", "0", "--seconds", "3600",
            "--boots", str(boots), "--first", str(first),
        ],
        capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    wall = time.monotonic() - began
    run: dict[str, Any] = json.loads(result.stdout)
    run["load_before"] = load
    now = cpu_by_process(server)
    spent = sum(now.values()) - sum(used.values())
    run["server_cpu_pct"] = 100.0 * spent / wall
    run["server_cpu_us_per_boot"] = 1e6 * spent / boots
    run["worker_cpu_pct"] = worker_shares(used, now, wall)  # the kernel's spread, per worker
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=20_000)
    parser.add_argument("--phones", type=int, default=20_000)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=256, help="phones booting at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", help="directory for the run's files (/dev/shm: no disk)")
    parser.add_argument(
        "--before", type=Path, action="append", default=[], metavar="TREE",
        help="a source tree of the code before a change (repeatable)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for tree in args.before:
        if not (tree / "src" / "fleetkey").is_dir():
            parser.error(f"--before {tree}: no src/fleetkey there (a fleetkey source tree)")
    befores = {f"{tree.resolve().name}-{args.workers}": tree.resolve() for tree in args.before}
    if len(befores) < len(args.before):
        parser.error("--before: give trees of different names (each names its server)")
    names = ("nginx", f"fleetkey-{args.workers}", "fleetkey-1", *befores)
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-storm-", dir=args.tmp))
    base.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the files
    env = bench_env(base)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    answered = dict.fromkeys(names, 0)
    summaries: list[str] = []
    try:
        ready = prepare(base, env, args.phones, args.sites, nginx_workers=args.workers)
        bootload, sequence, seed = ready.bootload, ready.sequence, ready.seed
        nginx_program = need("nginx")
        # fleetkey first: one that does not start leaves no nginx behind
        many, many_url = start_fleetkey(env, base, args.workers)
        one, one_url = start_fleetkey(env, base, 1)
        others = {name: start_before(base, number, tree, args)
                  for number, (name, tree) in enumerate(befores.items())}  # fmt: skip
        nginx = subprocess.Popen([nginx_program, "-c", str(ready.nginx_conf)], text=True)
        servers = {names[0]: (nginx, ready.nginx_port),
                   names[1]: (many, int(many_url.rsplit(":", 1)[1])),
                   names[2]: (one, int(one_url.rsplit(":", 1)[1])),
                   **{name: (process, int(url.rsplit(":", 1)[1]))
                      for name, (process, url) in others.items()}}  # fmt: skip
        try:
            for name, (process, port) in servers.items():
                wait_listening(port, process, name)
            time.sleep(1)
            for name, (process, port) in servers.items():  # phones that booted before
                done = storm(bootload, seed, port, process.pid, args.phones, 0, args)
                answered[name] += done["answers_total"]
            first = dict.fromkeys(names, 0)
            for number in range(args.rounds):
                turn = number % len(names)
                order = names[turn:] + names[:turn]
                for name in order:
                    process, port = servers[name]
                    run = storm(bootload, sequence, port, process.pid, args.boots, first[name],
                                args)  # fmt: skip
                    first[name] = run["next_phone"]
                    runs[name].append(run)
                    answered[name] += run["answers_total"]
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(30)
            for fleetkey in (many, one, *(process for process, _ in others.values())):
                summaries.append(stop_servers([fleetkey]))
        recorded = {names[1]: count_records(base / "data")}
        for number, name in enumerate(befores):
            recorded[name] = count_records(base / f"before-{number}" / "data")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    mine = answered[names[1]] + answered[names[2]]  # one database for both
    report(args, runs, summaries, recorded, {names[1]: mine} | {n: answered[n] for n in befores})


def start_before(
    base: Path, number: int, tree: Path, args: argparse.Namespace
) -> tuple[subprocess.Popen[str], str]:
    """The fleet built by ``tree``'s own CLI in ``base/before-N`` (the same fleet: its phones
    and sites are numbered alike), and that tree's server on it."""
    own = base / f"before-{number}"
    own.mkdir()
    env = {**bench_env(own), "PYTHONPATH": str(tree / "src")}
    build_fleet(own, env, args.phones, args.sites)
    return start_fleetkey(env, own, args.workers)


def count_records(data: Path) -> int:
    with sqlite3.connect(data / "fleetkey.db") as db:
        count: int = db.execute("SELECT count(*) FROM fetches").fetchone()[0]
    return count


def report(
    args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], summaries: list[str],
    recorded: dict[str, int], answered: dict[str, int],
) -> None:  # fmt: skip
    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    names = list(runs)
    rates = {name: median(name, "boots_per_s") for name in names}
    many, one, nginx = rates[names[1]], rates[names[2]], rates[names[0]]
    figures = {
        "boots_per_s": rates,
        "p99_ms": {name: median(name, "p99_ms") for name in names},
        "server_cpu_pct": {name: median(name, "server_cpu_pct") for name in names},
        "server_cpu_us_per_boot": {name: median(name, "server_cpu_us_per_boot") for name in names},
        "generator_cpu_pct": {name: median(name, "cpu_pct") for name in names},
        "errors": {name: sum(run["errors_total"] for run in runs[name]) for name in names},
        "load_before": {name: [run["load_before"] for run in runs[name]] for name in names},
        "ratio_to_one_worker": many / one,
        "ratio_to_nginx": many / nginx,
        **{f"ratio_to_{name}": many / rates[name] for name in names[3:]},
        "records": recorded,
        "answers": answered,
        "fleetkey": summaries,
    }
    if args.json:
        print(json.dumps({**figures, "rounds": runs}, indent=2))
        return
    print(
        f"{args.boots} boots a storm ({args.concurrency} at once, keep-alive, 11 requests a "
        f"boot), {args.rounds} rounds, servers in turn, nothing pinned (2 cores shared)"
    )
    for name in names:
        rounds = " ".join(f"{run['boots_per_s']:,.0f}" for run in runs[name])
        loads = " ".join(f"{load:.1f}" for load in figures["load_before"][name])
        by_worker = zip(*(run["worker_cpu_pct"] for run in runs[name]), strict=False)
        shares = " / ".join(f"{statistics.median(each):.0f}" for each in by_worker)
        print(
            f"  {name:<11} {rates[name]:>8,.0f} boots/s  p99 {figures['p99_ms'][name]:7.2f} ms  "
            f"server CPU {figures['server_cpu_pct'][name]:5.0f} %"
            f" ({figures['server_cpu_us_per_boot'][name]:,.0f} µs a boot)"
            + (f" (workers {shares} %)" if shares else "")
            + "  generator CPU "
            f"{figures['generator_cpu_pct'][name]:4.0f} %  errors {figures['errors'][name]}  "
            f"rounds: {rounds}  load before: {loads}"
        )
    print(
        f"  {names[1]} / {names[2]}: {many / one:.2f}x (target 1.5)   "
        f"{names[1]} / nginx: {many / nginx:.2f}x (target 0.8)"
    )
    for name in names[3:]:
        print(f"  {names[1]} / {name}: {many / rates[name]:.2f}x")
    for name, count in recorded.items():
        print(f"  fetch records {count:,} for {answered[name]:,} answers from {name}"
              + (f" and {names[2]}" if name == names[1] else ""))  # fmt: skip
    for line in summaries:
        print(f"  {line}")


if __name__ == "__main__":
    main()
