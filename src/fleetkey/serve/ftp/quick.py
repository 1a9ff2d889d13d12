"""A small download on a waiting passive connection, sent without a data channel object.

A phone's boot is a dozen ``RETR`` of small files (its configurations, its licenses, a
directory), each on a passive data connection the phone opened before it sent the command.
pyftpdlib carries each through a producer, a data channel object (``DTPHandler``: a
dispatcher with its buffers, a non-blocking switch and a ``getpeername``), its close with a
transfer log line and hooks, and the control channel's callbacks; for a body held in memory
that goes in one ``send``, that machinery was a good part of a transfer's server time.

So a ``RETR`` here, on plain FTP in binary mode without ``REST``, whose file is held in memory
(``serve.ftp.files.MemoryFile``: a posted license, a tree file up to 64 KiB) and whose passive
connection is already waiting, is done in place: the connection is accepted from the listener
(a stranger's is refused with pyftpdlib's ``425``, as before), the body goes with one
non-blocking ``send``, the socket is closed (stream mode: the end of the file), the transfer is
recorded as any other (``fk_closing``: the same record, counters and commit gate) and
``125`` + ``226`` leave in one segment (``226`` waits for the commit when it confirms a
delivery). When the socket does not take the whole body at once (a slow or distant phone),
the connection becomes pyftpdlib's data channel with the rest queued, and the transfer ends
its usual way. Everything else (FTPS, ASCII, ``REST``, files from disk, a connection not yet
come, a transfer already under way) is pyftpdlib's ``RETR``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, Final

from pyftpdlib.filesystems import FilesystemError
from pyftpdlib.handlers.ftp.producers import FileProducer
from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED
from pyftpdlib.utils import strerror

from fleetkey.serve.ftp.confirming import HELD
from fleetkey.serve.ftp.files import MemoryFile
from fleetkey.serve.ftp.passive import PassiveListener

STARTING: Final = "125 Data connection already open. Transfer starting."  # pyftpdlib's words
FINISHED: Final = "226 Transfer complete."


class QuickMixin:
    """``RETR`` done in place when it can be (module docstring); mixed into the session."""

    fk_cork: bool
    fk_held: list[bytes] | None
    fk_awaiting: list[bytes] | None
    fs: Any
    remote_ip: str
    fk_via: str | None  # a proxied session's proxy (serve.ftp.session)
    # pyftpdlib's FTPHandler's, and the session's (serve.ftp.control, serve.ftp.session)
    connected: bool
    data_channel: Any
    dtp_handler: Any
    _dtp_acceptor: Any
    _restart_position: int
    _current_type: str
    respond: Callable[[str], None]
    push_dtp_data: Callable[..., None]
    log_transfer: Callable[..., None]
    _on_dtp_close: Callable[[], None]
    _flush_held: Callable[[], None]
    fk_ended: Callable[[object, bool, int], str | None]

    @property
    def fk_data_from(self) -> str:
        """The address this session's data connections come from: its own, or a proxied
        session's proxy's (serve.ftp.proxied); any other's is refused (425)."""
        return self.fk_via or self.remote_ip

    def ftp_RETR(self, file: str) -> str | None:  # noqa: N802  # pyftpdlib's name for RETR
        acceptor = self._dtp_acceptor
        if (
            not self.fk_cork
            or self._restart_position
            or self._current_type != "i"
            or self.data_channel is not None
            or self.fk_awaiting is not None
            or not isinstance(acceptor, PassiveListener)
            or not acceptor.fk_armed
        ):
            return super().ftp_RETR(file)  # type: ignore[misc, no-any-return]
        try:
            fd = self.fs.open(file, "rb")
        except (OSError, FilesystemError) as err:
            self.respond(f"550 {strerror(err)}.")
            return None
        try:
            if type(fd) is not MemoryFile or not self._quick(acceptor, fd):
                self._pyftpdlib_retr(fd)
        except Exception:
            fd.close()
            raise
        return file

    def _pyftpdlib_retr(self, fd: Any) -> None:
        """The rest of pyftpdlib's ``ftp_RETR`` (no ``REST`` here), on the file opened."""
        producer = FileProducer(fd, self._current_type)
        self.push_dtp_data(producer, isproducer=True, file=fd, cmd="RETR")

    def _quick(self, acceptor: PassiveListener, fd: MemoryFile) -> bool:
        """Send ``fd`` on the waiting connection; False (nothing done) when none waits yet, or
        a stranger's came first (refused here, then pyftpdlib's way takes over)."""
        accepted = acceptor.accept()
        if accepted is None:
            return False
        sock, address = accepted
        if address[0] != self.fk_data_from or not self.connected:
            acceptor.handle_accepted(sock, address)  # a stranger: 425, the listener waits on
            return False
        started = time.perf_counter()
        acceptor.close()  # one data connection per listener
        self._dtp_acceptor = None
        body = fd.getvalue()  # no REST here: from the start
        try:
            sent = sock.send(body, socket.MSG_DONTWAIT) if body else 0
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            sock.close()
            if exc.errno not in _ERRNOS_DISCONNECTED:
                raise
            self._quick_end(fd, started, finished=False, moved=0)  # the phone went away
            return True
        if sent < len(body):
            self._hand_over(sock, fd, body, sent)
            return True
        sock.close()
        self._quick_end(fd, started, finished=True, moved=sent)
        return True

    def _quick_end(self, fd: MemoryFile, started: float, *, finished: bool, moved: int) -> None:
        """The transfer's end as a data channel's close would make it: recorded, replied."""
        self.fk_held = []  # 125 and 226 in one segment (or 125 alone when the 226 waits)
        try:
            self.respond(STARTING)
            reply = self.fk_ended(fd, finished, moved)
            fd.close()
            if reply != HELD:
                done = FINISHED if finished else f"426 Transfer aborted; {moved} bytes transmitted."
                self.respond(reply or done)
        finally:
            self._flush_held()
        self.log_transfer(  # formatted only when INFO is on
            cmd="RETR", filename=fd.name, receive=False, completed=finished,
            elapsed=round(time.perf_counter() - started, 3), bytes=moved,
        )  # fmt: skip
        self._on_dtp_close()

    def _hand_over(self, sock: socket.socket, fd: MemoryFile, body: bytes, sent: int) -> None:
        """The socket did not take the whole body: pyftpdlib's data channel sends the rest."""
        handler = self.dtp_handler(sock, self)
        if not handler.connected:  # closed at once (pyftpdlib's constructor failed)
            self._quick_end(fd, time.perf_counter(), finished=False, moved=sent)
            return
        self.data_channel = handler
        handler.file_obj = fd
        handler.cmd = "RETR"
        handler.tot_bytes_sent = sent
        handler.fk_send_later(body[sent:])
        self.respond(STARTING)
        handler.close_when_done()
