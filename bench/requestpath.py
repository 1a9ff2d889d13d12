"""Where a request's CPU goes on the event loop: bench/boot.py's boot, in process, no sockets.

    .venv/bin/python bench/requestpath.py [--phones 4000] [--rounds 3] [--tmp DIR] [--json]

bench/boot.py measures requests/s over loopback, where fleetkey's ~190 µs of CPU a request
(docs/serve.md, "Throughput") mixes its own work with the event loop's, the kernel's sockets and
the fetch-record writer's. This takes the sockets away: each phone's boot (bench/boot.py's
SEQUENCE, 11 requests, a quarter of the phones tagging `(SN:…)`, each phone from an address of
its own) is fed as bytes to `serve.http.protocol.HttpProtocol` on a transport that keeps what
is written, one connection a phone, with the server built as `fleetkey serve` builds it (the
store, the tree, the uploads folder, the record writer and its commit gate). For each step of
the boot it reports the event-loop thread's CPU a request (`time.thread_time`: the writer's
thread is apart), split into:

- `service`: `PhoneService.answer_now` and `finished`, what fetching decides and records;
- `protocol`: the rest, httptools' callbacks, the request and answer objects, the framing;
- `floor`: the same bytes through a bare httptools protocol answering fixed bytes (the
  baseline: what parsing a request in Python costs at least, as bench/floor.py's server).

Each answer's status is checked against the boot's (200/201/204/404): a wrong one ends the run.
The measuring is bench/requestcost.py's, run with `python -P` so that this folder's http.py does
not shadow the standard library's. Files go under --tmp (default: the system's; /dev/shm: no disk).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--phones", type=int, default=4000, help="phones booting, one after another"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", help="directory for the run's files (default: the system's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.phones < 100:
        parser.error("--phones must be at least 100")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.tmp is not None and not Path(args.tmp).is_dir():
        parser.error(f"--tmp {args.tmp}: no such directory")
    from benchfleet import bench_env
    from boot import SEQUENCE, build_fleet

    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-requestpath-", dir=args.tmp))
    try:
        env = bench_env(base)
        build_fleet(base, env, args.phones, 20)
        (base / "sequence.txt").write_text(SEQUENCE)
        child = subprocess.run(
            [sys.executable, "-P", str(Path(__file__).with_name("requestcost.py")),
             str(base), str(args.phones), str(args.rounds)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if child.returncode != 0:
            raise SystemExit(f"the measurement failed:\n{child.stderr.strip()}")
        result = json.loads(child.stdout)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    report(result)


def report(result: dict[str, Any]) -> None:
    """The table (80 columns): a line a step, medians over the rounds, then the boot's mean."""
    print(
        f"{result['phones']:,} phones, {result['rounds']} rounds ({result['python']}): the "
        "event loop's\nthread's CPU a request, µs, median of the rounds"
    )
    print(
        f"  {'step':33} {'status':>7} {'floor':>6} {'fleetkey':>8} {'protocol':>8} {'service':>7}"
    )
    for step in result["steps"]:
        print(
            f"  {step['method']:3} {step['path']:29} {step['status']:>7} {step['floor_us']:6.1f}"
            f" {step['total_us']:8.1f} {step['protocol_us']:8.1f} {step['service_us']:7.1f}"
        )
    mean = result["mean"]
    print(
        f"  {'a request of the boot, mean':33} {'':>7} {mean['floor_us']:6.1f}"
        f" {mean['total_us']:8.1f} {mean['protocol_us']:8.1f} {mean['service_us']:7.1f}"
    )
    rounds = ", ".join(f"{value:.1f}" for value in mean["rounds_total_us"])
    print(f"  fleetkey's mean, round by round: {rounds}")
    print(
        f"  a connection, made and lost: {result['connection_us']:.1f} µs (not in the table); "
        f"timers:\n  {result['timer_overhead_us']:.1f} µs a timed call, taken out"
    )
    print("  not here: the event loop's own work, the kernel's sockets, the record writer")


if __name__ == "__main__":
    main()
