"""Running the HTTP server: listen, stop gracefully, report where it listens."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from fleetkey.errors import InputError
from fleetkey.serve.http.connections import Connections
from fleetkey.serve.http.messages import RequestLimits, Service
from fleetkey.serve.http.protocol import HttpProtocol
from fleetkey.serve.listen import listen_error

GRACE_S: Final = 10.0  # how long answers in flight may take after a stop was asked for


async def serve_http(
    service: Service,
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    ready: Callable[[str, int], None],
    connections: Connections | None = None,
    limits: RequestLimits | None = None,
    grace_s: float = GRACE_S,
    tls: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve until ``stop`` is set; then stop accepting and let answers in flight finish.

    ``connections``: shared by every listener of a server (caps count them all), swept by
    whoever made it; without one, this listener makes and sweeps its own. With ``tls``,
    HTTPS: the handshake is the event loop's (uvloop's SSL transport). A listener that cannot
    bind raises :class:`ListenError` saying why (serve/listen.py). ``sock``: a listening socket
    bound already (``serve --workers``: the supervisor's, one per worker on the same port).
    """
    loop = asyncio.get_running_loop()
    own = connections is None
    registry = connections if connections is not None else Connections()
    chosen = limits or RequestLimits()
    try:
        factory = lambda: HttpProtocol(service, chosen, registry, secure=tls is not None)  # noqa: E731
        handshake_s = 10.0 if tls is not None else None
        if sock is not None:
            server = await loop.create_server(
                factory, sock=sock, backlog=4096, ssl=tls, ssl_handshake_timeout=handshake_s
            )
        else:
            server = await loop.create_server(
                factory,
                host,
                port,
                backlog=4096,
                reuse_address=True,
                ssl=tls,
                ssl_handshake_timeout=handshake_s,
            )
    except OSError as exc:
        scheme = "https" if tls is not None else "http"
        raise listen_error(scheme.upper(), host, port, exc, field=scheme) from exc
    sweeper = loop.create_task(registry.keep_swept(stop)) if own else None
    ready(host, int(server.sockets[0].getsockname()[1]))
    await stop.wait()
    server.close()
    for connection in list(registry.open):
        connection.close_when_idle()
    deadline = time.monotonic() + grace_s
    while registry.open and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for connection in list(registry.open):
        connection.abandon()
    await server.wait_closed()
    if sweeper is not None:
        await sweeper


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context from the operator's PEM certificate (chain) and key.

    TLS 1.2 at least: the phones this serves (UC Software 4.x and later) speak it.
    """
    for path in (cert, key):  # load_cert_chain's error names no file
        if not path.is_file():
            raise InputError(f"cannot read {path}: no such file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")  # never prompt
    except FileNotFoundError as exc:
        raise InputError(f"cannot read {exc.filename}: no such file") from exc
    except ssl.SSLError as exc:
        raise InputError(
            f"certificate {cert} and key {key} do not make a TLS identity ({exc.reason})",
            hint="both must be PEM; the key must match the certificate and not need a password",
        ) from exc
    return context
