"""FTP behind a TCP proxy: the PROXY protocol header on control connections from the proxy.

HAProxy in ``mode tcp`` connects to the server itself, so every session would come from the
balancer's address: the per-address limits and the failed-login hold-back would count every
phone together, and the records would carry the balancer's address. With
``--ftp-proxy-protocol CIDR`` (HAProxy's ``send-proxy`` or ``send-proxy-v2`` on the server
lines, docs/deploy/haproxy.cfg), a control connection from those addresses must begin with a
PROXY header (v1 or v2, ``core.proxyheader``), and its session is the client's the header
names: admission per address, logins and their hold-back, the address table, the records.

Only from those addresses: from anywhere else a connection is an FTP session as always, its
peer the client (a phone cannot name another address). A connection from the proxy whose
header is malformed, or incomplete after ``HEADER_S`` (``--ftp-proxy-header-timeout``), or
that closes first, is closed with one log line saying which and why, and counted by reason
(``REFUSALS``: /metrics' ``fleetkey_ftp_proxy_headers_refused_total``); it was never a session
(no greeting, no session counter, no record).
A header naming no client (v2 ``LOCAL``, v1 ``UNKNOWN``: the proxy's own connection) leaves
the session the proxy's.

Data connections carry no header (the data frontend of haproxy.cfg forwards them as they
are): they come from the proxy, so a proxied session's passive listener takes its data
connection from the proxy's address (``fk_via``), not the client's (``serve.ftp.passive``),
as it did before the header was read. ``PORT``/``EPRT`` still name the client's own address.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any, Final, Protocol

from fleetkey.core.proxyheader import LONGEST, ProxyHeaderError, parse
from fleetkey.serve.proxies import is_within

HEADER_S: Final = 10.0  # a proxy sends its header at once: this is generous (the default)
PEEK_AGAIN_S: Final = 0.05  # a part of a header is looked at again after this
# why a connection from the proxy was closed, as /metrics counts it (a fixed set, no free text)
MALFORMED: Final = "malformed"  # not a PROXY header, or a bad one, or none in LONGEST bytes
TIMEOUT: Final = "timeout"  # not whole within the timeout
CLOSED: Final = "closed"  # closed (or failed) before its header was whole
ERROR: Final = "error"  # reading it raised (logged with its traceback)
REFUSALS: Final = (MALFORMED, TIMEOUT, CLOSED, ERROR)
Client = tuple[tuple[str, int], str]  # the client's address and port, the proxy's address
log = logging.getLogger(__name__)


class Listener(Protocol):
    """What a :class:`HeaderReader` holds a connection for (``ProxiedServerMixin``)."""

    ioloop: Any

    @property
    def fk_header_s(self) -> float: ...

    def fk_proxied(self, sock: socket.socket, client: tuple[str, int], proxy: str) -> Any: ...

    def fk_header_refused(self, reason: str) -> None: ...


class Arrivals(Protocol):
    """What a session learns its client from (``serve.ftp.session``): while the listener
    accepts a proxied connection, the client its header named; None otherwise."""

    @property
    def fk_arriving(self) -> Client | None: ...


class HeaderReader:
    """Holds a control connection from the proxy on the FTP loop until its PROXY header is
    in, then hands it to the server as the client's (``ProxiedServerMixin.fk_proxied``)."""

    def __init__(self, server: Listener, sock: socket.socket, peer: tuple[str, int]) -> None:
        self.server, self.socket, self.peer = server, sock, peer
        self.ioloop = server.ioloop
        self._fileno = sock.fileno()
        sock.setblocking(False)
        self.ioloop.register(self._fileno, self, self.ioloop.READ)
        self._header_s = server.fk_header_s
        self._deadline = self.ioloop.call_later(self._header_s, self._expired)
        self._again: Any = None

    def __repr__(self) -> str:
        return f"<PROXY header reader {id(self):#x}>"

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        try:
            data = self.socket.recv(LONGEST, socket.MSG_PEEK)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return
            self._refuse(CLOSED, f"the connection failed before its header ({exc.strerror})")
            return
        if not data:
            self._refuse(CLOSED, "the connection closed before its header")
            return
        try:
            header = parse(data)
        except ProxyHeaderError as exc:
            self._refuse(MALFORMED, str(exc))
            return
        if header is None:
            if len(data) >= LONGEST:  # parse wants more than any header holds
                self._refuse(MALFORMED, f"no complete header in {LONGEST} bytes")
                return
            # what came stays unread (peeked), so the loop would call again at once: it is
            # looked at again shortly instead (a proxy sends its header whole; this is rare)
            self.ioloop.modify(self._fileno, 0)
            self._again = self.ioloop.call_later(PEEK_AGAIN_S, self._resume)
            return
        self.socket.recv(header.length)  # the header only: what follows is the client's
        self._release()
        client = header.client or self.peer
        self.server.fk_proxied(self.socket, client, self.peer[0])

    def _resume(self) -> None:
        self._again = None
        if self._fileno in self.ioloop.socket_map:
            self.ioloop.modify(self._fileno, self.ioloop.READ)

    def _expired(self) -> None:
        self._refuse(TIMEOUT, f"no complete header within {self._header_s:g} s")

    def _refuse(self, reason: str, why: str) -> None:
        self.server.fk_header_refused(reason)
        log.warning(
            "FTP: connection from the proxy %s:%d closed: %s (--ftp-proxy-protocol)",
            self.peer[0],
            self.peer[1],
            why,
        )
        self.close()

    def _release(self) -> None:
        """Off the loop and its timer, the socket kept."""
        for timer in (self._deadline, self._again):
            if timer is not None and not timer.cancelled:
                timer.cancel()
        self.ioloop.unregister(self._fileno)

    def handle_close(self) -> None:
        self._refuse(CLOSED, "the connection closed before its header")

    def handle_error(self) -> None:
        self.server.fk_header_refused(ERROR)
        log.exception("FTP: reading a PROXY header from %s failed", self.peer[0])
        self.close()

    def close(self) -> None:
        """Closed unread: by a refusal, or by the server's stop (ioloop.close)."""
        if self._fileno in self.ioloop.socket_map:
            self._release()
        self.socket.close()


class ProxiedServerMixin:
    """Mixed into the FTP listener (``serve.ftp.server``): connections from the configured
    proxies wait for their header (``HeaderReader``); the rest are accepted as always."""

    handler: Any
    ioloop: Any
    fk_arriving: Client | None = None  # while fk_proxied accepts: the session's (Arrivals)

    @property
    def fk_header_s(self) -> float:
        return float(self.handler.service.settings.proxy_header_s)

    def fk_header_refused(self, reason: str) -> None:
        refused = self.handler.service.counters.proxy_refused
        refused[reason] = refused.get(reason, 0) + 1

    def handle_accepted(self, sock: socket.socket, addr: Any) -> Any:
        networks = self.handler.service.settings.proxy_from
        if networks and is_within(addr[0], networks):
            HeaderReader(self, sock, (addr[0], int(addr[1])))
            return None
        return super().handle_accepted(sock, addr)  # type: ignore[misc]

    def fk_proxied(self, sock: socket.socket, client: tuple[str, int], proxy: str) -> Any:
        """Accept ``sock`` as ``client``'s session (its admission per address, its logins);
        its data connections come from ``proxy``."""
        self.fk_arriving = (client, proxy)
        try:
            return super().handle_accepted(sock, client)  # type: ignore[misc]
        finally:
            self.fk_arriving = None
