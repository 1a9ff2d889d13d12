"""HTTP throughput: `fleetkey serve` (every fetch recorded) next to nginx, same files, same run.

    .venv/bin/python bench/http.py [--files 10000] [--seconds 10] [--connections 64] [--json]

Needs wrk and nginx (Debian packages; `apt-get install -y wrk nginx`). Each server runs pinned to
core 0, wrk to core 1; wrk requests 10,000 distinct <mac>-license.cfg files from a Lua script,
with keep-alive and with `Connection: close`. nginx: 1 worker, access log on, the files from
disk (the provisioning tree fleetkey writes). Prints requests/s, p99 latency and the ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from benchfleet import FLEETKEY, bench_env, issue_phone_licenses

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-http-"))
    base.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the files
    env = bench_env(base)
    fleetkey = FLEETKEY
    try:
        tree = issue_phone_licenses(base, env, args.files)
        scripts = {}
        for mode, extra in (("keep-alive", ""), ("close", ', {["Connection"] = "close"}')):
            scripts[mode] = base / f"{mode}.lua"
            scripts[mode].write_text(LUA % {"files": args.files, "extra": extra})
        results: dict[str, dict[str, tuple[float, float]]] = {}

        nginx_conf = base / "nginx.conf"
        nginx_conf.write_text(NGINX % {"base": base, "port": 18180, "root": tree})
        nginx = subprocess.Popen(["taskset", "-c", "0", need("nginx"), "-c", str(nginx_conf)])
        time.sleep(1)
        try:
            results["nginx"] = {
                mode: wrk("http://127.0.0.1:18180/", script, args.seconds, args.connections)
                for mode, script in scripts.items()
            }
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(30)

        server = subprocess.Popen(
            ["taskset", "-c", "0", *fleetkey, "serve", "--http", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        url = server.stdout.readline().split()[2] + "/"
        try:
            results["fleetkey"] = {
                mode: wrk(url, script, args.seconds, args.connections)
                for mode, script in scripts.items()
            }
        finally:
            server.send_signal(signal.SIGTERM)
            summary = server.communicate(timeout=120)[0].strip()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ratios = {mode: results["fleetkey"][mode][0] / results["nginx"][mode][0] for mode in scripts}
    if args.json:
        print(json.dumps({"results": results, "ratios": ratios, "fleetkey": summary}, indent=2))
        return
    print(
        f"{args.files} distinct license files, {args.connections} connections, "
        f"{args.seconds} s per run, servers on core 0, wrk on core 1"
    )
    for name, modes in results.items():
        for mode, (rps, p99) in modes.items():
            print(f"  {name:<9} {mode:<11} {rps:>10,.0f} req/s   p99 {p99:7.2f} ms")
    print(
        f"  ratio keep-alive {ratios['keep-alive']:.2f}x (target 0.8)   "
        f"close {ratios['close']:.2f}x (target 0.75)"
    )
    print(f"  {summary}")


if __name__ == "__main__":
    main()
