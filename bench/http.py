"""HTTP throughput: `fleetkey serve` (every fetch recorded) next to nginx, same files, same run.

    .venv/bin/python bench/http.py [--files 10000] [--seconds 10] [--rounds 3] [--connections 64]
                                   [--workers 1] [--before TREE] [--tmp DIR] [--json]

Needs wrk and nginx (Debian packages; `apt-get install -y wrk nginx`). Each server runs pinned to
core 0, wrk to core 1; wrk requests 10,000 distinct <mac>-license.cfg files from a Lua script,
with keep-alive and with `Connection: close`. nginx: 1 worker, access log on, the files from
disk (the provisioning tree fleetkey writes). Both servers run from the start; each round
measures them in turn (the order turned every round), and the figures are medians over the
rounds. Prints requests/s, p99 latency and the ratios.

`--workers N` (N > 1): `fleetkey serve --workers N` next to nginx with `worker_processes N` and
to a one-worker `fleetkey serve` (the baseline `--workers` must beat by 1.5x), nothing pinned:
servers and wrk (N threads) share the cores, so each one's CPU is reported apart (a server's
workers included, from /proc, and each worker's apart; wrk's from its rusage). wrk's
connections all come from 127.0.0.1, and `serve --workers` gives every connection of one
address to one worker (serve/steering.py: a phone's requests meet the worker that remembers
it): so both fleetkey servers take 127.0.0.1 as a `--trusted-proxy`, whose connections the
kernel spreads by their ports, as it would a load balancer's. Without it one worker answered
everything and the other none (docs/serve.md, "Workers").

`--tmp DIR` puts the run's files (database, tree) there: `/dev/shm` takes the disk out.

`--before TREE`: one more server, `fleetkey serve` from another source tree (a git worktree of
the code before a change: `git worktree add /tmp/before <commit>`), run from the start with the
others and measured in the same turns, so a change's cost is measured against the same
machine's same minutes. Its data directory is the same (the same files, the same schema).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

from benchfleet import (
    bench_env,
    cpu_by_process,
    issue_phone_licenses,
    need,
    open_tree_to_baselines,
    pinned,
    start_fleetkey,
    stop_servers,
    worker_shares,
    wrk,
    wrk_options,
    wrk_script,
)

NGINX = """
worker_processes %(workers)d;
daemon off;
pid %(base)s/nginx.pid;
error_log %(base)s/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log %(base)s/access.log;
  sendfile on;
  server { listen 127.0.0.1:%(port)d; root %(root)s; }
}
"""


MODES: Final = ("keep-alive", "close")


# requests/s, p99 ms, server CPU %, wrk CPU %, each worker's CPU % (fleetkey --workers N)
Run = tuple[float, float, float, float, list[float]]


def measured(url: str, script: Path, args: argparse.Namespace, server: int) -> Run:
    """wrk against ``url``: requests/s, p99 ms, the server's and wrk's CPU (% of a core),
    and each of the server's workers' CPU."""
    used, own = cpu_by_process(server), resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    rps, p99 = wrk(url, script, args.seconds, args.connections, args.workers)
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
    now = cpu_by_process(server)
    server_cpu = 100 * (sum(now.values()) - sum(used.values())) / wall
    return rps, p99, server_cpu, 100 * spent / wall, worker_shares(used, now, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    wrk_options(parser, workers=1)
    parser.add_argument("--before", type=Path, help="a source tree of the code before a change")
    parser.add_argument("--tmp", help="directory for the run's files (/dev/shm: no disk)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.before is not None and not (args.before / "src" / "fleetkey").is_dir():
        parser.error(f"--before {args.before}: no src/fleetkey there (a fleetkey source tree)")
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-http-", dir=args.tmp))
    base.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the files
    env = bench_env(base)
    names = ("nginx", "fleetkey", "fleetkey-1") if args.workers > 1 else ("nginx", "fleetkey")
    if args.before is not None:
        names = (*names, "before")
    runs: dict[str, dict[str, list[Run]]] = {name: {mode: [] for mode in MODES} for name in names}
    summaries: list[str] = []
    try:
        tree = issue_phone_licenses(base, env, args.files)
        open_tree_to_baselines(base)
        scripts = {mode: wrk_script(base, args.files, mode) for mode in MODES}
        nginx_conf = base / "nginx.conf"
        nginx_conf.write_text(
            NGINX % {"base": base, "port": 18180, "root": tree, "workers": args.workers}
        )
        nginx = subprocess.Popen([*pinned(0, args.workers), need("nginx"), "-c", str(nginx_conf)])
        servers = {"nginx": nginx}
        urls = {"nginx": "http://127.0.0.1:18180/"}
        # wrk is one address standing for many phones: spread by the kernel (docstring)
        spread = ["--trusted-proxy", "127.0.0.1/32"] if args.workers > 1 else []
        try:
            for name in names[1:]:
                workers = 1 if name == "fleetkey-1" else args.workers
                own = env
                if name == "before":  # the other tree's code, on the same data
                    own = {**env, "PYTHONPATH": str(args.before.resolve() / "src")}
                servers[name], url = start_fleetkey(
                    own, base, workers, pinned(0, args.workers), spread
                )
                urls[name] = url + "/"
            time.sleep(1)
            # rounds, the servers in turn and the order turned every round: this VM's speed
            # drifts between runs, and this way the drift falls on all alike
            for number in range(args.rounds):
                turn = number % len(names)
                for name in names[turn:] + names[:turn]:
                    for mode, script in scripts.items():
                        runs[name][mode].append(
                            measured(urls[name], script, args, servers[name].pid)
                        )
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(30)
            for name in names[1:]:
                if name not in servers:
                    continue  # it did not start
                summaries.append(stop_servers([servers[name]]))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, summaries)


def report(
    args: argparse.Namespace, runs: dict[str, dict[str, list[Run]]], summaries: list[str]
) -> None:
    medians = {
        name: {mode: statistics.median(run[0] for run in values) for mode, values in modes.items()}
        for name, modes in runs.items()
    }
    ratios = {mode: medians["fleetkey"][mode] / medians["nginx"][mode] for mode in MODES}
    if "before" in medians:
        for mode in MODES:
            ratios[f"{mode} to before"] = medians["fleetkey"][mode] / medians["before"][mode]
    if "fleetkey-1" in medians:
        for mode in MODES:
            ratios[f"{mode} to one worker"] = (
                medians["fleetkey"][mode] / medians["fleetkey-1"][mode]
            )
    # each round's own ratios: its servers ran minutes apart at most
    paired = {
        mode: [
            mine[0] / theirs[0]
            for mine, theirs in zip(runs["fleetkey"][mode], runs["nginx"][mode], strict=True)
        ]
        for mode in MODES
    }
    if args.json:
        print(
            json.dumps(
                {
                    "rounds": runs,
                    "median_rps": medians,
                    "ratios": ratios,
                    "ratios_by_round": paired,
                    "fleetkey": summaries,
                    "load": os.getloadavg(),
                },
                indent=2,
            )
        )
        return
    where = (
        "servers on core 0, wrk on core 1"
        if args.workers == 1
        else f"{args.workers} workers each, wrk -t{args.workers}, nothing pinned"
    )
    print(
        f"{args.files} distinct license files, {args.connections} connections, {args.rounds} "
        f"rounds of {args.seconds} s per server and mode, servers in turn; {where}"
    )
    for name, modes in runs.items():
        for mode, values in modes.items():
            rounds = " ".join(f"{run[0]:,.0f}" for run in values)
            p99 = statistics.median(run[1] for run in values)
            cpu = statistics.median(run[2] for run in values)
            wrk_cpu = statistics.median(run[3] for run in values)
            by_worker = zip(*(run[4] for run in values), strict=False)
            shares = [statistics.median(each) for each in by_worker]
            apart = f"   workers {' / '.join(f'{v:.0f}' for v in shares)} %" if shares else ""
            print(
                f"  {name:<10} {mode:<11} median {medians[name][mode]:>10,.0f} req/s   "
                f"p99 {p99:7.2f} ms   server CPU {cpu:4.0f} %{apart}   wrk CPU {wrk_cpu:4.0f} %   "
                f"rounds: {rounds}"
            )
    print(
        f"  ratio keep-alive {ratios['keep-alive']:.2f}x (target 0.8)   "
        f"close {ratios['close']:.2f}x (target 0.75)   (ratios of the medians)"
    )
    if "fleetkey-1" in medians:
        print(
            f"  {args.workers} workers to one: keep-alive "
            f"{ratios['keep-alive to one worker']:.2f}x   close "
            f"{ratios['close to one worker']:.2f}x (target 1.5)"
        )
    if "before" in medians:
        print(
            f"  to the code before ({args.before}): keep-alive "
            f"{ratios['keep-alive to before']:.2f}x   close {ratios['close to before']:.2f}x"
        )
    print(
        "  round by round:"
        + "".join(f"   {mode} {' '.join(f'{r:.2f}x' for r in paired[mode])}" for mode in MODES)
    )
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"  load average at the end: {load}")
    for summary in summaries:
        print(f"  {summary}")


if __name__ == "__main__":
    main()
