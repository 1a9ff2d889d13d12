"""The FTP listener: pyftpdlib on a thread of its own, framing the fetch pipeline.

pyftpdlib runs its own poller (not asyncio), so the listener runs it on one thread, with its
own ``Pipeline`` and ``Recorder`` over the server's shared view, tree and record writer: the
event loop's pipeline and recorder keep counters and tables that are not meant for two threads,
and the writer's queue is (``collections.deque``). The thread shares the GIL with the event loop:
FTP work and HTTP/TFTP work take turns, in slices of the server's switch interval (0.5 ms).
docs/serve.md says why not a process and what this costs.

Commands: everything a phone and the usual clients use (``USER``/``PASS``, ``PASV``/``EPSV``,
``PORT``/``EPRT`` to the client's own address only, ``TYPE``, ``CWD``/``CDUP``/``PWD``,
``LIST``/``NLST``/``MLSD``/``MLST``, ``SIZE``, ``MDTM``, ``REST`` for reads, ``RETR``,
``STOR``/``APPE`` of upload names, ``ABOR``, ``QUIT``; with FTPS ``AUTH TLS``, ``PBSZ``,
``PROT``). ``DELE``, ``RNFR``/``RNTO``, ``MKD``/``RMD``, ``MFMT`` get 550 (not permitted);
``SITE`` and ``STOU`` are not offered (500).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pyftpdlib import ioloop as pyftpdlib_ioloop
from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.ioloop import Epoll
from pyftpdlib.servers import FTPServer

from fleetkey.clock import Clock
from fleetkey.serve.addresses import Addresses
from fleetkey.serve.commits import CommitGate
from fleetkey.serve.content import ContentKind
from fleetkey.serve.fetching import Pipeline
from fleetkey.serve.ftp.confirming import Confirmations
from fleetkey.serve.ftp.control import Deadlines
from fleetkey.serve.ftp.data import DataMixin
from fleetkey.serve.ftp.files import VirtualFS
from fleetkey.serve.ftp.logins import Logins, SharedLogin
from fleetkey.serve.ftp.passive import PassiveListener, ephemeral_ports
from fleetkey.serve.ftp.proxied import HEADER_S, REFUSALS, ProxiedServerMixin
from fleetkey.serve.ftp.refusing import Refusals
from fleetkey.serve.ftp.session import SessionMixin
from fleetkey.serve.listen import listen_error
from fleetkey.serve.proxies import Network
from fleetkey.serve.recorder import Recorder, RecordQueue
from fleetkey.serve.trash import Trash
from fleetkey.serve.tree import FileTree
from fleetkey.serve.uploads import Upload
from fleetkey.serve.view import ViewSource

PERMISSIONS: Final = "elrwa"  # list, read, store, append: nothing that changes the tree
THREAD_NAME: Final = "fleetkey-ftp"  # also the OS thread's (ps -L, top -H, /proc: bench/ftp.py)
PR_SET_NAME: Final = 15  # linux/prctl.h: the calling thread's name
POLL_S: Final = 0.2  # how often the FTP thread looks at the stop flag
FORGET_EVERY_S: Final = 60.0  # addresses not heard from within the hold time are dropped
BANNER: Final = "fleetkey provisioning FTP ready."
log = logging.getLogger(__name__)


class _Forward(logging.Handler):
    """pyftpdlib's warnings and errors (a transfer's traceback) as this module's records."""

    def emit(self, record: logging.LogRecord) -> None:
        log.handle(record)


# pyftpdlib logs a line per command at INFO, and configures logging itself (a stderr handler,
# process-wide logging switches) when its logger has no handler: it gets one that hands
# warnings and errors to ours, and nothing else
_pyftpdlib_log = logging.getLogger("pyftpdlib")
_pyftpdlib_log.setLevel(logging.WARNING)
_pyftpdlib_log.addHandler(_Forward())
_pyftpdlib_log.propagate = False


@dataclass(frozen=True, slots=True)
class FtpSettings:
    tls: tuple[Path, Path] | None = None  # certificate, key: explicit FTPS (AUTH TLS)
    tls_required: bool = False  # plain logins and clear data refused
    passive: tuple[int, int] | None = None  # passive ports, inclusive (None: the ephemeral)
    masquerade: str | None = None  # the address PASV names (behind NAT)
    shared_login: SharedLogin | None = None
    max_connections: int = 512  # control and data connections in all
    per_address: int = 32
    max_logins: int = 256  # sessions connected and not logged in yet (docs/serve.md: why 256)
    idle_s: float = 60.0  # a control connection without a command
    data_s: float = 30.0  # a data connection without progress, or not made
    login_delay_s: float = 1.0  # before a failed login is answered
    proxy_from: tuple[Network, ...] = ()  # PROXY headers read from these (serve.ftp.proxied)
    proxy_header_s: float = HEADER_S  # and whole within this


@dataclass(slots=True)
class FtpCounters:
    """For /metrics: plain numbers bumped on the FTP thread."""

    sessions: int = 0
    active: int = 0
    refused: int = 0  # 421: too many connections or logins in progress
    sent_bytes: int = 0
    received_bytes: int = 0
    logins: dict[str, int] = field(default_factory=dict)  # by outcome (Logins.outcomes)
    proxy_refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSALS, 0))


class _Authorizer:
    """pyftpdlib's authorizer interface over :class:`Logins`."""

    def __init__(self, logins: Logins) -> None:
        self.logins = logins

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        result = self.logins.check(username, password, handler.remote_ip)
        if not result.ok:
            handler.fk_login_refused(result)
            raise AuthenticationFailed(result.reason)
        handler.fk_logged_in(result.mac, result.shared)

    def get_home_dir(self, username: str) -> str:
        return "/"

    def has_user(self, username: str) -> bool:
        return True

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return perm in PERMISSIONS

    def get_perms(self, username: str) -> str:
        return PERMISSIONS

    def get_msg_login(self, username: str) -> str:
        return "Logged in."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


class FtpService:
    """Everything the FTP sessions share; ``serve_ftp`` runs it."""

    def __init__(
        self,
        pipeline: Pipeline,
        recorder: Recorder,
        view: ViewSource,
        uploads: Path,
        settings: FtpSettings,
        confirming: Confirmations | None = None,
        trash: Trash | None = None,
    ) -> None:
        self.pipeline, self.recorder, self.uploads, self.trash = pipeline, recorder, uploads, trash
        self.confirming = confirming  # license answers' 226 after their commit
        self.settings = settings
        self.logins = Logins(view, settings.shared_login)
        self.counters = FtpCounters(logins=self.logins.outcomes)
        self.pending_logins = 0
        self.passive_ports = settings.passive or ephemeral_ports()
        self.deadlines = Deadlines(settings.idle_s, settings.data_s)
        self.refusals = Refusals()
        self._tree = str(pipeline.tree.root)
        self.handler = self._handler_class()

    @property
    def protocols(self) -> tuple[str, ...]:
        return ("ftp", "ftps") if self.settings.tls is not None else ("ftp",)

    def _handler_class(self) -> type[Any]:
        settings = self.settings
        control: type[Any] = FTPHandler
        data: type[Any] = DTPHandler
        extra: dict[str, Any] = {}
        if settings.tls is not None:
            from OpenSSL import SSL
            from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler

            control, data = TLS_FTPHandler, TLS_DTPHandler
            extra = {
                "certfile": str(settings.tls[0]),
                "keyfile": str(settings.tls[1]),
                "tls_control_required": settings.tls_required,
                "tls_data_required": settings.tls_required,
                "ssl_context": None,
                # TLS 1.2 at least, as HTTPS; no session reuse demanded on data connections
                # (ProFTPD's rule for that broke Polycom FTPS)
                "ssl_options": SSL.OP_NO_SSLv2
                | SSL.OP_NO_SSLv3
                | SSL.OP_NO_TLSv1
                | SSL.OP_NO_TLSv1_1,
            }
        data_class = type(
            "FleetkeyData",
            (DataMixin, data),
            {"timeout": 0, "fk_direct": settings.tls is None},  # timeouts: Deadlines
        )
        commands = {
            name: spec
            for name, spec in control.proto_cmds.items()
            if not name.startswith("SITE") and name != "STOU"
        }
        handler: type[Any] = type(
            "FleetkeySession",
            (SessionMixin, control),
            {
                "service": self,
                "authorizer": _Authorizer(self.logins),
                "abstracted_fs": VirtualFS,
                "dtp_handler": data_class,
                "proto_cmds": commands,
                "banner": BANNER,
                "timeout": 0,  # serve.ftp.control: one sweep, not a timer per connection
                "auth_failed_timeout": settings.login_delay_s,
                "masquerade_address": settings.masquerade,
                "passive_dtp": PassiveListener,
                "passive_ports": None,  # PassiveListener picks them (service.passive_ports)
                "permit_foreign_addresses": False,  # PORT/EPRT: the client's own address only
                "permit_privileged_ports": False,
                "fk_cork": settings.tls is None,
                **extra,
            },
        )
        if settings.tls is not None:
            handler.get_ssl_context()  # a bad certificate or key is said at start, not later
        return handler

    def tree_directory(self, segments: tuple[str, ...]) -> list[str] | None:
        """The entries of the tree's directory at ``segments`` (checked segments), or None."""
        path = os.path.join(self._tree, *segments)
        real = os.path.realpath(path)
        if real != self._tree and not real.startswith(self._tree + os.sep):
            return None
        with contextlib.suppress(OSError):
            return os.listdir(real) if os.path.isdir(real) else None
        return None

    @property
    def not_queued(self) -> int:
        """Confirming records the writer refused (its queue full): not recorded."""
        return self.confirming.not_queued if self.confirming is not None else 0

    def upload_path(self, upload: Upload) -> str:
        return os.path.join(self.uploads, upload.mac, upload.stored)


class _Poller(Epoll):  # type: ignore[misc]  # pyftpdlib is untyped
    """pyftpdlib's epoll loop, without its stale events.

    pyftpdlib hands each event of a batch to whatever owns its descriptor when the event's turn
    comes: a socket closed earlier in the batch and a connection accepted meanwhile can share
    the number, and the new one gets the old one's event. A data connection accepted before
    its ``RETR`` takes such an event as its client leaving and closes, and the transfer waits
    for the 30-s timeout: 1 in ~500 transfers at 128 sessions, the bare pyftpdlib 2.2 too.
    Here an event goes only to the object that owned the descriptor when the batch came.
    """

    def poll(self, timeout: float | None) -> None:
        try:
            events = self._poller.poll(-1 if timeout is None else timeout)
        except InterruptedError:
            return
        owners = self.socket_map
        batch = [(event, owners.get(fd), fd) for fd, event in events]
        for event, owner, fd in batch:
            if owner is None or owners.get(fd) is not owner:
                continue  # closed meanwhile, or the descriptor is another's now
            if event & self._ERROR and not event & self.READ:
                owner.handle_close()
                continue
            if event & self.READ and owner.readable():
                pyftpdlib_ioloop.asyncore.read(owner)  # the stdlib's or its own copy
            if event & self.WRITE and owner.writable():
                pyftpdlib_ioloop.asyncore.write(owner)


class _Server(ProxiedServerMixin, FTPServer):  # type: ignore[misc]  # pyftpdlib is untyped
    """pyftpdlib's server, counting connections without its listening socket (it counted every
    descriptor of its loop, and so admitted ``max_cons - 1`` sessions: ``--ftp-max-connections
    N`` admits N) nor the commit gate's wake-up socket (``serve.ftp.confirming``)."""

    def _map_len(self) -> int:
        service = self.handler.service
        waker = service.confirming.registered if service.confirming is not None else 0
        return len(self.ioloop.socket_map) - 1 - waker


class _Listener:
    def __init__(self, service: FtpService, host: str, port: int, sock: Any = None) -> None:
        self.ioloop = _Poller()
        try:
            self.server = _Server(sock or (host, port), service.handler, self.ioloop, 512)
        except OSError as exc:
            self.ioloop.close()
            # pyftpdlib raises OSError(the bind's own error): errno and words are inside
            cause = exc.args[0] if exc.errno is None and exc.args else exc
            found = cause if isinstance(cause, OSError) else exc
            raise listen_error("FTP", host, port, found, field="ftp") from exc
        self.server.max_cons = service.settings.max_connections
        self.server.max_cons_per_ip = service.settings.per_address
        self.port = int(self.server.socket.getsockname()[1])
        self.stop = threading.Event()
        self.confirming, self.refusals = service.confirming, service.refusals
        addresses = service.pipeline.addresses  # the thread's own: forgotten on the thread
        self.ioloop.call_every(service.deadlines.every, service.deadlines.sweep)
        self.ioloop.call_every(FORGET_EVERY_S, lambda: addresses.forget_older(time.perf_counter()))
        self.ioloop.call_every(1.0, self.refusals.say_due)  # a window's 421s said at its end

    def run(self) -> None:
        _name_os_thread(THREAD_NAME)
        wait = POLL_S
        try:
            while not self.stop.is_set():  # serve_forever logs every call
                soonest = self.ioloop.loop(wait, blocking=False)  # the next timer's, if any
                wait = POLL_S if soonest is None else min(POLL_S, soonest)
        except Exception:
            log.exception("the FTP server failed; FTP is not served any more")
        finally:
            self.server.close_all()  # transfers cut here are recorded as 499
            self.refusals.flush()  # the last window's 421s, said
            if self.confirming is not None:
                self.confirming.hand_over()  # records still gathering go to the gate now


def _name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the kernel too, so its CPU can be told apart from
    the event loop's; Linux only (prctl), elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


async def serve_ftp(
    service: FtpService,
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    ready: Callable[[str, int], None],
    sock: socket.socket | None = None,
) -> None:
    """Listen (on ``sock`` if given: serve --workers) until ``stop``; sessions then end (cut)."""
    listener = _Listener(service, host, port, sock)
    if service.confirming is not None:
        service.confirming.attach(asyncio.get_running_loop(), listener.ioloop)
    thread = threading.Thread(target=listener.run, name=THREAD_NAME, daemon=True)
    thread.start()
    ready(host, listener.port)
    try:
        await stop.wait()
    finally:
        listener.stop.set()
        await asyncio.to_thread(thread.join)
        if service.confirming is not None:
            service.confirming.detach()


def ftp_alongside(
    main: Pipeline,
    recorder: Recorder,
    queue: RecordQueue,
    clock: Clock,
    view: ViewSource,
    *,
    queue_capacity: int,
    uploads: Path,
    settings: FtpSettings,
    gate: CommitGate | None = None,
    trash: Trash | None = None,
) -> FtpService:
    """The FTP service beside the event loop's ``main`` and ``recorder``: its own pipeline and
    recorder (its thread's) over the same view, tree, uploads, writer, sightings; logins only.
    ``gate``: the event loop's, which license answers' ``226`` wait on (serve.ftp.confirming)."""
    pipeline = Pipeline(
        view,
        FileTree(main.tree.root),
        FileTree(main.uploads.root, kind=ContentKind.UPLOAD),
        addresses=Addresses(main.addresses.hold_s),
        policy=main.policy,
        register_site=main.register_site,
        logins_required=True,
    )
    pipeline.layout = main.layout
    confirming = Confirmations(queue, gate) if gate is not None else None
    queued, sightings = confirming or queue, recorder.sightings
    own = Recorder(queued, clock, view, queue_capacity=queue_capacity, sightings=sightings)
    return FtpService(pipeline, own, view, uploads, settings, confirming, trash)
