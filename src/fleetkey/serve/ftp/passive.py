"""Passive data connections: where their listeners bind, one fresh listener per transfer.

Each ``EPSV``/``PASV`` makes a listener on a random port of the service's passive range
(``bind_passive``), named in the ``227``/``229`` reply; the listener takes one data connection
from the session's own address and closes at it, as pyftpdlib's and vsftpd's do.

On plain FTP the listener is not in the poller while it waits: a client connects before it
sends its ``RETR`` (or ``LIST``, ``STOR``…), and the session accepts the connection when that
command comes (``serve.ftp.control``); only when it has not come by then is the listener put
in the poller to accept it later. A stranger's connection (another address) waiting there is
refused then, with the same ``425``, and the phone's own is taken after it. Each transfer so
saves registering and unregistering the listener and a turn of the poller for its accept
(FTPS keeps pyftpdlib's way: its handshake runs on the poller).

Not kept between transfers: a session once kept its listener and named the same port at its
next ``EPSV`` (a fifth of a transfer's server time saved, profiled), but a kept port is
predictable, and a data connection is checked by its address only, so another program behind
the same address (a NAT) that connected to it while it waited took the phone's file, and the
phone got an empty one with ``226`` (RFC 2577 §8, port stealing; the review's probe took 30 of
30). That code was removed, not left switched off (docs/serve.md, "Passive ports").
"""

from __future__ import annotations

import errno
import itertools
import random
import socket
import time
from typing import Any, Final

from pyftpdlib.handlers.ftp.dispatchers import PassiveDTP
from pyftpdlib.ioloop import Acceptor

PORT_RANGE_FILE: Final = "/proc/sys/net/ipv4/ip_local_port_range"
LINUX_EPHEMERAL: Final = (32768, 60999)  # Linux's default ip_local_port_range
PASSIVE_TRIES: Final = 16  # random ports tried before the range is scanned in order
_ports = random.Random()  # noqa: S311  # not a secret: data connections from strangers are refused


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's ephemeral port range (where it would pick a port itself)."""
    try:
        with open(PORT_RANGE_FILE) as handle:
            first, last = (int(part) for part in handle.read().split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL
    return (first, last) if 1024 <= first <= last <= 65535 else LINUX_EPHEMERAL


def bind_passive(sock: Any, host: str, ports: tuple[int, int]) -> int:
    """Bind a passive listener to a port of ``ports``, with ``SO_REUSEADDR``; the port.

    The server ends each download's data connection (stream mode: its close is the end of the
    file), so each leaves its port in TIME_WAIT for 60 s on the server's side. Bound to port 0,
    the kernel never picks such a port: a boot storm's 12 data connections per phone used up
    the 28,232 ephemeral ports of 127.0.0.1 within a minute and passive mode stalled (and every
    other program on the host found no port either). A port named explicitly with
    ``SO_REUSEADDR``, on a listener whose connections inherit it, may be bound again while
    connections on it wait out TIME_WAIT (their four-tuples differ). A few random ports, then
    the range in order from a random start; ``OSError`` EADDRINUSE when none is free.
    """
    first, last = ports
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    count = last - first + 1
    start = _ports.randrange(count)
    tries = (first + _ports.randrange(count) for _ in range(min(PASSIVE_TRIES, count)))
    in_order = (first + (start + i) % count for i in range(count))  # each made when needed
    for port in itertools.chain(tries, in_order):
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
        else:
            return port
    raise OSError(errno.EADDRINUSE, f"no free passive port in {first}-{last}")


class PassiveListener(PassiveDTP):  # type: ignore[misc]  # pyftpdlib is untyped
    """A passive listener bound by ``bind_passive`` to the service's ports, for one data
    connection (module docstring). When every port of the range is taken, the command is
    refused (425) and the session goes on."""

    def __init__(self, cmd_channel: Any, extmode: bool = False) -> None:
        # PassiveDTP.__init__ less its dual-stack probe (a getaddrinfo and a socket more per
        # EPSV): the listener takes the control connection's own family and address
        self.cmd_channel = cmd_channel
        self.log = cmd_channel.log
        self.log_exception = cmd_channel.log_exception
        self.fk_armed = False
        self.fk_armed_at = 0.0  # when it began to wait (serve.ftp.control times it out)
        self.fk_lazy = bool(cmd_channel.fk_cork)  # not in the poller until awaited (FTPS: at once)
        self.fk_polled = False  # registered with the poller
        Acceptor.__init__(self, ioloop=cmd_channel.ioloop)
        local_ip = cmd_channel.fk_local_ip()
        try:
            for attempt in range(PASSIVE_TRIES):
                self.create_socket(cmd_channel.fk_family, socket.SOCK_STREAM)
                port = bind_passive(self.socket, local_ip, cmd_channel.service.passive_ports)
                try:
                    self.listen(self.backlog or cmd_channel.server.backlog)
                    break
                except OSError as exc:  # another worker bound the same port before either
                    # listened (SO_REUSEADDR allows it until one listens): another port
                    if exc.errno != errno.EADDRINUSE or attempt == PASSIVE_TRIES - 1:
                        raise
                    self.del_channel()
                    self.socket.close()
        except OSError as exc:
            self.close()
            cmd_channel.respond_w_warning(f"425 Can't open data channel: {exc.strerror}.")
            return
        self.addr = (local_ip, port)  # bound by name: no getsockname
        self.fk_port = port
        self.fk_arm(extmode)

    def __repr__(self) -> str:  # formatted for pyftpdlib's debug line at each close
        return f"<FTP passive listener {id(self):#x}>"

    def fk_arm(self, extmode: bool) -> None:
        """Name this listener's port (227/229) and wait for one data connection."""
        channel = self.cmd_channel
        self.fk_armed = True
        port = self.fk_port
        if extmode:
            channel.respond(f"229 Entering extended passive mode (|||{port}|).")
        else:
            ip = channel.fk_passive_ip()
            channel.respond(
                f"227 Entering passive mode ({ip.replace('.', ',')},{port // 256},{port % 256})."
            )
        self.fk_armed_at = time.monotonic()

    def create_socket(self, family: int, type: int) -> None:  # asyncore's names
        """asyncore's, less a system call: made non-blocking at once, not by ``setblocking``."""
        self.set_socket(socket.socket(family, type | socket.SOCK_NONBLOCK))

    def add_channel(self, map: Any = None, events: Any = None) -> None:
        """Registered with the poller at once only on FTPS; else when awaited (``fk_await``)."""
        if not self.fk_lazy:
            self.fk_await()

    def fk_await(self) -> None:
        """Let the poller accept the data connection when it comes (a transfer waits for it)."""
        if not self.fk_polled and not self._closed:
            self.fk_polled = True
            Acceptor.add_channel(self)

    def del_channel(self, map: Any = None) -> None:
        if self.fk_polled:
            self.fk_polled = False
            Acceptor.del_channel(self)

    def accept(self) -> tuple[socket.socket, Any] | None:
        """asyncore's accept without the socket module's enum conversions."""
        try:
            fd, addr = self.socket._accept()
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.ECONNABORTED, errno.EAGAIN):
                return None
            raise
        return socket.socket(self.cmd_channel.fk_family, socket.SOCK_STREAM, 0, fd), addr

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        channel = self.cmd_channel
        if not channel.connected:  # the session is gone: nobody's data connection
            sock.close()
            self.close()
            return
        # as PassiveDTP: from the session's own address (a proxied session's: its proxy's,
        # serve.ftp.proxied), else refused, and the listener waits on
        if channel.fk_data_from != addr[0]:
            sock.close()
            channel.respond_w_warning(
                f"425 Rejected data connection from foreign address {addr[0]}:{addr[1]}."
            )
            return
        self.close()  # one data connection per listener
        handler = channel.dtp_handler(sock, channel)
        if handler.connected:
            channel.data_channel = handler
            channel._on_dtp_connection()

    def close(self) -> None:
        self.fk_armed = False  # else the sweep times a closed listener out again and again
        Acceptor.close(self)
