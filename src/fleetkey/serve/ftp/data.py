"""An FTP data channel: what fleetkey adds to pyftpdlib's, the end of a transfer and its record.

When a data channel closes, its session (``serve.ftp.session``) records the transfer (complete
or not) and stores a complete upload. A body held in memory (a posted license, a tree file up
to 64 KiB) in binary mode is sent with one ``send`` at once, and the channel closes right after
when all of it went: pyftpdlib would wrap it in a producer, ask epoll for writability, send it
at the next turn of its loop and close at the one after. Whatever the socket did not take goes
the usual way (asynchat's queue, on writability). Files from disk, ASCII mode and FTPS keep
pyftpdlib's path (``sendfile``, its producers, TLS). A channel accepted when its command came
(``serve.ftp.control``) joins the poller only if it has to wait for the socket: a body sent
at once never registers it (two ``epoll_ctl`` and the poller's bookkeeping less a transfer).
"""

from __future__ import annotations

import io
import logging
from typing import Any, Final

from pyftpdlib.handlers.ftp.producers import FileProducer

from fleetkey.serve.ftp.confirming import HELD
from fleetkey.serve.ftp.files import MemoryFile
from fleetkey.serve.ftp.quick import QuickMixin

_PYFTPDLIB: Final = logging.getLogger("pyftpdlib")


class DataMixin:
    """Mixed into pyftpdlib's ``DTPHandler`` (or ``TLS_DTPHandler``) by ``serve.ftp.server``.

    Its ``repr`` is short: pyftpdlib formats it for a debug line (logged or not) at each close,
    and its own walked the session's state (~3 % of a boot's server time, profiled)."""

    fk_direct: bool = True  # False on FTPS: TLS data goes pyftpdlib's way
    fk_all_sent: bool = False  # an in-memory body went with one send
    fk_moved: int = -1  # bytes moved when the deadline sweep last saw it move
    fk_since: float = 0.0  # and when (serve.ftp.control)

    def __repr__(self) -> str:
        return f"<FTP data channel {id(self):#x}>"

    cmd_channel: Any
    receive: bool
    transfer_finished: bool
    producer_fifo: Any
    _closed: bool
    _resp: tuple[str, Any] | None
    file_obj: Any

    fk_polled: bool = True  # registered with the poller

    def add_channel(self, map: Any = None, events: Any = None) -> None:
        """A data channel accepted for a transfer's command (``serve.ftp.control``) stays out
        of the poller while its body may go at once; ``fk_poll`` registers it if not."""
        channel = self.cmd_channel
        if channel.fk_defer_data:
            channel.fk_defer_data = False  # this channel only: later registrations are real
            self.fk_polled = False
            return
        self.fk_polled = True
        super().add_channel(map, events)  # type: ignore[misc]

    def fk_poll(self) -> None:
        """Into the poller, for the events it wants, unless it is closed or in already."""
        if not self.fk_polled and not self._closed:
            self.add_channel(events=self._wanted_io_events)

    def del_channel(self, map: Any = None) -> None:
        if self.fk_polled:
            self.fk_polled = False
            super().del_channel(map)  # type: ignore[misc]

    def use_sendfile(self) -> bool:
        if isinstance(self.file_obj, io.BytesIO):
            return False  # no descriptor (pyftpdlib learns it from an exception)
        return bool(super().use_sendfile())  # type: ignore[misc]

    def push_with_producer(self, producer: Any) -> None:
        if not self._send_at_once(producer):
            super().push_with_producer(producer)  # type: ignore[misc]

    def _send_at_once(self, producer: Any) -> bool:
        """Send an in-memory body in binary mode now (module docstring); False: not such."""
        if (
            not self.fk_direct
            or type(producer) is not FileProducer
            or producer._data_wrapper is not None
            or type(producer.file) is not MemoryFile
        ):
            return False
        body = producer.file.read()  # from REST's position
        if not body:
            return False
        self._initialized = True
        fifo = self.producer_fifo
        fifo.append(body)  # queued first: a client gone during the send left it unfinished
        sent = self.send(body)  # type: ignore[attr-defined]  # counts the bytes; 0 if it would block
        if self._closed:
            return True
        if sent >= len(body):
            fifo.clear()
            self.fk_all_sent = True  # the close_when_done that follows ends the transfer
            return True
        fifo.clear()
        self.fk_send_later(body[sent:])
        return True

    def fk_send_later(self, rest: bytes) -> None:
        """What a send did not take: queued (asynchat's fifo), sent when the socket is
        writable; here and for ``serve.ftp.quick``'s partial send. pyftpdlib's private fields
        (tests/unit/serve/test_ftp_quick.py fails if they go)."""
        self._initialized = True
        self.producer_fifo.append(rest)
        self.modify_ioloop_events(self.ioloop.WRITE)  # type: ignore[attr-defined]
        self._wanted_io_events = self.ioloop.WRITE  # type: ignore[attr-defined]

    def close_when_done(self) -> None:
        if self.fk_all_sent:
            self.handle_close()  # type: ignore[attr-defined]  # complete: nothing is queued
        else:
            super().close_when_done()  # type: ignore[misc]

    def close(self) -> None:
        if not self._closed:
            channel = self.cmd_channel
            file = getattr(self, "file_obj", None)
            if file and isinstance(channel, QuickMixin):  # a session (its fk_ended: session.py)
                moved = self.get_transmitted_bytes()  # type: ignore[attr-defined]
                reply = channel.fk_ended(file, self.transfer_finished, moved)
                if reply == HELD:  # the 226 waits for the record's commit (session's)
                    self._resp = None
                elif reply is not None:
                    self._resp = (reply, _PYFTPDLIB.info)
        super().close()  # type: ignore[misc]
