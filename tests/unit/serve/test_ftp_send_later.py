"""What a send did not take goes on pyftpdlib's data channel (serve/ftp/data.py
``fk_send_later``): serve/ftp/quick.py's partial send (``_hand_over``) and the data channel's
own send at once (``_send_at_once``).

It sets pyftpdlib's private fields (``_initialized``, ``producer_fifo``, ``_wanted_io_events``)
and ends with its ``close_when_done``: pyftpdlib renaming or dropping one must fail here, on a
real channel and a real TCP connection whose send takes only part of the body, not in a
phone's boot.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pyftpdlib.ioloop import Epoll

from fleetkey.serve.ftp.data import DataMixin
from fleetkey.serve.ftp.files import MemoryFile
from fleetkey.serve.ftp.quick import STARTING, QuickMixin

BODY = bytes(range(256)) * 1024  # 256 KiB: more than the small buffers below hold


class Channel:
    """What pyftpdlib's data channel asks of its control channel, what it said kept."""

    fk_defer_data = False

    def __init__(self, ioloop: Epoll) -> None:
        self.ioloop = ioloop
        self.replies: list[str] = []
        self.transfers: list[dict[str, Any]] = []
        self.sent: list[str] = []
        self.closed = threading.Event()

    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def log_exception(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the data channel failed")

    def respond(self, line: str, logfun: object = None) -> None:
        self.replies.append(line)

    def log_transfer(self, **transfer: Any) -> None:
        self.transfers.append(transfer)

    def on_file_sent(self, name: str) -> None:
        self.sent.append(name)

    def on_incomplete_file_sent(self, name: str) -> None:
        raise AssertionError(f"{name} was cut")

    def _on_dtp_close(self) -> None:
        self.closed.set()


class Session(QuickMixin, Channel):
    """A session to serve/ftp/quick.py's ``_hand_over``: its data channels are fleetkey's
    over pyftpdlib's, and the transfers they end are kept (``fk_ended``)."""

    def __init__(self, ioloop: Epoll) -> None:
        super().__init__(ioloop)
        from pyftpdlib.handlers import DTPHandler  # after fleetkey.serve.ftp: quietly

        self.dtp_handler = type("Data", (DataMixin, DTPHandler), {"timeout": 0})
        self.data_channel = None
        self.ended: list[tuple[object, bool, int]] = []

    def fk_ended(self, file: object, finished: bool, moved: int) -> str | None:
        self.ended.append((file, finished, moved))
        return None  # pyftpdlib's own reply: 226 or 426


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A TCP connection on 127.0.0.1: the server's end (small send buffer), the phone's
    (small receive buffer)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        phone = socket.socket()
        phone.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        phone.connect(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    yield server, phone
    server.close()
    phone.close()


def serve_until_closed(session: Session, phone: socket.socket) -> bytes:
    """Run the poller while the phone reads slowly, until the data channel has closed; what
    the phone got."""
    got = bytearray()

    def read_slowly() -> None:
        while chunk := phone.recv(4096):
            got.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while not session.closed.is_set() and time.monotonic() < deadline:
        session.ioloop.loop(0.05, blocking=False)
    reader.join(30)
    assert session.closed.is_set(), "the data channel never closed"
    return bytes(got)


def test_a_quick_retr_whose_send_was_short_sends_the_rest_and_ends_once(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    server, phone = connection
    session = Session(Epoll())
    fd = MemoryFile(BODY, "/0004f2a1b2c3.cfg")
    try:
        sent = server.send(BODY, socket.MSG_DONTWAIT)
        assert 0 < sent < len(BODY)  # the premise: the socket took part of it
        session._hand_over(server, fd, BODY, sent)
        assert session.data_channel is not None
        got = serve_until_closed(session, phone)
    finally:
        session.ioloop.close()
    assert got == BODY
    assert session.replies == [STARTING, "226 Transfer complete."]
    assert session.ended == [(fd, True, len(BODY))]  # recorded once, whole
    assert session.sent == ["/0004f2a1b2c3.cfg"]
    assert [(t["bytes"], t["completed"]) for t in session.transfers] == [(len(BODY), True)]


def test_a_data_channels_send_at_once_that_was_short_sends_the_rest_and_ends_once(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    from pyftpdlib.handlers.ftp.producers import FileProducer

    server, phone = connection
    session = Session(Epoll())
    fd = MemoryFile(BODY, "/0004f2a1b2c3.cfg")
    try:
        handler = session.dtp_handler(server, session)
        handler.file_obj, handler.cmd = fd, "RETR"
        handler.push_with_producer(FileProducer(fd, "i"))  # as pyftpdlib's RETR does
        assert 0 < handler.tot_bytes_sent < len(BODY)  # the premise: one short send
        handler.close_when_done()
        got = serve_until_closed(session, phone)
    finally:
        session.ioloop.close()
    assert got == BODY
    assert session.replies == ["226 Transfer complete."]
    assert session.ended == [(fd, True, len(BODY))]
    assert [(t["bytes"], t["completed"]) for t in session.transfers] == [(len(BODY), True)]
