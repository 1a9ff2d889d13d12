"""The running provisioning server: built from settings, started, kept fresh, stopped cleanly.

:class:`ServerRunner` owns everything ``fleetkey serve`` runs (like aiohttp's ``AppRunner``):
the record writer, the in-memory view and the tree index, the pipeline and the recorder, the
HTTP(S), TFTP and FTP(S) adapters, the loop that writes sightings and refreshes the view every
second and rescans the tree's master configurations every few seconds, signals, and the
graceful stop (answers in flight finish; every fetch record and sighting is written before
``run`` returns).
The CLI parses its options into :class:`ServeSettings`, mounts the admin API, calls ``run`` and
renders what it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import uvloop

from fleetkey.clock import Clock
from fleetkey.errors import InputError
from fleetkey.serve import observe, spares
from fleetkey.serve.addresses import HOLD_S, Addresses
from fleetkey.serve.commits import CommitGate
from fleetkey.serve.content import ContentKind
from fleetkey.serve.fetching import Pipeline, UnknownPolicy
from fleetkey.serve.ftp.server import FtpSettings, ftp_alongside, serve_ftp
from fleetkey.serve.health import DatabaseProbe
from fleetkey.serve.http.asgi import App, AsgiMount
from fleetkey.serve.http.auth import AuthMode, DeviceAuth
from fleetkey.serve.http.connections import ConnectionLimits, Connections
from fleetkey.serve.http.phones import AdmissionLimits, PhoneService, Policies
from fleetkey.serve.http.server import serve_http
from fleetkey.serve.layout import SCAN_EVERY_S, LayoutScanner
from fleetkey.serve.proxies import Network, TrustedProxies
from fleetkey.serve.recorder import Recorder
from fleetkey.serve.tftp.server import TftpServer, TftpSettings, serve_tftp
from fleetkey.serve.tree import FileTree
from fleetkey.serve.view import REFRESH_S, LiveView
from fleetkey.store.fetches import StoreSink
from fleetkey.store.store import Store
from fleetkey.store.writer import CAPACITY, SPILL_AT, FetchWriter

log = logging.getLogger(__name__)

API_BODY_BYTES: Final = 1024 * 1024
OPERATOR_PREFIXES: Final = (b"/api/", b"/metrics", b"/healthz", b"/ui/")
# the root and /ui exactly (a query allowed) go to the dashboard: tree files named ui* do not
OPERATOR_PATHS: Final = (b"/", b"/ui")
FORGET_EVERY_S: Final = 60.0  # addresses not heard from within the hold time are dropped
GC_THRESHOLDS: Final = (10_000, 20, 100)  # young-generation passes 14x rarer than Python's default
# how long the record writer may keep the GIL while the event loop waits for it (Python's
# default is 5 ms): a batch's Python work runs in shorter slices, answers wait less
# (docs/serve.md: keep-alive p99 11-15 -> 8-10 ms, same throughput)
SWITCH_INTERVAL_S: Final = 0.0005


@dataclass(frozen=True, slots=True)
class Places:
    """Where the server reads and writes on disk."""

    tree: Path  # the provisioning tree
    uploads: Path  # files phones write, per MAC
    unwritten: Path  # fetch records the store refused at a stop, for fetches replay
    held: Path  # fetch records held while the store refuses, written first when it is back


@dataclass(frozen=True, slots=True)
class ServeSettings:
    http: tuple[str, int] | None = ("127.0.0.1", 8080)
    https: tuple[str, int] | None = None
    tls: ssl.SSLContext | None = None  # with https
    tftp: tuple[str, int] | None = None
    tftp_settings: TftpSettings = field(default_factory=TftpSettings)
    ftp: tuple[str, int] | None = None
    ftp_settings: FtpSettings = field(default_factory=FtpSettings)
    auth: AuthMode = AuthMode.OFF
    unknown: UnknownPolicy = UnknownPolicy.SERVE
    register_site: str | None = None
    trusted_proxies: tuple[Network, ...] = ()
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    address_hold_s: float = HOLD_S
    record_queue: int = CAPACITY  # fetch records in memory before phones are answered busy
    # listening sockets bound already, by scheme (serve --workers: the supervisor's, bound
    # once for every worker on the same port); a scheme not in it is bound by its listener
    listeners: Mapping[str, socket.socket] = field(default_factory=dict)
    auth_secret: bytes | None = None  # Digest nonces' key (serve --workers: one for all)


@dataclass(frozen=True, slots=True)
class Totals:
    """What a run did, for the line ``fleetkey serve`` prints when it stops."""

    requests: int  # HTTP(S) answers, operator requests included
    busy: int  # HTTP 503s
    tftp_transfers: int | None  # None: TFTP was not served
    written: int  # fetch records
    not_recorded: int
    ftp_transfers: int | None = None  # None: FTP was not served
    ftp_refused: int | None = None  # connections answered 421 at admission; None: no FTP

    @property
    def complete(self) -> bool:
        return self.not_recorded == 0


Announce = Callable[[str, str, int], None]  # scheme, host, port: a listener is ready


class ServerRunner:
    """Build with the store, the places and the settings; ``mount`` the API; ``run``."""

    def __init__(self, store: Store, places: Places, clock: Clock, settings: ServeSettings):
        if not (settings.http or settings.https or settings.tftp or settings.ftp):
            raise InputError("nothing to serve: no HTTP, HTTPS, TFTP or FTP address")
        if settings.https is not None and settings.tls is None:
            raise InputError("HTTPS needs a certificate and key")
        self.store, self.places, self.clock, self.settings = store, places, clock, settings
        queue = settings.record_queue
        self.writer = FetchWriter(
            StoreSink(store.engine),
            capacity=queue,
            fallback=places.unwritten,
            spill=places.held,
            spill_at=min(SPILL_AT, queue // 4),
        )
        places.uploads.mkdir(mode=0o700, exist_ok=True)  # phones' files: private, as keys
        if places.unwritten.exists() and places.unwritten.stat().st_size == 0:
            places.unwritten.unlink()  # an earlier run's empty leftover holds nothing
        if places.unwritten.exists():
            log.warning(
                "%s holds fetch records an earlier run could not write: "
                "`fleetkey fetches replay %s` writes them to the store",
                places.unwritten,
                places.unwritten,
            )
        self.view = LiveView(store)
        self.view.refresh()
        self.probe = DatabaseProbe(store)  # /healthz's database question (serve/health.py)
        site = settings.register_site
        if site is not None and site not in self.view.view.sites:
            raise InputError(
                f"registration site {site} is not a site", hint="add it with `fleetkey sites add`"
            )
        if settings.unknown is UnknownPolicy.REGISTER and site is None:
            log.info("unknown phones register only through /<site>/ paths (no registration site)")
        self.auth = DeviceAuth(settings.auth, self.view.credentials, secret=settings.auth_secret)
        self.tree = FileTree(places.tree)
        self.uploads = FileTree(places.uploads, kind=ContentKind.UPLOAD)
        self._layout = LayoutScanner(places.tree)
        self.pipeline = Pipeline(
            self.view,
            self.tree,
            self.uploads,
            addresses=Addresses(settings.address_hold_s),
            policy=settings.unknown,
            register_site=site,
            logins_required=self.auth.enabled,
        )
        self.pipeline.layout = self._layout.scan()
        self.gate = CommitGate(self.writer)  # license answers wait for their record's commit
        self.recorder = Recorder(
            self.writer, clock, self.view, queue_capacity=queue, gate=self.gate
        )
        self.http = PhoneService(
            self.pipeline,
            self.recorder,
            uploads=places.uploads,
            admission=settings.admission,
            policies=Policies(auth=self.auth, proxies=TrustedProxies(settings.trusted_proxies)),
        )
        self.connections = Connections(settings.connections)
        self.tftp = (
            TftpServer(
                self.pipeline,
                self.recorder,
                places.uploads,
                settings.tftp_settings,
                settings.tftp[0],
                trash=self.http.trash,
            )
            if settings.tftp is not None
            else None
        )
        self.ftp = (
            None
            if settings.ftp is None
            else ftp_alongside(
                self.pipeline,
                self.recorder,
                self.writer,
                clock,
                self.view,
                queue_capacity=queue,
                uploads=places.uploads,
                settings=settings.ftp_settings,
                gate=self.gate,
                trash=self.http.trash,
            )
        )
        if self.tftp is not None and self.auth.enabled:
            log.warning(
                "per-device authentication is on: TFTP cannot log in, so it serves only "
                "shared files (license files and per-phone files are refused over TFTP)"
            )
        self._started = time.time()
        self._failing: set[str] = set()  # background work failing now (logged once)
        self.tick: Callable[[], object] | None = None  # on the loop every second (serve/pool.py)
        self.failures: dict[str, int] = {}  # background work's failures, by what it was
        self.pruned = 0  # fetch records the retention removed (store/pruner.py)

    def mount(self, app: App) -> None:
        """Serve ``app`` (admin API, dashboard) at ``/api/``, ``/ui``, ``/``, ``/metrics``."""
        mount = AsgiMount(app, OPERATOR_PREFIXES, API_BODY_BYTES, exact=OPERATOR_PATHS)
        self.http.mount(mount)

    def status(self) -> dict[str, Any]:
        """The running server's counters, for the admin API's status."""
        return observe.status(self)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the server records what it answers now, and what it knows about that."""
        return observe.health(self)

    def metrics(self) -> Callable[[], bytes]:
        """The Prometheus exposition of this server, rendered at each call."""
        return observe.metrics(self)

    def _not_recorded(self) -> int:
        return observe.not_recorded(self)

    def run(self, announce: Announce) -> Totals:
        """Serve until SIGTERM or SIGINT; then stop gracefully and say what was done."""
        self.writer.start()
        if self.http.trash is not None:  # replaced uploads freed off the loop (serve/trash.py)
            self.http.trash.start()
            # and logs written into spares (serve/spares.py), where leases are granted
            self.http.trash.spares = spares.usable(self.http.trash.folder)
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            uvloop.run(self._main(announce))
        finally:
            sys.setswitchinterval(switch_interval)
            self.writer.close()
            if self.http.trash is not None:
                self.http.trash.close()
        return self.totals()

    def totals(self) -> Totals:
        """What this server has done so far (all of it once ``run`` has returned)."""
        tftp = self.tftp
        return Totals(
            requests=self.http.requests,
            busy=self.http.rejected,
            tftp_transfers=(
                sum(n for (p, _, _), n in self.recorder.answers.items() if p == "tftp")
                if tftp is not None
                else None
            ),
            ftp_transfers=sum(dict(self.ftp.recorder.answers).values()) if self.ftp else None,
            ftp_refused=self.ftp.counters.refused if self.ftp else None,
            written=self.writer.written,
            not_recorded=self._not_recorded(),
        )

    async def _main(self, announce: Announce) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        self.gate.start(loop)
        if self.tick is not None:  # a first snapshot before any listener (serve/pool.py)
            self.tick()
        refresher = loop.create_task(self._keep_fresh(stop))
        sweeper = loop.create_task(self.connections.keep_swept(stop))
        # what start-up built (modules, the app, the in-memory view) lives as long as the
        # server: keep it out of the collector's full passes, which a stream of fetch records
        # waiting for their batch otherwise triggers every few seconds (docs/serve.md)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        settings = self.settings
        servers = []
        for scheme, address, tls in (
            ("http", settings.http, None),
            ("https", settings.https, settings.tls),
        ):
            if address is not None:
                servers.append(
                    serve_http(
                        self.http,
                        *address,
                        stop=stop,
                        ready=_ready(announce, scheme),
                        connections=self.connections,
                        tls=tls,
                        sock=settings.listeners.get(scheme),
                    )
                )
        if self.tftp is not None and settings.tftp is not None:
            tftp = settings.listeners.get("tftp")
            ready = _ready(announce, "tftp")
            servers.append(serve_tftp(self.tftp, *settings.tftp, stop=stop, ready=ready, sock=tftp))
        if self.ftp is not None and settings.ftp is not None:
            ftp, ready = settings.listeners.get("ftp"), _ready(announce, "ftp")
            servers.append(serve_ftp(self.ftp, *settings.ftp, stop=stop, ready=ready, sock=ftp))
        listeners = [loop.create_task(server) for server in servers]
        try:
            await asyncio.gather(*listeners)
        except Exception:  # one could not listen (ListenError): stop the others, then say so
            stop.set()
            await asyncio.gather(*listeners, refresher, sweeper, return_exceptions=True)
            raise
        await refresher
        await sweeper
        self.gate.stop()

    async def _quietly(self, what: str, work: Callable[..., object], *args: object) -> bool:
        """Run ``work`` off the event loop; a failure is logged once per episode (with its
        traceback), not every second, and the next success says it is over. Sightings are
        kept for the next flush and the previous view keeps being served meanwhile."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, work, *args)
        except Exception:
            self.failures[what] = self.failures.get(what, 0) + 1
            if what not in self._failing:
                self._failing.add(what)
                log.exception("%s failed; trying again every second", what)
            return False
        if what in self._failing:
            self._failing.discard(what)
            log.warning("%s works again", what)
        return True

    def _rescan(self) -> None:
        layout = self._layout.scan()
        if layout != self.pipeline.layout:
            self.pipeline.layout = layout  # one reference swapped: requests see old or new
            if self.ftp is not None:
                self.ftp.pipeline.layout = layout

    async def _keep_fresh(self, stop: asyncio.Event) -> None:
        """Every second, off the event loop: write sightings, then refresh the view; every few
        seconds rescan the master configurations; every minute forget silent addresses."""
        loop = asyncio.get_running_loop()
        scanned = forgotten = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_S):  # not wait_for (CPython gh-86296)
                    await stop.wait()
            await self._quietly(
                "writing phone sightings", self.recorder.sightings.flush, self.store, self.clock
            )
            if stop.is_set():
                return
            await self._quietly("refreshing the posted licenses", self.view.refresh)
            if self.tick is not None:
                self.tick()
            now = loop.time()
            if now - scanned >= SCAN_EVERY_S:
                scanned = now
                await self._quietly("reading the master configurations", self._rescan)
            if now - forgotten >= FORGET_EVERY_S:
                forgotten = now
                self.pipeline.addresses.forget_older(time.perf_counter())


def _ready(announce: Announce, scheme: str) -> Callable[[str, int], None]:
    def ready(host: str, port: int) -> None:
        announce(scheme, host, port)

    return ready
