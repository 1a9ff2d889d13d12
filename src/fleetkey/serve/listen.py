"""Where servers listen: addresses as operators write them, and why a listener could not bind,
said so that the operator can act on it.

``--http 18085`` used to name the host ``18085``, which the resolver reads as the IPv4 address
0.0.70.165: a bare number is a port on the default host. A port already in use, a privileged
port, or an address this machine does not have came out as the socket's own words
(``[Errno 98] error while attempting to bind on address …``); :func:`listen_error` says which
protocol, which address, and what to do.
"""

from __future__ import annotations

import asyncio
import errno as codes
import socket
from collections.abc import Callable
from typing import Final

from fleetkey.errors import InputError, ListenError

DEFAULT_HOST: Final = "127.0.0.1"  # nothing listens beyond this machine unless asked
PRIVILEGED_BELOW: Final = 1024  # Linux: ports under 1024 need CAP_NET_BIND_SERVICE


def parse_address(
    text: str, default_port: int, *, default_host: str = DEFAULT_HOST, field: str | None = None
) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``PORT`` (IPv6 as ``[::1]:PORT``)."""
    cleaned = text.strip()
    if cleaned.isdigit():  # a bare number is a port, never a host
        host, port = "", cleaned
    else:
        host, sep, port = cleaned.rpartition(":")
        if not sep:
            host, port = cleaned, str(default_port)
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(
            f"address {text!r} is not HOST:PORT, HOST or PORT (port 0-65535)",
            hint=f"for example {default_host}:{default_port}, {default_port}, or 0 for any free "
            "port",
            field=field,
        )
    return host, int(port)


def listen_error(
    protocol: str, host: str, port: int, exc: OSError, *, field: str | None = None
) -> ListenError:
    """The error to raise when ``protocol`` (``HTTP``, ``HTTPS``, ``TFTP``) could not listen at
    ``host:port``; ``exc`` is what binding raised."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    while exc.errno is None and isinstance(exc.__cause__, OSError):
        exc = exc.__cause__  # uvloop's datagram endpoint: "could not bind …" from the real one
    if isinstance(exc, socket.gaierror):
        what = f"the host {host!r} is not an address of this machine nor a name it can resolve"
        hint = "give an IP address of this machine, 0.0.0.0 for all of them, or 127.0.0.1"
    elif exc.errno == codes.EADDRINUSE:
        what = "the port is already in use"
        hint = (
            f"another program listens on {protocol} port {port} there (another fleetkey "
            "serve?): stop it, or choose another port (0 picks a free one)"
        )
    elif exc.errno == codes.EACCES and port < PRIVILEGED_BELOW:
        what = f"permission denied: ports below {PRIVILEGED_BELOW} are privileged"
        hint = (
            "run it with CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep on the Python "
            "interpreter, or AmbientCapabilities= in a systemd unit), or listen on a port "
            f"from {PRIVILEGED_BELOW} and redirect the port phones use to it"
        )
    elif exc.errno == codes.EADDRNOTAVAIL:
        what = f"{host} is not an address of this machine"
        hint = "give one it has (`ip -brief address`), 0.0.0.0 for all of them, or 127.0.0.1"
    else:
        what = exc.strerror or str(exc)
        hint = None
    return ListenError(
        f"cannot listen for {protocol} on {where}: {what}",
        protocol=protocol,
        host=host,
        port=port,
        errno=exc.errno,
        hint=hint,
        field=field,
    )


async def bind_datagrams(
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    host: str,
    port: int,
    *,
    protocol: str,
    field: str | None = None,
    sock: socket.socket | None = None,
) -> int:
    """Listen for datagrams at ``host:port`` on the running loop; the port bound (the protocol
    gets its transport in ``connection_made``). A failed bind raises :func:`listen_error`'s
    (``field``: the protocol's name in lower case unless given). ``sock``: a socket bound
    already (``serve --workers``: the supervisor's)."""
    loop = asyncio.get_running_loop()
    try:
        if sock is not None:
            transport, _ = await loop.create_datagram_endpoint(protocol_factory, sock=sock)
        else:
            transport, _ = await loop.create_datagram_endpoint(
                protocol_factory, local_addr=(host, port)
            )
    except OSError as exc:
        raise listen_error(protocol, host, port, exc, field=field or protocol.lower()) from exc
    return int(transport.get_extra_info("sockname")[1])
