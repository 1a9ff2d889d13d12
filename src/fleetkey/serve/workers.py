"""``fleetkey serve --workers N``: N serving processes on the same addresses, one supervisor.

The supervisor binds every listener before any worker exists (a port in use is said once, and
nothing starts): one socket per worker on the same port with ``SO_REUSEPORT``, so the kernel
spreads connections (TCP: HTTP, HTTPS, FTP's control connections) and request datagrams
(TFTP) over the workers, every request of one address to the same worker
(serve/steering.py). An FTP session's passive listeners are its worker's own, bound to a
port no other socket listens on, so its data connection reaches that worker. It keeps those
sockets open while it runs and forks the workers, each of which serves its own socket: when
a worker dies its socket stays bound, what arrives meanwhile waits in its queue, and the
worker started in its place (at once; after a pause if it died young) answers it.

Each worker is a whole ``ServerRunner`` with its own record writer, view and counters: on
PostgreSQL each writes on its own connection, on SQLite the writers take turns at the
database's write lock (WAL, busy timeout), in batches of a second, on their threads, never on
an event loop (docs/serve.md has the measurement). The supervisor forwards SIGTERM and SIGINT
to every worker, which stops gracefully (answers finish, every record is written), waits for
them all, and sums what they did (serve/pool.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from fleetkey.errors import FleetkeyError
from fleetkey.serve.listen import listen_error
from fleetkey.serve.steering import steer

log = logging.getLogger(__name__)

MAX_WORKERS: Final = 64  # more processes than this serve no fleet better on one machine
START_S: Final = 120.0  # how long the first workers may take to listen
STOP_S: Final = 300.0  # a worker still stopping after this is killed
YOUNG_S: Final = 2.0  # a worker that dies sooner is started again only after PAUSE_S
PAUSE_S: Final = 1.0
BACKLOG: Final = 4096
PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h: a signal when the parent dies
SIGNALS: Final = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)

Sockets = Mapping[str, socket.socket]
# the work of worker i: serve on its sockets, call ready() once listening, return an exit code
Work = Callable[[int, Sockets, Callable[[], None]], int]


@dataclass(frozen=True, slots=True)
class Listener:
    scheme: str  # http, https, tftp, ftp
    host: str
    port: int  # the port bound (port 0 asked: the one the kernel chose)
    sockets: tuple[socket.socket, ...]  # one per worker


def bind_listeners(
    addresses: Mapping[str, tuple[str, int] | None],
    workers: int,
    proxies: Iterable[object] = (),
) -> dict[str, Listener]:
    """Bind every listener for ``workers`` workers, each address's requests steered to one
    worker (serve/steering.py; ``proxies``: the trusted proxies, left to the kernel's hash); a
    failure closes what was bound and raises serve/listen.py's :class:`ListenError`."""
    bound: dict[str, Listener] = {}
    try:
        for scheme, address in addresses.items():
            if address is not None:
                bound[scheme] = _bind(scheme, *address, workers)
                many = bound[scheme].sockets
                if len(many) > 1 and not steer(many[0], len(many), proxies):
                    log.warning("%s: requests are spread by the kernel's hash", scheme.upper())
    except BaseException:
        close_listeners(bound)
        raise
    return bound


def close_listeners(bound: Mapping[str, Listener]) -> None:
    for listener in bound.values():
        for sock in listener.sockets:
            sock.close()


def _bind(scheme: str, host: str, port: int, count: int) -> Listener:
    kind = socket.SOCK_DGRAM if scheme == "tftp" else socket.SOCK_STREAM
    made: list[socket.socket] = []
    try:
        family = socket.getaddrinfo(host, port, type=kind)[0][0]
        # bound alone first, without SO_REUSEPORT: a port another program holds (another
        # fleetkey serve --workers included) is refused here instead of being shared
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
        for _ in range(count):
            sock = socket.socket(family, kind)
            made.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError as exc:
        for sock in made:
            sock.close()
        raise listen_error(scheme.upper(), host, port, exc, field=scheme) from exc
    return Listener(scheme, host, port, tuple(made))


@dataclass
class _Worker:
    index: int
    pid: int
    started: float  # time.monotonic()
    report: int | None  # read end of its report pipe until it said ready (or failed)
    ready: bool = False


class Supervisor:
    """Start ``count`` workers doing ``work`` on ``listeners``; ``run`` until a signal."""

    def __init__(
        self,
        count: int,
        listeners: Mapping[str, Listener],
        work: Work,
        retire: Callable[[int, int], None],
    ) -> None:
        self.count, self.listeners, self.work, self.retire = count, listeners, work, retire
        self.workers: dict[int, _Worker] = {}  # by pid
        self.restarts = 0
        self._wake = os.pipe()
        self._status: dict[int, int] = {}  # wait statuses of ended workers, by pid
        self._pid = os.getpid()

    def run(self, started: Callable[[], None]) -> None:
        """Start the workers, call ``started`` once all listen, supervise until SIGTERM or
        SIGINT, then stop them all. A worker that fails to start stops the others and its
        error is raised here."""
        for fd in self._wake:
            os.set_blocking(fd, False)
        previous = {s: signal.signal(s, _noted) for s in SIGNALS}
        signal.set_wakeup_fd(self._wake[1])
        try:
            for index in range(self.count):
                self._start(index)
            failure = self._await_ready()
            if failure is not None:
                self._stop()
                raise failure
            started()
            while not self._signalled({signal.SIGTERM, signal.SIGINT}):
                self._reap(restart=True)
            self._stop()
        finally:
            signal.set_wakeup_fd(-1)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for fd in self._wake:
                os.close(fd)

    def _start(self, index: int) -> None:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover  # the worker (its tests run it as a process)
            os.close(read)
            self._become_worker(index, write)
        os.close(write)
        self.workers[pid] = _Worker(index, pid, time.monotonic(), read)
        log.info("worker %d started (pid %d)", index + 1, pid)

    def _become_worker(self, index: int, report: int) -> None:  # pragma: no cover
        code = 70  # EX_SOFTWARE: an unexpected failure
        try:
            signal.set_wakeup_fd(-1)
            for fd in self._wake:
                os.close(fd)
            for signum in SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            _die_with_parent(self._pid)
            mine = {}
            for scheme, listener in self.listeners.items():
                for number, sock in enumerate(listener.sockets):
                    if number == index:
                        mine[scheme] = sock
                    else:
                        sock.close()

            def ready() -> None:
                os.write(report, b'{"ready": true}\n')

            code = self.work(index, mine, ready)
        except FleetkeyError as exc:
            said = {"error": exc.message, "hint": exc.hint, "field": exc.field}
            with contextlib.suppress(OSError):
                os.write(report, json.dumps(said).encode() + b"\n")
            code = 1
        except BaseException:  # noqa: BLE001  # the worker's outer edge: said, and exit 70
            traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _await_ready(self) -> FleetkeyError | None:
        deadline = time.monotonic() + START_S
        while not all(w.ready for w in self.workers.values()):
            if self._signalled({signal.SIGTERM, signal.SIGINT}):
                return FleetkeyError("stopped by a signal before every worker listened")
            for worker in list(self.workers.values()):
                failure = self._heard(worker)
                if failure is not None:
                    return failure
            for pid in self._ended():
                worker = self.workers.pop(pid)
                failure = self._heard(worker)  # what it said before it ended
                self.retire(worker.index, pid)
                return failure or FleetkeyError(
                    f"worker {worker.index + 1} ended before it listened",
                    hint="its error is above (run with --debug for the traceback)",
                )
            if time.monotonic() > deadline:
                return FleetkeyError(f"the workers did not listen within {START_S:.0f} s")
        return None

    def _heard(self, worker: _Worker) -> FleetkeyError | None:
        """Read what a starting worker said, if anything: None, or its start-up error."""
        if worker.report is None:
            return None
        try:
            said = os.read(worker.report, 65536)
        except BlockingIOError:
            return None
        os.close(worker.report)
        worker.report = None
        if not said:
            return None  # it ended: _ended says so
        message = json.loads(said.decode().splitlines()[0])
        if message.get("ready"):
            worker.ready = True
            return None
        return FleetkeyError(message["error"], hint=message["hint"], field=message["field"])

    def _signalled(self, wanted: set[int]) -> bool:
        """Wait up to a second for a signal or a report; whether one of ``wanted`` came."""
        reports = [w.report for w in self.workers.values() if w.report is not None]
        for fd in reports:
            os.set_blocking(fd, False)
        readable, _, _ = select.select([self._wake[0], *reports], [], [], 1.0)
        came: set[int] = set()
        if self._wake[0] in readable:
            with contextlib.suppress(BlockingIOError):
                came = set(os.read(self._wake[0], 1024))
        return bool(came & wanted)

    def _ended(self) -> list[int]:
        ended = []
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # every child reaped
                break
            if pid == 0:
                break
            if pid in self.workers:
                ended.append(pid)
                self._status[pid] = status
        return ended

    def _reap(self, *, restart: bool) -> None:
        for worker in list(self.workers.values()):
            failure = self._heard(worker)
            if failure is not None:
                log.error("worker %d could not start: %s", worker.index + 1, failure)
        for pid in self._ended():
            worker = self.workers.pop(pid)
            if worker.report is not None:
                os.close(worker.report)
            self.retire(worker.index, pid)
            status = self._status.pop(pid)
            if not restart:
                continue
            how = (
                f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
                if os.WIFSIGNALED(status)
                else f"exited {os.waitstatus_to_exitcode(status)}"
            )
            log.warning("worker %d (pid %d) %s: starting another", worker.index + 1, pid, how)
            if time.monotonic() - worker.started < YOUNG_S:
                time.sleep(PAUSE_S)  # it died young: no fork loop
            self.restarts += 1
            self._start(worker.index)

    def _stop(self) -> None:
        """SIGTERM every worker, let go of the listeners (each closes when its worker has),
        wait for them all; one still stopping after ``STOP_S`` is killed."""
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        close_listeners(self.listeners)
        deadline = time.monotonic() + STOP_S
        while self.workers:
            if time.monotonic() > deadline:
                for pid in self.workers:
                    log.error("worker pid %d did not stop within %.0f s: killed", pid, STOP_S)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            self._signalled(set())
            self._reap(restart=False)


def _noted(signum: int, frame: object) -> None:
    """The handler of the supervisor's signals: the wake-up pipe carries them to its loop."""


def _die_with_parent(supervisor: int) -> None:  # pragma: no cover  # in the worker
    """Have the kernel send SIGTERM when the supervisor dies (killed), so no worker serves on
    alone; Linux only (prctl), elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # the supervisor was gone already
        os._exit(0)
