"""The HTTP request path without sockets: Python CPU per answer, next to a bare protocol.

    .venv/bin/python bench/http_path.py [--files 10000] [--passes 20] [--runs 5] [--json]

Feeds the bytes of wrk-like GETs of 10,000 distinct <mac>-license.cfg files into fleetkey's
`HttpProtocol` (the real `PhoneService` over the in-memory view, a real fetch writer queueing
every record, a transport that only counts what it is given) and, in the same run, into a bare
httptools protocol that answers fixed bytes: the baseline, what parsing and calling back cost
at the least. Prints main-thread CPU per request (the minimum over the runs) for keep-alive and
connection close, first answers (decided: the first pass over the files) and repeated ones
(remembered: the later passes). No kernel, no event loop, no cache pressure from either: a
real server spends more per request (docs/serve.md), so this measures the Python alone, which
is what changes to the request path change.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchfleet import bench_env, issue_phone_licenses

# bench/http.py (the name issue 4 gives it) would shadow the standard library's http package,
# which fleetkey and Starlette import: this directory leaves the path once benchfleet is in
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import httptools  # noqa: E402

from fleetkey.authority.datadir import DataDir  # noqa: E402
from fleetkey.cli.context import Env  # noqa: E402
from fleetkey.cli.serve import GC_THRESHOLDS  # noqa: E402
from fleetkey.serve.cache import PostedLicenses  # noqa: E402
from fleetkey.serve.content import ContentResolver  # noqa: E402
from fleetkey.serve.http.phones import PhoneService, Policies  # noqa: E402
from fleetkey.serve.http.protocol import HttpProtocol, Limits  # noqa: E402
from fleetkey.serve.identity import Sightings, UnknownPolicy  # noqa: E402
from fleetkey.store.fetches import FetchWriter  # noqa: E402

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: 430\r\n\r\n"
ANSWER += b"x" * 430


class CountingTransport:
    """Takes writes and closes, as a socket transport would, and counts them."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def close(self) -> None:
        return

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else None

    def pause_reading(self) -> None:
        return

    def resume_reading(self) -> None:
        return


class BareProtocol:
    """The least an httptools server does: parse, and answer fixed bytes at message end."""

    def __init__(self, transport: CountingTransport) -> None:
        self._transport = transport
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        return

    def on_message_complete(self) -> None:
        self._transport.write(ANSWER)
        if not self._parser.should_keep_alive():
            self._transport.close()


def requests(files: int, close: bool) -> list[bytes]:
    extra = b"Connection: close\r\n" if close else b""
    return [
        b"GET /0004f2%06x-license.cfg HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" % i
        + b"User-Agent: FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application\r\n"
        + extra
        + b"\r\n"
        for i in range(files)
    ]


def cpu_per_request(feed: Callable[[bytes], None], batch: list[bytes]) -> float:
    start = time.thread_time()
    for data in batch:
        feed(data)
    return (time.thread_time() - start) / len(batch) * 1e6


def fleetkey_run(root: Path, files: int, passes: int, close: bool) -> tuple[float, float]:
    """(µs decided, µs remembered) with a fresh service: nothing remembered at the start."""
    env = Env(DataDir(root))
    store = env.store()
    total = files * passes
    # every record queued (the real submit), none written until the end: no writer thread
    # running during the measurement
    writer = FetchWriter(
        store.engine, capacity=total + 1, batch_size=total + 1, flush_interval_s=3600.0
    ).start()
    posted = PostedLicenses(store)
    posted.refresh()
    service = PhoneService(
        ContentResolver(store, env.data.provisioning, posted),
        writer,
        env.clock,
        queue_capacity=total * 2,
        uploads=root / "uploads",
        policies=Policies(sightings=Sightings(UnknownPolicy.SERVE)),
    )
    transport = CountingTransport()
    connections: set[HttpProtocol] = set()

    def keep_alive() -> Callable[[bytes], None]:
        protocol = HttpProtocol(service, Limits(), connections)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        return protocol.data_received

    def one_connection(data: bytes) -> None:
        protocol = HttpProtocol(service, Limits(), connections)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(data)
        protocol.connection_lost(None)

    batch = requests(files, close)
    feed = one_connection if close else keep_alive()
    gc.collect()
    gc.freeze()
    decided = cpu_per_request(feed, batch)
    remembered = cpu_per_request(feed, batch * (passes - 1))
    assert transport.writes == total, f"{transport.writes} answers to {total} requests"
    assert service.requests == total
    writer.close()
    gc.unfreeze()
    store.engine.dispose()
    return decided, remembered


def bare_run(files: int, passes: int, close: bool) -> float:
    transport = CountingTransport()
    batch = requests(files, close) * passes
    if close:
        return cpu_per_request(lambda data: BareProtocol(transport).data_received(data), batch)
    return cpu_per_request(BareProtocol(transport).data_received, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--passes", type=int, default=20, help="requests per file")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)
    with tempfile.TemporaryDirectory(prefix="fleetkey-bench-") as tmp:
        base = Path(tmp)
        issue_phone_licenses(base, bench_env(base), args.files)
        results: dict[str, dict[str, float]] = {}
        for mode, close in (("keep-alive", False), ("close", True)):
            runs = [
                (
                    *fleetkey_run(base / "data", args.files, args.passes, close),
                    bare_run(args.files, args.passes, close),
                )
                for _ in range(args.runs)
            ]
            results[mode] = {
                "decided_us": min(r[0] for r in runs),
                "remembered_us": min(r[1] for r in runs),
                "bare_us": min(r[2] for r in runs),
            }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{args.files} license files, {args.passes} requests each, min of {args.runs} runs; "
        "main-thread CPU per request, no sockets"
    )
    for mode, figures in results.items():
        print(
            f"  {mode:10}  fleetkey decided {figures['decided_us']:5.2f} us   "
            f"remembered {figures['remembered_us']:5.2f} us   "
            f"bare httptools protocol {figures['bare_us']:5.2f} us   "
            f"(remembered = {figures['remembered_us'] / figures['bare_us']:.1f}x bare)"
        )


if __name__ == "__main__":
    main()
