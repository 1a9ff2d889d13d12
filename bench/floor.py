"""The floor of bench/boot.py's mix: what a bare uvloop + httptools protocol answers.

    .venv/bin/python bench/floor.py [--seconds 8] [--rounds 2] [--json]

The same generator (bench/bootload.c, core 1), boot (bench/boot.py's SEQUENCE: 11 requests,
a quarter of the phones tagging `(SN:…)`, 20,000 phones from their own addresses, 256 at once)
against a protocol of a dozen lines on core 0 that answers from fixed bytes: 200 with 600
bytes for the shared files (`/000000000000…`), 204 for a PUT (its body read and dropped),
404 for the rest; nothing is looked up, written or recorded. Its rate is what the event loop,
the parser and the kernel's sockets cost alone, the most any server on them can answer: the
gap between it and `fleetkey serve` in bench/boot.py is fleetkey's own work a request
(docs/serve.md, "Throughput"). Needs gcc and taskset.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchfleet import need
from boot import MODES, SEQUENCE, generate


def serve() -> None:
    """The bare server: print the port it listens on, answer until killed."""
    import uvloop

    from bareprotocol import BareProtocol

    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        await asyncio.get_running_loop().create_server(BareProtocol, sock=listener, backlog=4096)
        print(listener.getsockname()[1], flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be above 0 and --rounds at least 1")
    gcc, taskset = need("gcc"), need("taskset")
    # the boot as bench/boot.py's defaults shape it (generate reads these from args)
    args.phones, args.concurrency, args.tagged, args.warmup = 20_000, 256, 0.25, 1.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the bare server is stopped too
    runs = measure(gcc, taskset, args)
    medians = {mode: statistics.median(run["rps"] for run in runs[mode]) for mode in MODES}
    if args.json:
        print(json.dumps({"floor": medians, "rounds": runs}, indent=2))
        return
    for mode in MODES:
        last = runs[mode][-1]
        rounds = " ".join(f"{run['rps']:,.0f}" for run in runs[mode])
        print(
            f"floor {mode:10s} {medians[mode]:8,.0f} req/s  generator {last['cpu_pct']:3.0f} %, "
            f"core 1 busy {last['core1']['busy']:3.0f} %  rounds: {rounds}"
        )
    print("a generator near 100 % of core 1 bounds the rate: the floor is then at least that")
    print("(with close the kernel's connection work is on the generator's side too)")


def measure(gcc: str, taskset: str, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Each round, each mode: bootload's figures against the bare server, with core 1's
    share; a run with errors or statuses other than 200/204/404 ends the benchmark."""
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-floor-"))
    bare: subprocess.Popen[str] | None = None
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    try:
        bootload, sequence = base / "bootload", base / "sequence.txt"
        source = Path(__file__).with_name("bootload.c")
        subprocess.run([gcc, "-O2", "-o", str(bootload), str(source)], check=True)
        sequence.write_text(SEQUENCE)
        bare = subprocess.Popen(
            [taskset, "-c", "0", sys.executable, __file__, "--serve"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert bare.stdout is not None
        port = bare.stdout.readline().strip()
        if not port.isdigit():
            raise SystemExit("the bare server did not start")
        for _ in range(args.rounds):
            for mode in MODES:
                run = generate(bootload, sequence, int(port), mode, 0, args)
                odd = set(run["status"]) - {"200", "204", "404"}
                if run["errors"] or odd:
                    raise SystemExit(f"the floor misanswered: errors {run['errors']}, {odd}")
                runs[mode].append(run)
    finally:
        if bare is not None:
            bare.kill()
            bare.wait()
        shutil.rmtree(base, ignore_errors=True)
    return runs


if __name__ == "__main__":
    main()
