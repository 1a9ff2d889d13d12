"""Running the HTTP server: listen, stop gracefully, report where it listens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from fleetkey.errors import InputError
from fleetkey.serve.http.protocol import HttpProtocol, Limits, Service

GRACE_S: Final = 10.0  # how long answers in flight may take after a stop was asked for


async def serve_http(
    service: Service,
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    ready: Callable[[str, int], None],
    limits: Limits | None = None,
    grace_s: float = GRACE_S,
) -> None:
    """Serve until ``stop`` is set; then stop accepting and let answers in flight finish."""
    loop = asyncio.get_running_loop()
    connections: set[HttpProtocol] = set()
    chosen = limits or Limits()
    server = await loop.create_server(
        lambda: HttpProtocol(service, chosen, connections),
        host,
        port,
        backlog=4096,
        reuse_address=True,
    )
    ready(host, int(server.sockets[0].getsockname()[1]))
    await stop.wait()
    server.close()
    for connection in list(connections):
        connection.close_when_idle()
    deadline = time.monotonic() + grace_s
    while connections and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for connection in list(connections):
        connection.abort()
    await server.wait_closed()


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` (IPv6 as ``[::1]:PORT``)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"address {text!r} is not HOST:PORT (port 0-65535)")
    return host, int(port)
