"""Where a request's CPU goes on the event loop: bench/boot.py's boot, in process, no sockets.

    .venv/bin/python bench/requestpath.py [--phones 4000] [--sites 20] [--rounds 3]
                                          [--tmp DIR] [--json]

bench/boot.py measures requests/s over loopback, where fleetkey's own work is mixed with the
event loop's, the kernel's sockets and the fetch-record writer's (docs/serve.md, "Throughput").
This takes the sockets away: each phone's boot (bench/boot.py's SEQUENCE, 11 requests, the log
PUTs included, a quarter of the phones tagging `(SN:…)` as bench/bootload.c chooses them, each
phone from an address of its own) is fed as bytes to `serve.http.protocol.HttpProtocol` on a
transport that keeps what is written, one connection a phone, 64 phones at a time, with the
server built as `fleetkey serve` builds it (`ServerRunner`: the store, the tree, the
uploads folder, the record writer, the commit gate, the collector and switch-interval settings),
on one core as bench/boot.py's server (the writer's thread shares it, as there).
For each step it reports the event-loop thread's CPU a request (`time.thread_time`: user and
system time, so a PUT's file calls and the tree's `stat` are in it; the writer's thread is not),
split into:

- `service`: `PhoneService.answer_now`, `finished` and `body_limit`: what fetching decides,
  stores and records;
- `protocol`: the rest, httptools' callbacks, the request and answer objects, the framing, the
  commit gate's wait;
- `floor`: the same bytes through bench/bareprotocol.py, bench/floor.py's bare httptools
  protocol (the baseline).

Each round boots every phone three times: step by step (the table: every phone of a batch at one
step, then the next; each step's code runs 64 times in a row, its caches warm) and interleaved
(each phone of a batch starts at another step, as phones booting at once are found at every
step: one figure a request, connections included, the one to set against a whole server), and
interleaved once more with a service that answers fixed statuses and records nothing (the
framing alone: between the bare protocol and fleetkey's whole request path).
Each phone's answer to each step is checked (a measured PUT replaces: 204; every tenth phone
has a phone license). bench/http_path.py measures the GETs of a boot and of the license path,
keep-alive against close and cold against warm, with a pipeline it builds itself; this one
measures the whole boot through the server's own construction, split by step and by layer.

The measuring is bench/requestcost.py's, run with `python -P` so that this folder's http.py does
not shadow the standard library's. Files go under --tmp (default: the system's; /dev/shm: no
disk, as docs/serve.md's figures). 4,000 phones and 3 rounds take ~1 minute, most of it building
the fleet with the CLI.
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
    parser.add_argument("--sites", type=int, default=20, help="sites the phones are spread over")
    parser.add_argument("--rounds", type=int, default=3, help="measured boots of every phone")
    parser.add_argument("--tmp", help="directory for the run's files (default: the system's)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not 100 <= args.phones <= 0xFFFFFF:
        parser.error("--phones must be from 100 to 16,777,215 (MACs 0004f2000000 and up)")
    if not 1 <= args.sites <= args.phones:
        parser.error("--sites must be from 1 to --phones")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.tmp is not None and not Path(args.tmp).is_dir():
        parser.error(f"--tmp {args.tmp}: no such directory")
    from benchfleet import bench_env
    from boot import SEQUENCE, build_fleet

    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-requestpath-", dir=args.tmp))
    try:
        env = bench_env(base)
        build_fleet(base, env, args.phones, args.sites)
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
    rounds = ", ".join(f"{value:.1f}" for value in mean["rounds_interleaved_us"])
    print(
        f"  interleaved (each phone at another step; connections in): "
        f"{mean['interleaved_us']:.1f}\n  round by round: {rounds}"
    )
    print(
        f"  the same, fleetkey's framing with a service answering fixed statuses: "
        f"{mean['framing_interleaved_us']:.1f}"
    )
    print(
        f"  the record writer's thread meanwhile: {mean['writer_interleaved_us']:.1f} "
        "(its batches are smaller\n  than a storm's: a commit for each batch's license answers)"
    )
    print(
        f"  a connection, made and lost: {result['connection_us']:.1f} µs (not in the table); "
        f"timers:\n  {result['timer_overhead_us']:.1f} µs a timed call, taken out"
    )
    print("  not here: the event loop's own work, the kernel's sockets")


if __name__ == "__main__":
    main()
