"""The emulator's sockets: each phone's SIP port, and the open-file budget they fit in.

SIP over UDP has one socket per phone, bound to the phone's own address, so a NOTIFY sent to
that address reaches that phone and its answer comes from it. SIP over TCP has one listening
socket for the whole fleet, on the wildcard address (held to the loopback device where the
kernel allows, ``SO_BINDTODEVICE``): an accepted connection's local address says which phone
it was made to, and goes to that phone's SIP handler; a connection to any other address is
closed at once. Why: a listening socket per phone doubled the descriptors (10,000 phones held
20,000 of them, the whole hard limit of this machine), while TCP NOTIFYs are rare and each
connection exists only while it is used. 10,000 phones then need about 10,000 + the boots in
progress + a reserve; over FTP a boot in progress holds two (its control connection and a
data connection).

``check_descriptors`` (called by ``emulate.runner`` before a run) raises the soft open-file
limit to what the run needs (up to the hard limit) and otherwise fails before anything opens,
naming the limit and how many phones fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from collections.abc import Callable, Mapping
from typing import Final

from fleetkey.core.sip import MAX_MESSAGE
from fleetkey.emulate.sip import SipPhone
from fleetkey.errors import InputError

RESERVE: Final = 64  # stdio, the event loop, the TCP listener, logs, a report, accepted SIP TCP
_UNLIMITED: Final = resource.RLIM_INFINITY


def descriptors_needed(phones: int, concurrency: int, *, sip: bool, per_boot: int = 1) -> int:
    """Open files a run needs: a SIP socket per phone, ``per_boot`` connections per boot in
    progress (HTTP and TFTP one, FTP two: control and data)."""
    return (phones if sip else 0) + per_boot * min(concurrency, phones) + RESERVE


def phones_that_fit(limit: int, concurrency: int, per_boot: int = 1) -> int:
    """How many phones (each with a SIP socket) a limit of ``limit`` open files holds."""
    room = limit - RESERVE
    if room > (1 + per_boot) * concurrency:
        return room - per_boot * concurrency
    return max(0, room // (1 + per_boot))  # fewer phones than --concurrency: each boots at once


def check_descriptors(phones: int, concurrency: int, *, sip: bool, per_boot: int = 1) -> int:
    """Raise the soft open-file limit to what ``phones`` need, or fail saying what fits.
    Returns the limit in force."""
    needed = descriptors_needed(phones, concurrency, sip=sip, per_boot=per_boot)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == _UNLIMITED or soft >= needed:
        return needed if soft == _UNLIMITED else soft
    if hard != _UNLIMITED and hard < needed:
        fit = phones_that_fit(hard, concurrency, per_boot)
        each = "" if per_boot == 1 else f" of {per_boot} connections each"
        raise InputError(
            f"{phones:,} phones need about {needed:,} open files (a SIP socket each, "
            f"{min(concurrency, phones):,} boots in progress{each} and {RESERVE} more), but the "
            f"open-file limit is {hard:,}: {fit:,} phones fit",
            hint="raise the hard limit (ulimit -Hn, /etc/security/limits.conf), or run fewer "
            "--phones, a lower --concurrency, or --sip-port 0",
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


class SipSockets:
    """The fleet's SIP sockets: ``open`` them, ``close`` them all."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._phones: dict[str, SipPhone] = {}
        self._transports: list[asyncio.BaseTransport] = []
        self._server: asyncio.Server | None = None

    async def open(
        self,
        phones: Mapping[str, Callable[[], SipPhone]],
        stopping: asyncio.Event,
    ) -> dict[str, SipPhone]:
        """The TCP listener, then a UDP socket per phone address (until ``stopping``: ten
        thousand take a few seconds); the SIP handler of each address."""
        self._server = await asyncio.start_server(
            self._accept, sock=_tcp_listener(self.port), limit=MAX_MESSAGE, backlog=1024
        )
        loop = asyncio.get_running_loop()
        for address, make in phones.items():
            if stopping.is_set():
                break
            transport, protocol = await loop.create_datagram_endpoint(
                make, local_addr=(address, self.port)
            )
            self._transports.append(transport)
            self._phones[address] = protocol
        return self._phones

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        local = writer.get_extra_info("sockname")
        phone = self._phones.get(local[0]) if local else None
        if phone is None:  # not a phone's address (or not listening yet)
            writer.close()
            return
        await phone.serve_stream(reader, writer)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        if self._server is not None:
            self._server.close()


def _tcp_listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError, AttributeError):  # needs Linux ≥ 5.7 unprivileged
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        sock.bind(("0.0.0.0", port))  # noqa: S104  # loopback only where the kernel allows
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
