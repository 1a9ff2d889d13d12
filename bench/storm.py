"""Boot storm: N phone boots against one `fleetkey serve --workers W`, next to one worker and to
nginx with `worker_processes W`, same tree, same run.

    .venv/bin/python bench/storm.py [--boots 20000] [--phones 20000] [--first-boots N]
                                    [--history-boots 2] [--workers 2] [--concurrency 256]
                                    [--rounds 3] [--tmp DIR] [--before TREE ...] [--json]

Needs gcc and nginx (with the DAV module, as Debian builds it). The fleet, the boot and the
generator are bench/boot.py's (domain.md §5.1: eleven requests a boot, two log PUTs, about
54 % 404s, a quarter of the phones tagging `(SN:…)`, every phone from its own 127.x address,
one keep-alive connection per boot), built with the CLI. A storm is ``--boots`` boots, 256
at once, as fast as the server answers them: boots/s and p99 latency over the whole storm.

Two storms a round, each reported apart:

- **history** (the license-lapse reboot storm a real fleet has): the ``--phones`` phones
  each boot ``--history-boots`` times (default 2) against every server before the rounds
  (the whole boot: their log files, per-phone paths, phone state and sightings are then in
  each server's store and memory, as for phones that booted yesterday), so the measured PUTs
  replace files and the records name paths the store knows. Twice, because a phone in
  service has booted more than once, and a log replaced before leaves a file behind in
  fleetkey (its spare, serve/spares.py) that the next replace is written into: one boot of
  history measures phones that booted exactly once before (``--history-boots 1``).
- **first boots**: ``--first-boots`` boots (default ``--boots``; 0 leaves it out) of phones
  in the inventory that never booted against that server (a pool of ``rounds`` x that many
  beyond the ``--phones``): every per-phone path is a new text, every phone a new state row,
  every PUT creates its file.

Nothing is pinned: the servers and the generator share both cores, as they would on a
2-core box under a real storm, so each process's CPU is reported apart (the servers' from
/proc, their workers included; the generator's from its own getrusage) with the machine's
load average before each storm. Each round storms the three servers in turn (the order turned
every round); figures are medians over the rounds. At the end both fleetkey servers are
stopped with SIGTERM and the fetch records in their database are compared with every answer
the generator received from them. Each fleetkey server has a data directory of its own (the
same fleet built by the CLI in each), so one server's storms never give another history.

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
from typing import Any, Final

from benchfleet import (
    bench_env,
    cpu_by_process,
    files_on,
    need,
    start_fleetkey,
    stop_servers,
    worker_shares,
)
from boot import build_fleet, prepare, wait_listening

HISTORY: Final = "history"
FIRST_BOOTS: Final = "first boots"


def storm(
    bootload: Path, sequence: Path, port: int, server: int, boots: int, first: int,
    args: argparse.Namespace, phones: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``boots`` boots of phones ``first``… (round-robin over the first ``phones``, by default
    ``--phones``) against the server on ``port``, with the server's CPU over the storm."""
    load = os.getloadavg()[0]
    used = cpu_by_process(server)
    began = time.monotonic()
    result = subprocess.run(
        [
            str(bootload), "--port", str(port), "--sequence", str(sequence),
            "--phones", str(phones or args.phones), "--concurrency", str(args.concurrency),
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
    parser.add_argument("--phones", type=int, default=20_000, help="phones that booted before")
    parser.add_argument(
        "--first-boots", type=int, metavar="N",
        help="boots a round of phones that never booted (default --boots; 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--history-boots", type=int, default=2, metavar="K",
        help="boots of each phone before the rounds (default 2)",
    )  # fmt: skip
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
    if args.first_boots is None:
        args.first_boots = args.boots
    for option in ("boots", "phones", "rounds", "history_boots"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.first_boots < 0:
        parser.error("--first-boots must be 0 or more")
    if args.phones < args.concurrency:
        parser.error("--phones must be at least --concurrency (each booting phone is one)")
    for tree in args.before:
        if not (tree / "src" / "fleetkey").is_dir():
            parser.error(f"--before {tree}: no src/fleetkey there (a fleetkey source tree)")
    befores = {f"{tree.resolve().name}-{args.workers}": tree.resolve() for tree in args.before}
    if len(befores) < len(args.before):
        parser.error("--before: give trees of different names (each names its server)")
    if args.workers < 2:
        parser.error("--workers must be at least 2 (the storm compares them with one worker)")
    names = ("nginx", f"fleetkey-{args.workers}", "fleetkey-1", *befores)
    if len(set(names)) < len(names):
        parser.error("--before: a tree's name takes a server's own (nginx, fleetkey): rename it")
    kinds = (HISTORY, FIRST_BOOTS) if args.first_boots else (HISTORY,)
    inventory = args.phones + args.rounds * args.first_boots  # history, then a fresh pool
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-storm-", dir=args.tmp))
    base.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the files
    disk, said = files_on(base, args.tmp)
    env = bench_env(base)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        kind: {name: [] for name in names} for kind in kinds
    }
    answered = dict.fromkeys(names, 0)
    summaries: list[str] = []
    try:
        ready = prepare(base, env, inventory, args.sites, nginx_workers=args.workers)
        bootload, sequence = ready.bootload, ready.sequence
        nginx_program = need("nginx")
        trees = {names[1]: None, names[2]: None, **befores}  # None: this tree
        # fleetkey first: one that does not start leaves no nginx behind
        started = {name: start_own(base, number, tree, args, inventory,
                                   1 if name == names[2] else args.workers)
                   for number, (name, tree) in enumerate(trees.items())}  # fmt: skip
        nginx = subprocess.Popen([nginx_program, "-c", str(ready.nginx_conf)], text=True)
        servers = {names[0]: (nginx, ready.nginx_port),
                   **{name: (process, int(url.rsplit(":", 1)[1]))
                      for name, (process, url) in started.items()}}  # fmt: skip
        try:
            for name, (process, port) in servers.items():
                wait_listening(port, process, name)
            time.sleep(1)
            for _ in range(args.history_boots):  # phones that booted before
                for name, (process, port) in servers.items():
                    done = storm(bootload, sequence, port, process.pid, args.phones, 0, args)
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
                    runs[HISTORY][name].append(run)
                    answered[name] += run["answers_total"]
                    if args.first_boots:  # phones never seen: the pool's next ones
                        fresh = args.phones + number * args.first_boots
                        run = storm(bootload, sequence, port, process.pid, args.first_boots,
                                    fresh, args, inventory)  # fmt: skip
                        runs[FIRST_BOOTS][name].append(run)
                        answered[name] += run["answers_total"]
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(30)
            for fleetkey, _ in started.values():
                summaries.append(stop_servers([fleetkey]))
        recorded = {
            name: count_records(fleet_dir(base, number) / "data")
            for number, name in enumerate(trees)
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, summaries, recorded, {name: answered[name] for name in trees}, (disk, said))


def start_own(
    base: Path, number: int, tree: Path | None, args: argparse.Namespace, phones: int,
    workers: int,
) -> tuple[subprocess.Popen[str], str]:  # fmt: skip
    """The fleet built by ``tree``'s own CLI (None: this one) in ``base/fleetkey-N`` (the same
    fleet: its phones and sites are numbered alike; an older tree may not read a newer
    schema), and that tree's server on it with ``workers`` workers."""
    own = fleet_dir(base, number)
    env = bench_env(own)
    if number:  # the first is the fleet prepare() built (nginx serves its tree)
        own.mkdir()
        if tree is not None:
            env["PYTHONPATH"] = str(tree / "src")
        build_fleet(own, env, phones, args.sites)
    return start_fleetkey(env, own, workers)


def fleet_dir(base: Path, number: int) -> Path:
    return base if number == 0 else base / f"fleetkey-{number}"


def count_records(data: Path) -> int:
    with sqlite3.connect(data / "fleetkey.db") as db:
        count: int = db.execute("SELECT count(*) FROM fetches").fetchone()[0]
    return count


def report(
    args: argparse.Namespace, runs: dict[str, dict[str, list[dict[str, Any]]]],
    summaries: list[str], recorded: dict[str, int], answered: dict[str, int],
    disk: tuple[dict[str, str | bool | None], list[str]],
) -> None:  # fmt: skip
    every = {kind: figures_of(by_name) for kind, by_name in runs.items()}
    if args.json:
        print(json.dumps({"storms": every, "history_boots": args.history_boots,
                          "filesystem": disk[0],
                          "records": recorded, "answers": answered,
                          "fleetkey": summaries, "rounds": runs}, indent=2))  # fmt: skip
        return
    print(
        f"{args.boots} boots a storm ({args.concurrency} at once, keep-alive, 11 requests a "
        f"boot), {args.rounds} rounds, servers in turn, nothing pinned (2 cores shared)"
    )
    for line in disk[1]:
        print(line)
    said = {
        HISTORY: f"phones that booted before (each of the {args.phones:,} booted "
        f"{_times(args.history_boots)} against every server first: paths, phone state and log "
        "files stored)",
        FIRST_BOOTS: f"phones never seen ({args.first_boots:,} boots a storm: new per-phone "
        "paths, new state rows, logs created)",
    }
    for kind, figures in every.items():
        print(f" {kind}: {said[kind]}")
        print_figures(figures, runs[kind])
    for name, count in recorded.items():
        print(f"  fetch records {count:,} for {answered[name]:,} answers from {name}")
    for line in summaries:
        print(f"  {line}")


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def figures_of(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One storm kind's medians over the rounds, and the ratios of the first fleetkey server
    (``--workers``) to the others."""

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    names = list(runs)
    rates = {name: median(name, "boots_per_s") for name in names}
    many, one, nginx = rates[names[1]], rates[names[2]], rates[names[0]]
    return {
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
    }


def print_figures(figures: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> None:
    names = list(runs)
    rates = figures["boots_per_s"]
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
        f"  {names[1]} / {names[2]}: {figures['ratio_to_one_worker']:.2f}x (target 1.5)   "
        f"{names[1]} / nginx: {figures['ratio_to_nginx']:.2f}x (target 0.8)"
    )
    for name in names[3:]:
        print(f"  {names[1]} / {name}: {figures[f'ratio_to_{name}']:.2f}x")


if __name__ == "__main__":
    main()
