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
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from benchfleet import need
from boot import MODES, SEQUENCE

SHARED: Final = (
    b"HTTP/1.1 200 OK\r\ncontent-length: 600\r\ncontent-type: text/plain\r\n\r\n" + b"x" * 600
)
MISSING: Final = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
STORED: Final = b"HTTP/1.1 204 No Content\r\n\r\n"


def serve() -> None:
    """The bare server: print the port it listens on, answer until killed."""
    import httptools
    import uvloop

    class Bare(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_message_complete(self) -> None:
            if self.parser.get_method() == b"PUT":
                self.transport.write(STORED)
            else:
                self.transport.write(SHARED if self.url.startswith(b"/000000000000") else MISSING)
            if not self.parser.should_keep_alive():
                self.transport.close()

    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        await asyncio.get_running_loop().create_server(Bare, sock=listener, backlog=4096)
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
    base = Path(tempfile.mkdtemp(prefix="fleetkey-bench-floor-"))
    bare = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, __file__, "--serve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        bootload, sequence = base / "bootload", base / "sequence.txt"
        source = Path(__file__).with_name("bootload.c")
        subprocess.run([need("gcc"), "-O2", "-o", str(bootload), str(source)], check=True)
        sequence.write_text(SEQUENCE)
        assert bare.stdout is not None
        port = bare.stdout.readline().strip()
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                done = subprocess.run(
                    ["taskset", "-c", "1", str(bootload), "--port", port,
                     "--sequence", str(sequence), "--phones", "20000", "--concurrency", "256",
                     "--tagged", "0.25", "--mode", mode.replace("-", ""), "--warmup", "1",
                     "--seconds", str(args.seconds), "--first", "0"],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                rates[mode].append(json.loads(done.stdout)["rps"])
    finally:
        bare.kill()
        bare.wait()
        shutil.rmtree(base, ignore_errors=True)
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    if args.json:
        print(json.dumps({"floor": medians, "rounds": rates}, indent=2))
        return
    for mode in MODES:
        rounds = " ".join(f"{rate:,.0f}" for rate in rates[mode])
        print(f"floor  {mode:10s} {medians[mode]:8,.0f} req/s   rounds: {rounds}")


if __name__ == "__main__":
    main()
