"""The HTTP request path without sockets: Python CPU per answer, next to a bare protocol.

    .venv/bin/python bench/http_path.py [--phones 2000] [--passes 5] [--runs 5] [--json]

Feeds request bytes into fleetkey's `HttpProtocol` (the real `PhoneService` over the fetch
pipeline and the in-memory view, a real fetch writer queueing every record, a transport that
only counts what it is given) and, in the same run, into a bare httptools protocol that answers
fixed bytes: the baseline, what parsing and calling back cost at the least. Two request mixes:

- `license`: GETs of posted `<mac>-license.cfg` files with a tagged User-Agent, ten each (the
  path bench/http.py measures);
- `boot`: each phone's GETs of a boot (domain.md §5.1) over one connection from its own
  address, with the default User-Agent (no `(SN:…)`): `<mac>.cfg` (404), `000000000000.cfg`
  (a tree file), the part-number image (404), the two override files (404), the site license
  (known by the address), `<mac>-license.cfg` (200 for every tenth phone), the two directory
  files (404, tree file). Uploads are left out: they go to a thread.

Prints main-thread CPU per request (the minimum over the runs) for keep-alive and connection
close, the first pass (cold caches) and later passes. No kernel, no event loop: a real server
spends more per request (docs/serve.md), so this measures the Python alone, which is what
changes to the request path change.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchfleet import FLEETKEY, bench_env

# bench/http.py (the name issue 4 gives it) would shadow the standard library's http package,
# which fleetkey and Starlette import: this directory leaves the path once benchfleet is in
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import httptools  # noqa: E402

from fleetkey.authority.datadir import DataDir  # noqa: E402
from fleetkey.cli.context import Env  # noqa: E402
from fleetkey.serve.content import ContentKind  # noqa: E402
from fleetkey.serve.fetching import Pipeline  # noqa: E402
from fleetkey.serve.http.connections import Connections  # noqa: E402
from fleetkey.serve.http.phones import PhoneService  # noqa: E402
from fleetkey.serve.http.protocol import HttpProtocol, RequestLimits  # noqa: E402
from fleetkey.serve.recorder import Recorder  # noqa: E402
from fleetkey.serve.runner import GC_THRESHOLDS  # noqa: E402
from fleetkey.serve.tree import FileTree  # noqa: E402
from fleetkey.serve.view import LiveView  # noqa: E402
from fleetkey.store.fetches import StoreSink  # noqa: E402
from fleetkey.store.writer import FetchWriter  # noqa: E402

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: 430\r\n\r\n"
ANSWER += b"x" * 430
SITES = 20
UA = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477"
BOOT = (  # the GETs of a boot, domain.md §5.1
    "/{mac}.cfg",
    "/000000000000.cfg",
    "/2345-12500-001.sip.ld",
    "/{mac}-phone.cfg",
    "/{mac}-web.cfg",
    "/000000000000-license.cfg",
    "/{mac}-license.cfg",
    "/{mac}-directory.xml",
    "/000000000000-directory.xml",
)
Connection = tuple[str, list[bytes]]  # the peer's address, and what it sends


def mac(i: int) -> str:
    return f"0004f2{i:06x}"


def build_fleet(base: Path, phones: int) -> None:
    """SITES sites, ``phones`` phones, a site license each, a phone license every tenth."""
    env = bench_env(base)

    def run(*args: str) -> None:
        subprocess.run([*FLEETKEY, *args], env=env, check=True, capture_output=True)

    run("init")
    rows = []
    for n in range(SITES):
        serial = f"1000000{n:05x}"
        run("sites", "add", serial, "--name", f"site {n}", "--tz", "UTC", "--window", "01:00-05:00")
        run("issue", "site", "--serial", serial, "--features", "corporate-directory",
            "--expires", "2030-12-31", *(["--default-site"] if n == 0 else []))  # fmt: skip
        rows += [f"{mac(i)},{serial},VVX_500" for i in range(n, phones, SITES)]
    (base / "phones.csv").write_text("mac,site,model\n" + "\n".join(rows) + "\n")
    run("phones", "import", str(base / "phones.csv"))
    (base / "batch.csv").write_text(
        "mac,features,expires\n" + "".join(f"{mac(i)},vqmon,never\n" for i in range(0, phones, 10))
    )
    run("issue", "batch", "--csv", str(base / "batch.csv"))
    tree = base / "data" / "provisioning"
    (tree / "000000000000.cfg").write_text('<APPLICATION APP_FILE_PATH="sip.ld"/>\n')
    (tree / "000000000000-directory.xml").write_text("<directory/>\n")


def request(path: str, *, tagged: str | None, close: bool) -> bytes:
    agent = f"{UA} (SN:{tagged}) Type/Application" if tagged else f"{UA} Type/Application"
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: {agent}\r\n"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    ).encode()


def license_mix(phones: int, close: bool) -> list[Connection]:
    """The posted phone licenses (every tenth phone's) from 127.0.0.1, tagged, each ten times:
    over one connection (keep-alive, as wrk in bench/http.py), or one connection each."""
    sent = [
        request(f"/{mac(i)}-license.cfg", tagged=mac(i), close=close) for i in range(0, phones, 10)
    ] * 10
    return [("127.0.0.1", [data]) for data in sent] if close else [("127.0.0.1", sent)]


def boot_mix(phones: int, close: bool) -> list[Connection]:
    """Every phone's boot GETs from its own address, untagged."""
    return [
        (
            f"127.20.{i // 250}.{i % 250 + 1}",
            [request(p.format(mac=mac(i)), tagged=None, close=close) for p in BOOT],
        )
        for i in range(phones)
    ]


class CountingTransport:
    """Takes writes and closes, as a socket transport would, and counts them."""

    def __init__(self) -> None:
        self.writes = 0
        self.peer = "127.0.0.1"

    def write(self, data: bytes) -> None:
        self.writes += 1

    def close(self) -> None:
        return

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return (self.peer, 50000) if name == "peername" else None

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


def cpu_per_request(play: Callable[[list[Connection]], int], mix: list[Connection]) -> float:
    start = time.thread_time()
    count = play(mix)
    return (time.thread_time() - start) / count * 1e6


def fleetkey_run(
    root: Path, mix: list[Connection], passes: int, close: bool
) -> tuple[float, float]:
    """(µs first pass, µs later passes) with a fresh service."""
    env = Env(DataDir(root))
    store = env.store()
    total = sum(len(sent) for _, sent in mix) * passes
    # every record queued (the real submit), none written until the end: no writer thread
    # running during the measurement
    writer = FetchWriter(
        StoreSink(store.engine), capacity=total + 1, batch_size=total + 1, flush_interval_s=3600.0
    ).start()
    view = LiveView(store)
    view.refresh()
    pipeline = Pipeline(
        view,
        FileTree(env.data.provisioning),
        FileTree(root / "uploads", kind=ContentKind.UPLOAD),
    )
    recorder = Recorder(writer, env.clock, view, queue_capacity=total * 2)
    service = PhoneService(pipeline, recorder, uploads=root / "uploads")
    transport = CountingTransport()
    connections = Connections()

    def play(connections_: list[Connection]) -> int:
        count = 0
        for peer, sent in connections_:
            transport.peer = peer
            if close:
                for data in sent:
                    protocol = HttpProtocol(service, RequestLimits(), connections)
                    protocol.connection_made(transport)  # type: ignore[arg-type]
                    protocol.data_received(data)
                    protocol.connection_lost(None)
            else:
                protocol = HttpProtocol(service, RequestLimits(), connections)
                protocol.connection_made(transport)  # type: ignore[arg-type]
                for data in sent:
                    protocol.data_received(data)
                protocol.connection_lost(None)
            count += len(sent)
        return count

    gc.collect()
    gc.freeze()
    first = cpu_per_request(play, mix)
    later = cpu_per_request(play, mix * (passes - 1))
    assert transport.writes == total, f"{transport.writes} answers to {total} requests"
    assert service.requests == total
    writer.close()
    gc.unfreeze()
    store.engine.dispose()
    return first, later


def bare_run(mix: list[Connection], passes: int, close: bool) -> float:
    transport = CountingTransport()

    def play(connections: list[Connection]) -> int:
        count = 0
        for _, sent in connections:
            if close:
                for data in sent:
                    BareProtocol(transport).data_received(data)
            else:
                protocol = BareProtocol(transport)
                for data in sent:
                    protocol.data_received(data)
            count += len(sent)
        return count

    return cpu_per_request(play, mix * passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=5, help="times each mix is played")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fleetkey-bench-") as tmp:
        base = Path(tmp)
        build_fleet(base, args.phones)
        for name, make in (("license", license_mix), ("boot", boot_mix)):
            for mode, close in (("keep-alive", False), ("close", True)):
                mix = make(args.phones, close)
                runs = [
                    (
                        *fleetkey_run(base / "data", mix, args.passes, close),
                        bare_run(mix, args.passes, close),
                    )
                    for _ in range(args.runs)
                ]
                results[f"{name} {mode}"] = {
                    "first_us": min(r[0] for r in runs),
                    "later_us": min(r[1] for r in runs),
                    "bare_us": min(r[2] for r in runs),
                }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{args.phones} phones, {args.passes} passes, min of {args.runs} runs; "
        "main-thread CPU per request, no sockets"
    )
    for mix_mode, figures in results.items():
        print(
            f"  {mix_mode:20}  fleetkey first pass {figures['first_us']:5.2f} us   "
            f"later {figures['later_us']:5.2f} us   "
            f"bare httptools protocol {figures['bare_us']:5.2f} us   "
            f"({figures['later_us'] / figures['bare_us']:.1f}x bare)"
        )


if __name__ == "__main__":
    main()
