"""One FTP session: its login, which phone it is, its transfers, and their fetch records.

Mixed into pyftpdlib's ``FTPHandler`` (or ``TLS_FTPHandler`` for FTPS) by ``serve.ftp.server``;
the classes' shared parts (pipeline, recorder, logins, counters) hang on ``service``.

Which phone a session is: its per-device login's; with the shared login, the MAC of the first
per-phone name it asks for (``<mac>.cfg``, ``<mac>-…``: a phone asks for its own files first),
kept for the rest of the session. The FTP pipeline requires logins (``logins_required``), so a
session gets only its own files and its own site's license, never another phone's.

Refusals (421 at admission, refused logins, ``SIZE``/``MDTM`` of refused paths) are
``serve.ftp.refusing``'s.

Every ``RETR``, ``STOR`` and ``APPE`` becomes one fetch record, refused or not, complete or not
(protocol ``ftp``, or ``ftps`` once the control channel is TLS): 200 sent, 201/204 upload
stored, 403/404 refused, 413 over the cap, 499 the client left or aborted, 503 busy.
"""

from __future__ import annotations

import asynchat
import io
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pyftpdlib.filesystems import FilesystemError

from fleetkey.errors import UploadRefusedError
from fleetkey.serve.content import Content, ContentKind
from fleetkey.serve.fetching import Ruling, shape_of
from fleetkey.serve.ftp.confirming import COMPLETE, HELD
from fleetkey.serve.ftp.files import MemoryFile, UploadBuffer, names_a_stranger
from fleetkey.serve.ftp.proxied import Arrivals
from fleetkey.serve.ftp.quick import QuickMixin
from fleetkey.serve.ftp.refusing import RETRY_S, RefusingMixin
from fleetkey.serve.recorder import ADMIT, confirms
from fleetkey.serve.uploads import store_upload

if TYPE_CHECKING:
    from fleetkey.serve.ftp.server import FtpService

_LICENSE_NAMES: Final = ("000000000000-license.cfg",)
_PYFTPDLIB: Final = logging.getLogger("pyftpdlib")


@dataclass(slots=True)
class Transfer:
    command: str  # RETR, STOR, APPE
    path: str
    ruling: Ruling
    started: float
    file: io.IOBase


class SessionMixin(QuickMixin, RefusingMixin):
    """What fleetkey adds to pyftpdlib's control-channel handler."""

    service: FtpService
    remote_ip: str
    remote_port: int
    authenticated: bool
    username: str
    fk_via: str | None = None  # a proxied session's proxy: where its data connections come from

    def __init__(self, conn: Any, server: Arrivals, ioloop: Any = None) -> None:
        super().__init__(conn, server, ioloop)  # type: ignore[call-arg]
        arriving = server.fk_arriving  # its PROXY header's client (serve.ftp.proxied)
        if arriving is not None:
            (self.remote_ip, self.remote_port), self.fk_via = arriving

    def fk_setup(self) -> None:
        self.fk_mac: str | None = None
        self.fk_shared = False
        self.fk_open: list[Transfer] = []  # opened, not ended (at most one or two)
        self.fk_counted_login = False  # counted among logins in progress
        self.fk_active = False  # counted among open sessions

    # --- admission

    def handle(self) -> None:
        service = self.service
        self.fk_setup()
        service.counters.sessions += 1
        service.counters.active += 1
        self.fk_active = True
        if service.pending_logins >= service.settings.max_logins:
            self.fk_refuse("Too many logins in progress")
            self.close_when_done()  # type: ignore[attr-defined]
            return
        service.pending_logins += 1
        self.fk_counted_login = True
        self.fk_last = time.monotonic()
        service.deadlines.sessions.add(self)
        super().handle()  # type: ignore[misc]

    def fk_logged_in(self, mac: str | None, shared: bool) -> None:
        self.fk_mac, self.fk_shared = mac, shared
        if self.fk_counted_login:
            self.fk_counted_login = False
            self.service.pending_logins -= 1

    def close(self) -> None:
        if self.fk_held:
            self._flush_held()
        if not getattr(self, "_closed", True) and hasattr(self, "fk_open"):
            data = getattr(self, "data_channel", None)
            if data is not None:  # a transfer under way is recorded by its data channel
                data.close()
            left, self.fk_open = self.fk_open, []
            for transfer in left:  # opened, but their data connection never came
                transfer.file.close()
                self._record(transfer, 499, 0)
            if self.fk_counted_login:
                self.fk_counted_login = False
                self.service.pending_logins -= 1
            if self.fk_active:
                self.fk_active = False
                self.service.counters.active -= 1
            self.service.deadlines.sessions.discard(self)
        super().close()  # type: ignore[misc]

    # --- commands pyftpdlib would map onto a parent directory

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        if cmd in ("CDUP", "XCUP") and self.authenticated and not arg:
            cwd: str = self.fs.cwd
            parent = cwd.rsplit("/", 1)[0] or "/"
            super().pre_process_command(f"CWD {parent}", "CWD", parent)  # type: ignore[misc]
            return
        super().pre_process_command(line, cmd, arg)  # type: ignore[misc]

    # --- what the virtual filesystem asks (serve.ftp.files.Session)

    def protocol(self) -> str:
        return "ftps" if getattr(self, "_ssl_established", False) else "ftp"

    def own(self) -> frozenset[str]:
        mac = self.fk_mac
        if mac is None:
            return frozenset()
        site = self.service.pipeline.view.phone_sites.get(mac)
        return frozenset({mac} if site is None else {mac, site})

    def _rule(self, segments: tuple[str, ...], write: bool, pin: bool = True) -> Ruling:
        """The pipeline's ruling for this session; ``pin``: a shared-login session becomes the
        phone a per-phone name names (not when the name only comes up in a listing)."""
        login = self.fk_mac
        if login is None and self.fk_shared and pin:
            shape = shape_of(segments)
            named = shape.named_mac or (shape.inner.named_mac if shape.inner else None)
            if named is not None:
                self.fk_mac = login = named  # a phone asks for its own files first
        return self.service.pipeline.decide(
            segments, self.remote_ip, None, time.perf_counter(), login=login, write=write
        )

    def lookup(self, segments: tuple[str, ...], pin: bool = True) -> Content | None:
        ruling = self._rule(segments, False, pin)
        return ruling.content if ruling.status == 200 else None

    def directory(self, segments: tuple[str, ...]) -> list[str] | None:
        """The names in a directory this session may see, or None when it is not one."""
        service = self.service
        own = self.own()
        if any(names_a_stranger(part, own) for part in segments):
            return None
        view = service.pipeline.view
        real = service.tree_directory(segments)
        site = segments[0].lower() if segments and segments[0].lower() in view.sites else None
        if site is not None and real is None:
            real = service.tree_directory(segments[1:])
            if real is None and len(segments) > 1:
                return None
            real = real or []
        known = segments in service.pipeline.layout.license_dirs
        if real is None and not known and segments:
            return None
        names = {n for n in real or [] if not n.startswith(".")}
        if not segments or (len(segments) == 1 and site is not None) or known:
            names.update(_LICENSE_NAMES)
            if self.fk_mac is not None:
                names.add(f"{self.fk_mac}-license.cfg")
        if not segments:
            names.update(s for s in own if s in view.sites)
        shown = []
        for name in sorted(names):
            if names_a_stranger(name, own):
                continue
            if (
                service.tree_directory((*segments, name)) is not None
                or (not segments and name in view.sites)
                or self.lookup((*segments, name), pin=False) is not None
            ):
                shown.append(name)
        return shown

    def refused_path(self, path: str, mode: str, reason: str) -> None:
        refused = Ruling(400, reason=reason)
        self._record(
            Transfer(_command(mode), path, refused, time.perf_counter(), io.BytesIO()), 400
        )

    def open_transfer(self, path: str, segments: tuple[str, ...], mode: str) -> io.IOBase:
        command = _command(mode)
        refused = Ruling(403, reason="")
        if "+" in mode:
            self._record(Transfer("STOR", path, refused, time.perf_counter(), io.BytesIO()), 400)
            raise FilesystemError("resuming an upload (REST before STOR) is not supported")
        started = time.perf_counter()
        if self.service.recorder.admits(self.remote_ip, started) is not ADMIT:
            self._record(Transfer(command, path, refused, started, io.BytesIO()), 503)
            raise FilesystemError(f"server busy: retry in {RETRY_S} seconds")
        ruling = self._rule(segments, command != "RETR")
        transfer = Transfer(command, path, ruling, started, io.BytesIO())
        if ruling.status != 200:
            self._record(transfer, ruling.status)
            raise FilesystemError(ruling.reason or "no such file")
        if command == "RETR":
            transfer.file = self._reader(transfer)
        else:
            transfer.file = self._writer(transfer)
        self.fk_open.append(transfer)
        return transfer.file

    def _reader(self, transfer: Transfer) -> io.IOBase:
        content = transfer.ruling.content
        assert content is not None  # noqa: S101  # a 200 read has its content
        if content.body is not None:
            return MemoryFile(content.body, transfer.path)
        try:
            assert content.path is not None  # noqa: S101  # content without a body has a path
            return open(content.path, "rb")  # closed by pyftpdlib
        except OSError as exc:
            self._record(transfer, 404)
            raise FilesystemError("no such file") from exc

    def _writer(self, transfer: Transfer) -> io.IOBase:
        upload = transfer.ruling.upload
        assert upload is not None  # noqa: S101  # a 200 write names its upload
        initial = b""
        if transfer.command == "APPE":
            if not upload.name.endswith(".log"):
                self._record(transfer, 403)
                raise FilesystemError("APPE is only for logs; use STOR")
            stored = self.service.upload_path(upload)
            try:
                with open(stored, "rb") as handle:
                    initial = handle.read(upload.cap_bytes + 1)
            except FileNotFoundError:
                pass
            if len(initial) > upload.cap_bytes:
                initial = initial[-upload.cap_bytes :]
        return UploadBuffer(transfer.path, upload.cap_bytes, initial)

    # --- the data channel's end (serve.ftp.server's data handler calls these)

    def fk_ended(self, file: object, finished: bool, moved: int) -> str | None:
        """A transfer's data connection has ended (its data channel's close, or the quick
        path's, ``serve.ftp.quick``): the open transfer carrying ``file`` is recorded
        (``fk_closing``). Returns a reply replacing pyftpdlib's, ``HELD``, or None."""
        transfer = self.fk_ending(file)
        return None if transfer is None else self.fk_closing(transfer, finished, moved)

    def fk_ending(self, file: object) -> Transfer | None:
        """The open transfer whose file a data channel carries (taken out of the open ones)."""
        for index, transfer in enumerate(self.fk_open):
            if transfer.file is file:
                return self.fk_open.pop(index)
        return None

    def fk_closing(self, transfer: Transfer, finished: bool, moved: int) -> str | None:
        """A transfer's data channel is closing: store a complete upload and record the
        transfer. Returns a reply replacing pyftpdlib's, or None."""
        counters = self.service.counters
        if transfer.command == "RETR":
            counters.sent_bytes += moved
            if finished and self._confirming(transfer, moved):
                return HELD
            self._record(transfer, 200 if finished else 499, moved, self._digest(transfer))
            return None
        counters.received_bytes += moved
        buffer = transfer.file
        assert isinstance(buffer, UploadBuffer)  # noqa: S101  # writes get an UploadBuffer
        if buffer.overflowed:
            self._record(transfer, 413, moved)
            return f"552 Upload over its cap of {buffer.cap} bytes; nothing was stored."
        if not finished:
            self._record(transfer, 499, moved)
            return None
        upload = transfer.ruling.upload
        assert upload is not None  # noqa: S101
        try:
            created = store_upload(
                self.service.uploads, upload.name, buffer.getvalue(), self.service.trash
            )
        except UploadRefusedError as exc:
            self._record(transfer, 413, moved)
            return f"552 {exc}; nothing was stored."
        except OSError as exc:
            self._record(transfer, 507, moved)
            return f"452 Could not store the upload ({exc.strerror}); nothing was stored."
        self._record(transfer, 201 if created else 204, moved)
        return None

    def _confirming(self, transfer: Transfer, moved: int) -> bool:
        """Record a complete RETR that confirms a delivery through the commit gate, and hold
        this session's replies, its 226 first, until the record is in (``fk_confirmed``);
        False when it does not confirm one (then it is recorded as any other)."""
        confirming = self.service.confirming
        ruling = transfer.ruling
        if confirming is None or not confirms(200, ruling.content, ruling.mac or self.fk_mac):
            return False
        if self.fk_awaiting is not None:  # a client that did not wait for the last 226: this
            return False  # one is recorded plainly and its 226 follows the last one's
        confirming.expect(self)
        self._record(transfer, 200, moved)
        if not confirming.took():
            return False  # recorded plainly (no loop waits, or the queue refused it)
        self.fk_awaiting = []
        return True

    def fk_confirmed(self) -> None:
        """The record of the transfer whose 226 waits is in the store (or will not wait longer:
        ``serve.ftp.confirming``): send the 226 and what was held behind it."""
        waiting, self.fk_awaiting = self.fk_awaiting, None
        if waiting is not None and not getattr(self, "_closed", True):
            asynchat.async_chat.push(self, COMPLETE + b"".join(waiting))  # type: ignore[arg-type]

    def _digest(self, transfer: Transfer) -> str | None:
        """The digest of the version a download served: a file over 1 MiB has none in its
        content until the tree's hashing thread is done, so it is asked of the open file."""
        content = transfer.ruling.content
        if content is None or content.digest is not None or content.path is None:
            return None if content is None else content.digest
        pipeline = self.service.pipeline
        tree = pipeline.uploads if content.kind == ContentKind.UPLOAD else pipeline.tree
        return tree.digest_of(content, transfer.file)

    def _record(
        self, transfer: Transfer, status: int, moved: int = 0, digest: str | None = None
    ) -> None:
        ruling = transfer.ruling
        if self.fk_shared and ruling.via == "login":  # the shared login's phone named itself
            ruling = said_by_name(ruling)
        content = ruling.content
        write = transfer.command != "RETR"
        self.service.recorder.record(
            self.protocol(),
            transfer.command,
            transfer.path,
            status,
            moved,
            (time.perf_counter() - transfer.started) * 1000,
            self.remote_ip,
            None,
            None,
            ruling if ruling.mac is not None else _with_mac(ruling, self.fk_mac, self.fk_shared),
            content.kind if content is not None else ("upload" if write else "other"),
            digest or (content.digest if content is not None else None),
        )


def _command(mode: str) -> str:
    """The command pyftpdlib opens a file in ``mode`` for."""
    return "RETR" if "r" in mode and "+" not in mode else "APPE" if "a" in mode else "STOR"


def said_by_name(ruling: Ruling) -> Ruling:
    """``ruling._replace(via="name")``, built by position: 340 ns against 690 (by keyword 630,
    timeit on the loaded machine); tests/unit/serve/test_fetching.py pins the fields' order."""
    ruled, found, mac, _, reason, site, upload, register = ruling
    return Ruling(ruled, found, mac, "name", reason, site, upload, register)


def _with_mac(ruling: Ruling, mac: str | None, shared: bool) -> Ruling:
    """A refusal made before the pipeline ruled, said of the session's phone."""
    return ruling if mac is None else ruling._replace(mac=mac, via="name" if shared else "login")
