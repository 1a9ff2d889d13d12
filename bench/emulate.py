"""Emulator scale: N phones complete a full boot against `fleetkey serve` over HTTP.

    .venv/bin/python bench/emulate.py [--phones 10000] [--limit 60] [--json]

Starts `fleetkey serve` (SQLite, every fetch recorded) and `fleetkey emulate --until-booted`
on the same 2 cores, each phone on its own loopback address with a SIP listener. Prints
phones booted per second, requests per second driven, and the emulator's peak memory.
Issue 6 asks for 10,000 phones in at most 60 s and under 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=10_000)
    parser.add_argument("--limit", type=float, default=60.0, help="real seconds at most")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-emulate-"))
    env = {**os.environ, "FLEETKEY_DATA": str(base / "data"), "FLEETKEY_KEY_PASSPHRASE": "bench"}
    env.pop("FLEETKEY_DB", None)
    fleetkey = [sys.executable, "-m", "fleetkey"]

    def run(*command: str) -> str:
        return subprocess.run(
            [*fleetkey, *command], env=env, check=True, capture_output=True, text=True
        ).stdout

    try:
        run("init")
        run(
            "sites", "add", "100000000001", "--name", "HQ", "--tz", "UTC", "--window", "22:00-05:00"
        )
        run("issue", "site", "--serial", "100000000001", "--features", "corporate-directory",
            "--expires", "2030-12-31")  # fmt: skip
        server = subprocess.Popen(
            [*fleetkey, "serve", "--http", "127.0.0.1:0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        try:
            summary = json.loads(
                run(
                    "emulate",
                    "--server",
                    f"{url}/100000000001",
                    "--phones",
                    str(args.phones),
                    "--duration",
                    str(args.limit),
                    "--until-booted",
                    "--sip-port",
                    "15060",
                    "--json",
                )
            )
        finally:
            server.send_signal(signal.SIGTERM)
            stopped = server.communicate(timeout=120)[0].strip()
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finally:
        shutil.rmtree(base, ignore_errors=True)
    seconds = summary["all_booted_after_s"]
    figures = {
        "phones": summary["phones"],
        "booted": summary["booted"],
        "all_booted_after_s": seconds,
        "phones_booted_per_s": round(summary["booted"] / seconds, 1) if seconds else None,
        "requests": summary["requests"],
        "requests_per_s": round(summary["requests"] / seconds, 1) if seconds else None,
        "answers_by_status": summary["answers_by_status"],
        "peak_rss_mb_largest_child": round(peak_mb, 1),
        "server": stopped,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{figures['phones']:,} phones, server and emulator sharing this machine's cores")
    print(
        f"  all booted after {seconds} s (target ≤ 60): {figures['phones_booted_per_s']} phones/s"
    )
    print(
        f"  {figures['requests']:,} requests, {figures['requests_per_s']} requests/s; "
        "answers "
        + ", ".join(
            f"{status}: {count:,}" for status, count in figures["answers_by_status"].items()
        )
    )
    print(
        f"  peak resident size of the largest process: "
        f"{figures['peak_rss_mb_largest_child']} MB (target < 1500 for the emulator)"
    )
    print(f"  {stopped}")


if __name__ == "__main__":
    main()
