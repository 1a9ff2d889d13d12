"""HTTP throughput: `fleetkey serve` (every fetch recorded) next to nginx, same files, same run.

    .venv/bin/python bench/http.py [--files 10000] [--seconds 10] [--rounds 3] [--connections 64]
                                   [--json]

Needs wrk and nginx (Debian packages; `apt-get install -y wrk nginx`). Each server runs pinned to
core 0, wrk to core 1; wrk requests 10,000 distinct <mac>-license.cfg files from a Lua script,
with keep-alive and with `Connection: close`. nginx: 1 worker, access log on, the files from
disk (the provisioning tree fleetkey writes). Both servers run from the start; each round
measures them in turn (the order turned every round), and the figures are medians over the
rounds. Prints requests/s, p99 latency and the ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

from benchfleet import FLEETKEY, bench_env, issue_phone_licenses, open_tree_to_baselines

LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", string.format("/0004f2%%06x-license.cfg", counter %% %(files)d)%(extra)s)
end
"""

NGINX = """
worker_processes 1;
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


def need(program: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin")
    if found is None:
        raise SystemExit(f"bench/http.py needs {program}: apt-get install -y wrk nginx")
    return found


def wrk(url: str, script: Path, seconds: int, connections: int) -> tuple[float, float]:
    result = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            need("wrk"),
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", result.stdout)
    assert p99 is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} non-2xx answers during the run")
    return rps, float(p99.group(1)) * scale


MODES: Final = ("keep-alive", "close")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-http-"))
    base.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the files
    env = bench_env(base)
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {
        name: {mode: [] for mode in MODES} for name in ("nginx", "fleetkey")
    }
    summary = ""
    try:
        tree = issue_phone_licenses(base, env, args.files)
        open_tree_to_baselines(base)
        scripts = {}
        for mode, extra in zip(MODES, ("", ', {["Connection"] = "close"}'), strict=True):
            scripts[mode] = base / f"{mode}.lua"
            scripts[mode].write_text(LUA % {"files": args.files, "extra": extra})
        nginx_conf = base / "nginx.conf"
        nginx_conf.write_text(NGINX % {"base": base, "port": 18180, "root": tree})
        nginx = subprocess.Popen(["taskset", "-c", "0", need("nginx"), "-c", str(nginx_conf)])
        server = subprocess.Popen(
            ["taskset", "-c", "0", *FLEETKEY, "serve", "--http", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            urls = {
                "nginx": "http://127.0.0.1:18180/",
                "fleetkey": server.stdout.readline().split()[2] + "/",
            }
            time.sleep(1)
            # rounds, the two servers in turn and the order turned every round: this VM's
            # speed drifts between runs, and this way the drift falls on both alike
            for number in range(args.rounds):
                names = ("nginx", "fleetkey") if number % 2 == 0 else ("fleetkey", "nginx")
                for name in names:
                    for mode, script in scripts.items():
                        runs[name][mode].append(
                            wrk(urls[name], script, args.seconds, args.connections)
                        )
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(30)
            server.send_signal(signal.SIGTERM)
            summary = server.communicate(timeout=120)[0].strip()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(args, runs, summary)


def report(
    args: argparse.Namespace, runs: dict[str, dict[str, list[tuple[float, float]]]], summary: str
) -> None:
    medians = {
        name: {mode: statistics.median(rps for rps, _ in values) for mode, values in modes.items()}
        for name, modes in runs.items()
    }
    ratios = {mode: medians["fleetkey"][mode] / medians["nginx"][mode] for mode in MODES}
    # each round's own ratios: its two servers ran minutes apart at most
    paired = {
        mode: [
            mine / theirs
            for (mine, _), (theirs, _) in zip(
                runs["fleetkey"][mode], runs["nginx"][mode], strict=True
            )
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
                    "fleetkey": summary,
                },
                indent=2,
            )
        )
        return
    print(
        f"{args.files} distinct license files, {args.connections} connections, {args.rounds} "
        f"rounds of {args.seconds} s per server and mode, servers in turn; servers on core 0, "
        "wrk on core 1"
    )
    for name, modes in runs.items():
        for mode, values in modes.items():
            rounds = " ".join(f"{rps:,.0f}" for rps, _ in values)
            p99 = statistics.median(p99 for _, p99 in values)
            print(
                f"  {name:<9} {mode:<11} median {medians[name][mode]:>10,.0f} req/s   "
                f"p99 {p99:7.2f} ms   rounds: {rounds}"
            )
    print(
        f"  ratio keep-alive {ratios['keep-alive']:.2f}x (target 0.8)   "
        f"close {ratios['close']:.2f}x (target 0.75)   (ratios of the medians)"
    )
    print(
        "  round by round:"
        + "".join(f"   {mode} {' '.join(f'{r:.2f}x' for r in paired[mode])}" for mode in MODES)
    )
    print(f"  {summary}")


if __name__ == "__main__":
    main()
