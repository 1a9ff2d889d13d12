"""Boot storm: N phone boots against one `fleetkey serve --workers W`, next to one worker and to
nginx with `worker_processes W`, same tree, same run.

    .venv/bin/python bench/storm.py [--boots 20000] [--phones 20000] [--workers 2]
                                    [--concurrency 256] [--rounds 3] [--tmp DIR] [--json]

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
from boot import prepare, wait_listening


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
    run["server_cpu_pct"] = 100.0 * (sum(now.values()) - sum(used.values())) / wall
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = ("nginx", f"fleetkey-{args.workers}", "fleetkey-1")
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-storm-", dir=args.tmp))
    base.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the files
    env = bench_env(base)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    answered = 0
    summaries: list[str] = []
    try:
        ready = prepare(base, env, args.phones, args.sites, nginx_workers=args.workers)
        bootload, sequence, seed = ready.bootload, ready.sequence, ready.seed
        nginx_program = need("nginx")
        # fleetkey first: one that does not start leaves no nginx behind
        many, many_url = start_fleetkey(env, base, args.workers)
        one, one_url = start_fleetkey(env, base, 1)
        nginx = subprocess.Popen([nginx_program, "-c", str(ready.nginx_conf)], text=True)
        servers = {names[0]: (nginx, ready.nginx_port),
                   names[1]: (many, int(many_url.rsplit(":", 1)[1])),
                   names[2]: (one, int(one_url.rsplit(":", 1)[1]))}  # fmt: skip
        try:
            for name, (process, port) in servers.items():
                wait_listening(port, process, name)
            time.sleep(1)
            for name, (process, port) in servers.items():  # phones that booted before
                done = storm(bootload, seed, port, process.pid, args.phones, 0, args)
                answered += done["answers_total"] if name != "nginx" else 0
            first = dict.fromkeys(names, 0)
            for number in range(args.rounds):
                order = names[number % 3 :] + names[: number % 3]
                for name in order:
                    process, port = servers[name]
                    run = storm(bootload, sequence, port, process.pid, args.boots, first[name],
                                args)  # fmt: skip
                    first[name] = run["next_phone"]
                    runs[name].append(run)
                    answered += run["answers_total"] if name != "nginx" else 0
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(30)
            for fleetkey in (many, one):
                summaries.append(stop_servers([fleetkey]))
        with sqlite3.connect(base / "data" / "fleetkey.db") as db:
            recorded = db.execute("SELECT count(*) FROM fetches").fetchone()[0]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, summaries, recorded, answered)


def report(
    args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], summaries: list[str],
    recorded: int, answered: int,
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
        "generator_cpu_pct": {name: median(name, "cpu_pct") for name in names},
        "errors": {name: sum(run["errors_total"] for run in runs[name]) for name in names},
        "load_before": {name: [run["load_before"] for run in runs[name]] for name in names},
        "ratio_to_one_worker": many / one,
        "ratio_to_nginx": many / nginx,
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
            + (f" (workers {shares} %)" if shares else "")
            + "  generator CPU "
            f"{figures['generator_cpu_pct'][name]:4.0f} %  errors {figures['errors'][name]}  "
            f"rounds: {rounds}  load before: {loads}"
        )
    print(
        f"  {names[1]} / {names[2]}: {many / one:.2f}x (target 1.5)   "
        f"{names[1]} / nginx: {many / nginx:.2f}x (target 0.8)"
    )
    print(f"  fetch records {recorded:,} for {answered:,} answers from fleetkey")
    for line in summaries:
        print(f"  {line}")


if __name__ == "__main__":
    main()
