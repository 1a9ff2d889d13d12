"""bench/requestpath.py's measuring child: a built fleet's boots fed to the server in process.

    python -P bench/requestcost.py FOLDER PHONES ROUNDS     (prints JSON)

FOLDER is a fleet bench/boot.py's build_fleet built (its data directory, and sequence.txt: the
boot). Run by bench/requestpath.py; on its own only to look at the JSON.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import uvloop

from fleetkey.authority.datadir import DataDir
from fleetkey.clock import SystemClock
from fleetkey.serve.http.connections import Connections
from fleetkey.serve.http.messages import Request, RequestLimits, Response
from fleetkey.serve.http.protocol import HttpProtocol
from fleetkey.serve.runner import (
    GC_THRESHOLDS,
    SWITCH_INTERVAL_S,
    Places,
    ServerRunner,
    ServeSettings,
)
from fleetkey.store.store import Store

# run with -P: this folder at the back of the path, so its http.py shadows nothing
sys.path.append(str(Path(__file__).resolve().parent))
from bareprotocol import BareProtocol

AGENT: Final = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477"  # bench/bootload.c's
_STATUS: Final = re.compile(rb"HTTP/1\.1 (\d{3}) ")
BATCH: Final = 64  # phones booting at once, in step


class KeepingTransport:
    """A transport that keeps what is written to it (read after the clock, in ``statuses``)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.written: list[bytes] = []
        self.closed = False

    @property
    def statuses(self) -> list[int]:
        """The status of each answer written."""
        found = (_STATUS.match(data) for data in self.written)
        return [int(match.group(1)) for match in found if match is not None]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.address, 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        return

    def pause_reading(self) -> None:
        return

    def resume_reading(self) -> None:
        return


@dataclass(frozen=True, slots=True)
class Step:
    """One request of the boot, as bench/boot.py's SEQUENCE writes it."""

    method: str
    path: str  # {mac} stands for the phone's MAC
    stage: str  # ends the User-Agent: Updater, Application
    body_bytes: int
    statuses: frozenset[int]  # what it may be answered (its comment's statuses)


class FixedService:
    """A service (serve/http/messages.py's) that answers a PUT 204 and a GET 404 and records
    nothing: with it, HttpProtocol's framing alone, the baseline between the bare protocol and
    fleetkey's service."""

    def answer_now(self, request: Request) -> Response:
        return Response(204 if request.method == "PUT" else 404)

    def body_limit(self, method: str, target: bytes) -> int:
        return 4096 if method == "PUT" else 0

    async def handle(self, request: Request) -> Response:
        return self.answer_now(request)

    def finished(self, request: Request, response: Response, sent: int) -> None:
        return

    def refused(
        self, method: str, target: bytes, remote: str | None, secure: bool, response: Response
    ) -> None:
        return


def fixed_answer(step: Step, phone: int) -> frozenset[int]:
    """What FixedService answers."""
    return frozenset({204 if step.method == "PUT" else 404})


def steps_of(sequence: str) -> list[Step]:
    """bench/boot.py's SEQUENCE, a step a line."""
    steps = []
    for line in sequence.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields, _, comment = line.partition("#")
        method, path, stage, body = fields.split()
        expected = frozenset(int(status) for status in re.findall(r"\b\d{3}\b", comment))
        steps.append(Step(method, path, stage, int(body), expected))
    return steps


def requests_of(steps: list[Step], phone: int) -> list[bytes]:
    """One phone's boot as bench/bootload.c sends it (a quarter of the phones tag their MAC)."""
    mac = f"0004f2{phone:06x}"
    tagged = (((phone * 2654435761) & 0xFFFFFFFF) >> 8) % 10000 < 2500
    out = []
    for step in steps:
        stage = step.stage
        agent = f"{AGENT} (SN:{mac}) Type/{stage}" if tagged else f"{AGENT} Type/{stage}"
        head = (
            f"{step.method} {step.path.replace('{mac}', mac)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"User-Agent: {agent}\r\nAccept: */*\r\n"
        )
        if step.method == "PUT":
            head += f"Content-Type: text/plain\r\nContent-Length: {step.body_bytes}\r\n"
        out.append((head + "\r\n").encode() + b"x" * step.body_bytes)
    return out


def address_of(phone: int) -> str:
    """Each phone from an address of its own, spread as bench/bootload.c spreads them (its
    second byte is bootload's --net; the cost does not depend on it)."""
    return f"127.{1 + phone // 62500}.{phone // 250 % 250 + 1}.{phone % 250 + 1}"


class ServiceClock:
    """Wraps the service's entry points that run on the caller's turn (``answer_now``,
    ``finished``, ``body_limit``) and sums the loop thread's CPU spent in them (``spent_s``).

    A wrapped call costs two reads of the thread's CPU clock (system calls here): ``overhead_s``
    is what a wrapped call of nothing costs more than the call itself, measured with that clock;
    about half of it falls between the two reads, in ``spent_s``, and is taken out of the
    service's share, all of it out of the request's. ``handle`` (an upload on a worker thread,
    a first Basic login) spans awaits and is only counted, in ``awaited``: the run refuses to
    report when anything went through it."""

    def __init__(self, service: Any) -> None:
        self.spent_s = 0.0
        self.calls = 0
        self.awaited = 0
        self.overhead_s = self._calibrate()
        for name in ("answer_now", "finished", "body_limit"):
            setattr(service, name, self._timed(getattr(service, name)))
        handle = service.handle

        async def counted_handle(request: Any) -> Any:
            self.awaited += 1
            return await handle(request)

        service.handle = counted_handle

    def _timed(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            self.calls += 1
            start = time.thread_time()
            try:
                return call(*args)
            finally:
                self.spent_s += time.thread_time() - start

        return timed

    def _calibrate(self, rounds: int = 20_000) -> float:
        def nothing() -> None:
            return

        wrapped = self._timed(nothing)
        costs = []
        for call in (nothing, wrapped, nothing, wrapped):
            start = time.thread_time()
            for _ in range(rounds):
                call()
            costs.append((time.thread_time() - start) / rounds)
        self.spent_s = 0.0
        self.calls = 0
        return max(0.0, min(costs[1], costs[3]) - min(costs[0], costs[2]))


async def measure(base: Path, phones: int, rounds: int) -> dict[str, Any]:
    """The fleet in ``base`` served as ``fleetkey serve`` serves it (its interpreter settings
    too), every phone booting once first (its logs stored, its address named), then ``rounds``
    times measured; medians by step and the boot's mean (of the step medians)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # as ServerRunner.run and _main set them
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as bench/boot.py's server
    steps = steps_of((base / "sequence.txt").read_text())
    data = DataDir(base / "data")
    store = Store(f"sqlite:///{data.root / 'fleetkey.db'}")
    places = Places(
        tree=data.provisioning,
        uploads=data.root / "uploads",
        unwritten=data.root / "fetches-unwritten.jsonl",
        held=data.root / "fetches-held.jsonl",
    )
    runner = ServerRunner(store, places, SystemClock(), ServeSettings())
    if runner.http.threaded_uploads:
        raise SystemExit(f"{places.uploads} is on a network filesystem: uploads go to threads")
    runner.writer.start()
    runner.gate.start(asyncio.get_running_loop())
    timed = ServiceClock(runner.http)
    connections = Connections(runner.settings.connections)
    boots = [requests_of(steps, phone) for phone in range(phones)]
    per_round: list[dict[str, list[Any]]] = []
    interleaved: list[float] = []
    writer: list[float] = []
    framing: list[float] = []
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        await _boot_all(runner, connections, boots, steps, timed, measured=False)  # a first boot
        for _ in range(rounds):
            per_round.append(
                await _boot_all(runner, connections, boots, steps, timed, measured=True)
            )
            loop_us, writer_us = await _boot_interleaved(
                runner.http, connections, boots, steps, timed, measured_answer
            )
            interleaved.append(loop_us)
            writer.append(writer_us)
            framing_us, _ = await _boot_interleaved(
                FixedService(), connections, boots, steps, timed, fixed_answer
            )
            framing.append(framing_us)
    finally:
        runner.gate.stop()
        runner.writer.close()
    if timed.awaited:
        raise SystemExit(f"{timed.awaited} requests were answered across awaits: not measured")
    total = [statistics.median(r["total"][i] for r in per_round) for i in range(len(steps))]
    service = [statistics.median(r["service"][i] for r in per_round) for i in range(len(steps))]
    floor = [statistics.median(r["floor"][i] for r in per_round) for i in range(len(steps))]
    statuses = per_round[-1]["statuses"]
    return {
        "phones": phones,
        "rounds": rounds,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "steps": [
            {
                "method": method,
                "path": path,
                "status": "/".join(str(s) for s in sorted(set(statuses[i]))),
                "floor_us": floor[i],
                "total_us": total[i],
                "service_us": service[i],
                "protocol_us": total[i] - service[i],
            }
            for i, (method, path) in enumerate((step.method, step.path) for step in steps)
        ],
        "mean": {
            "floor_us": statistics.fmean(floor),
            "total_us": statistics.fmean(total),
            "service_us": statistics.fmean(service),
            "protocol_us": statistics.fmean(total) - statistics.fmean(service),
            "rounds_total_us": [statistics.fmean(r["total"]) for r in per_round],
            "interleaved_us": statistics.median(interleaved),
            "rounds_interleaved_us": interleaved,
            "writer_interleaved_us": statistics.median(writer),
            "framing_interleaved_us": statistics.median(framing),
        },
        "connection_us": statistics.median(r["connection"][0] for r in per_round),
        "timer_overhead_us": timed.overhead_s * 1e6,
        "commits_waited": runner.gate.committed,
        "sent_without_commit": runner.gate.uncommitted,
    }


def _connect(
    service: Any, phones: range, connections: Connections
) -> tuple[list[HttpProtocol], list[KeepingTransport]]:
    """A connection a phone of the batch, each from the phone's own address."""
    limits = RequestLimits()
    transports = [KeepingTransport(address_of(phone)) for phone in phones]
    protocols = [HttpProtocol(service, limits, connections) for _ in phones]
    for protocol, transport in zip(protocols, transports, strict=True):
        protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocols, transports


async def _answered(protocols: list[HttpProtocol]) -> None:
    """Until every answer waiting for its record's commit (serve/commits.py) is written."""
    waiting = [protocol._worker for protocol in protocols if protocol._worker is not None]
    await asyncio.gather(*(worker for worker in waiting if not worker.done()))


def _check(
    phones: range,
    transports: list[KeepingTransport],
    steps: list[Step],
    check: Callable[[Step, int], frozenset[int]],
) -> list[list[int]]:
    """Each phone's statuses, step by step; the run ends at a missing or a wrong answer."""
    answered = []
    for phone, transport in zip(phones, transports, strict=True):
        statuses = transport.statuses
        if len(statuses) != len(steps):
            raise SystemExit(f"phone {phone}: {len(statuses)} answers to {len(steps)} requests")
        for step, status in zip(steps, statuses, strict=True):
            if status not in check(step, phone):
                raise SystemExit(f"phone {phone}: {step.method} {step.path} answered {status}")
        answered.append(statuses)
    return answered


async def _boot_all(
    runner: ServerRunner,
    connections: Connections,
    boots: list[list[bytes]],
    steps: list[Step],
    timed: ServiceClock,
    *,
    measured: bool,
) -> dict[str, list[Any]]:
    """Every phone boots once, BATCH phones at a time, step by step; CPU a request by step, in
    µs, and (``measured``) the bare protocol's on the same bytes. A step's time runs until every
    answer of the batch is written: an answer that waits for its record's commit is finished in
    it too. Each phone's answers are checked (``expected``)."""
    count = len(steps)
    total, service, bare = [0.0] * count, [0.0] * count, [0.0] * count
    statuses: list[list[int]] = [[] for _ in range(count)]
    connection = 0.0
    check = measured_answer if measured else first_answer
    for first in range(0, len(boots), BATCH):
        phones = range(first, min(first + BATCH, len(boots)))
        start = time.thread_time()
        protocols, transports = _connect(runner.http, phones, connections)
        connection += time.thread_time() - start
        for step in range(count):
            await asyncio.sleep(0)  # what the writer's thread queued meanwhile runs untimed
            before, calls = timed.spent_s, timed.calls
            start = time.thread_time()
            for protocol, phone in zip(protocols, phones, strict=True):
                protocol.data_received(boots[phone][step])
            await _answered(protocols)
            wrapped = (timed.calls - calls) * timed.overhead_s
            total[step] += time.thread_time() - start - wrapped
            service[step] += timed.spent_s - before - wrapped / 2
        start = time.thread_time()
        for protocol in protocols:
            protocol.connection_lost(None)
        connection += time.thread_time() - start
        for answered in _check(phones, transports, steps, check):
            for step, status in enumerate(answered):
                statuses[step].append(status)
        if measured:
            floors = [BareProtocol() for _ in phones]
            for bare_protocol, phone in zip(floors, phones, strict=True):
                bare_protocol.connection_made(KeepingTransport(address_of(phone)))
            for step in range(count):
                start = time.thread_time()
                for bare_protocol, phone in zip(floors, phones, strict=True):
                    bare_protocol.data_received(boots[phone][step])
                bare[step] += time.thread_time() - start
    scale = 1e6 / len(boots)
    return {
        "total": [value * scale for value in total],
        "service": [value * scale for value in service],
        "floor": [value * scale for value in bare],
        "statuses": statuses,
        "connection": [connection * scale],
    }


async def _boot_interleaved(
    service: Any,
    connections: Connections,
    boots: list[list[bytes]],
    steps: list[Step],
    timed: ServiceClock,
    check: Callable[[Step, int], frozenset[int]],
) -> tuple[float, float]:
    """Every phone boots once more, BATCH at a time, each phone of a batch starting at another
    step (phone k at step k mod 11 of the boot's first turn), as phones booting at once are
    found at every step of their boot: the loop thread's CPU a request, in µs, connections
    included (the step-by-step passes run each step's code 64 times in a row, caches warm); and
    the record writer's thread's CPU a request meanwhile."""
    count = len(steps)
    spent, calls, writer = 0.0, timed.calls, writer_cpu_s()
    for first in range(0, len(boots), BATCH):
        phones = range(first, min(first + BATCH, len(boots)))
        start = time.thread_time()
        protocols, transports = _connect(service, phones, connections)
        spent += time.thread_time() - start
        for turn in range(2 * count - 1):
            await asyncio.sleep(0)
            start = time.thread_time()
            for offset, (protocol, phone) in enumerate(zip(protocols, phones, strict=True)):
                step = turn - offset % count
                if 0 <= step < count:
                    protocol.data_received(boots[phone][step])
            await _answered(protocols)
            spent += time.thread_time() - start
        start = time.thread_time()
        for protocol in protocols:
            protocol.connection_lost(None)
        spent += time.thread_time() - start
        _check(phones, transports, steps, check)
    spent -= (timed.calls - calls) * timed.overhead_s  # the service's timers
    scale = 1e6 / (len(boots) * count)
    return spent * scale, (writer_cpu_s() - writer) * scale


def measured_answer(step: Step, phone: int) -> frozenset[int]:
    """What fleetkey must answer ``phone`` at ``step`` in a measured boot."""
    return expected(step, phone, measured=True)


def first_answer(step: Step, phone: int) -> frozenset[int]:
    """What fleetkey must answer ``phone`` at ``step`` in its first boot (its logs are new)."""
    return expected(step, phone, measured=False)


def writer_cpu_s() -> float:
    """The record writer's thread's CPU so far (it shares the loop's core)."""
    for thread in threading.enumerate():
        if thread.name == "fleetkey-fetch-writer" and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    raise SystemExit("the record writer's thread is not running")


def expected(step: Step, phone: int, *, measured: bool) -> frozenset[int]:
    """What ``phone`` must get at ``step``: a measured PUT replaces (204); a phone license
    exists for every tenth phone (bench/boot.py's build_fleet); else the boot's statuses."""
    if step.method == "PUT" and measured:
        return frozenset({204})
    if step.path == "/{mac}-license.cfg":
        return frozenset({200 if phone % 10 == 0 else 404})
    return step.statuses


def main() -> None:
    """FOLDER PHONES ROUNDS: the JSON of ``measure``."""
    base, phones, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(uvloop.run(measure(base, phones, rounds))))


if __name__ == "__main__":
    main()
