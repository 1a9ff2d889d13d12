"""How long ``fleetkey`` takes to start and answer, run as a user runs it (a new process each).

    .venv/bin/python bench/startup.py [--runs 7] [--json]

On a small store made here (``init``, three sites, 300 phones, one site license): the wall
time of ``--version``, ``--help`` and read commands, median and fastest of ``--runs``, with
the CPU time (user + system) of the median run. Targets (issue 24): ``--version`` and
``--help`` at most 0.2 s, a read command at most 0.5 s. CPU time says how much of the wall
time was the command's own work when other processes share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (
    ("--version",),
    ("--help",),
    ("sites", "list"),
    ("phones", "list", "--json"),
    ("licenses", "list"),
    ("db", "current"),
)


def executable() -> list[str]:
    script = shutil.which("fleetkey", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "fleetkey"]


def run(args: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([*executable(), *args], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def small_store(root: Path, env: dict[str, str]) -> None:
    def fleetkey(*args: str) -> None:
        subprocess.run([*executable(), *args], env=env, check=True, capture_output=True)

    fleetkey("init")
    csv = root / "phones.csv"
    rows = []
    for index, (serial, name, zone) in enumerate(
        (
            ("100000000001", "Berlin", "Europe/Berlin"),
            ("100000000002", "New York", "America/New_York"),
            ("100000000003", "Tokyo", "Asia/Tokyo"),
        )
    ):
        fleetkey("sites", "add", serial, "--name", name, "--tz", zone, "--window", "01:00-04:00")
        rows += [f"0004f2{index:02x}{i:04x},{serial},VVX_500\n" for i in range(100)]
    csv.write_text("mac,site,model\n" + "".join(rows))
    fleetkey("phones", "import", str(csv))
    fleetkey(
        "issue", "site", "--serial", "100000000001", "--features", "vqmon", "--expires", "never"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        env = {
            **os.environ,
            "FLEETKEY_DATA": str(root / "data"),
            "FLEETKEY_KEY_PASSPHRASE": "bench",
        }
        small_store(root, env)
        for args in COMMANDS:
            run(args, env)  # warm: bytecode caches written, files in the page cache
            timings = sorted(run(args, env) for _ in range(options.runs))
            wall, cpu = timings[len(timings) // 2]
            results.append(
                {
                    "command": "fleetkey " + " ".join(args),
                    "median_s": round(wall, 3),
                    "fastest_s": round(timings[0][0], 3),
                    "cpu_s": round(cpu, 3),
                    "spread_s": round(statistics.pstdev(t[0] for t in timings), 3),
                }
            )
    load = os.getloadavg()[0]
    if options.json:
        print(json.dumps({"load_average_1m": load, "runs": options.runs, "results": results}))
        return
    print(f"{options.runs} runs each, load average {load:.2f} on {os.cpu_count()} cores")
    print(f"{'command':34} {'median':>8} {'fastest':>8} {'cpu':>8}")
    for row in results:
        print(
            f"{row['command']:34} {row['median_s']:>7.3f}s {row['fastest_s']:>7.3f}s "
            f"{row['cpu_s']:>7.3f}s"
        )


if __name__ == "__main__":
    main()
