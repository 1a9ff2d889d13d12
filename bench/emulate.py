"""Emulator scale: N phones complete a full boot against `fleetkey serve` over HTTP.

    .venv/bin/python bench/emulate.py [--phones 10000] [--limit 60] [--json]

Starts `fleetkey serve` (SQLite, every fetch recorded) with a real-shaped tree (a master
configuration naming a 2 MB firmware image, a model override, CONFIG_FILES, LICENSE_DIRECTORY
and LOG_FILE_DIRECTORY) and `fleetkey emulate --until-booted` on the same cores, each phone
on its own loopback address with a SIP socket, the phones a VVX 500 / SoundPoint IP 670 mix
running the served image (a license-lapse storm: each boot reads the image header, downloads
no firmware). Prints the machine's load, phones booted per second, the server's requests per
second (the requests it answered over the time to boot every phone), and the emulator's own
peak resident size. Issue 19 asks for 10,000 phones in at most 60 s, the emulator under
1.5 GB, within the open-file limit of 20,000.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

MASTER = """<APPLICATION APP_FILE_PATH="firmware/sip.ld" CONFIG_FILES="site.cfg"
 LICENSE_DIRECTORY="" LOG_FILE_DIRECTORY="logs" CONTACTS_DIRECTORY="">
  <APPLICATION_VVX500 APP_FILE_PATH_VVX500="firmware/vvx500.ld"/>
</APPLICATION>
"""


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
        tree = base / "data" / "provisioning"
        (tree / "000000000000.cfg").write_text(MASTER)
        (tree / "firmware").mkdir()
        (tree / "firmware" / "sip.ld").write_bytes(os.urandom(2 * 1024 * 1024))
        (tree / "firmware" / "vvx500.ld").write_bytes(os.urandom(2 * 1024 * 1024))
        (tree / "site.cfg").write_text("<site/>\n")
        load = os.getloadavg()
        server = subprocess.Popen(
            [*fleetkey, "serve", "--http", "127.0.0.1:0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        try:
            emulator = subprocess.Popen(
                [*fleetkey, "emulate", "--server", f"{url}/100000000001",
                 "--phones", str(args.phones), "--models", "VVX_500:60%,SPIP_670:40%",
                 "--duration", str(args.limit), "--until-booted", "--sip-port", "15060",
                 "--json"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            out, err = emulator.communicate()
            if emulator.returncode != 0:
                raise SystemExit(f"emulate exited {emulator.returncode}: {err.strip()}")
            summary = json.loads(out)
            peak_mb = summary["peak_rss_mb"]  # the emulator's own, as it measured itself
        finally:
            server_cpu_s = cpu_seconds(server.pid)
            server.send_signal(signal.SIGTERM)
            stopped = server.communicate(timeout=120)[0].strip()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    seconds = summary["all_booted_after_s"]
    answered = re.search(r"([\d,]+) requests answered", stopped)  # 1,234 as said for people
    server_requests = int(answered.group(1).replace(",", "")) if answered else None
    figures = {
        "load_1_5_15": [round(v, 2) for v in load],
        "open_file_limit": resource.getrlimit(resource.RLIMIT_NOFILE),
        "phones": summary["phones"],
        "booted": summary["booted"],
        "all_booted_after_s": seconds,
        "phones_booted_per_s": round(summary["booted"] / seconds, 1) if seconds else None,
        "requests": summary["requests"],
        "requests_per_s": round(summary["requests"] / seconds, 1) if seconds else None,
        "server_requests_per_s": (
            round(server_requests / seconds, 1) if seconds and server_requests else None
        ),
        "answers_by_status": summary["answers_by_status"],
        "firmware_downloads": summary["firmware_downloads"],
        "emulator_peak_rss_mb": peak_mb,
        "emulator_cpu_s": summary["cpu_s"],
        "server_cpu_s": server_cpu_s,
        "server": stopped,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"{figures['phones']:,} phones, server and emulator sharing this machine's "
        f"{os.cpu_count()} cores; load before {figures['load_1_5_15']}, open-file limit "
        f"{figures['open_file_limit']}"
    )
    print(
        f"  all booted after {seconds} s (target ≤ 60): {figures['phones_booted_per_s']} phones/s"
    )
    print(
        f"  server: {server_requests} requests answered, "
        f"{figures['server_requests_per_s']} requests/s"
    )
    print(
        f"  emulator: {figures['requests']:,} requests, {figures['requests_per_s']} requests/s; "
        "answers "
        + ", ".join(
            f"{status}: {count:,}" for status, count in figures["answers_by_status"].items()
        )
        + f"; firmware downloads {figures['firmware_downloads']}"
    )
    print(f"  emulator peak resident size: {peak_mb} MB (target ≤ 1500)")
    print(f"  CPU: emulator {summary['cpu_s']} s, server {server_cpu_s} s")
    print(f"  {stopped}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU a running process has used (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


if __name__ == "__main__":
    main()
