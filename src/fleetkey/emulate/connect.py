"""How an emulated phone reaches its server, and one request over that: the one place the
fleet (``emulate.fleet``) and the capacity probe (``emulate.capacity``) both use.

``connector`` says which ``Transport`` a phone opens for a pass of its boot: HTTP (with its
provisioning login, when it has one), TFTP, or FTP (logged in as ``FtpLogins`` say, its
flash's image headers handed to the session). ``send`` is one ``FileRequest`` over it: a
``PUT`` puts the body, a ``GET`` fetches (its first bytes only, or without keeping them).
What a host does around a request (retries, counting, recording) stays the host's.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from fleetkey.core.device.boot import FileRequest
from fleetkey.core.device.config import PhoneConfig
from fleetkey.emulate.booting import Flash, user_agent
from fleetkey.emulate.ftp import FtpLogins
from fleetkey.emulate.http import HttpClient, Login
from fleetkey.emulate.tftp import TftpClient
from fleetkey.emulate.transport import Reply, Transport

Connect = Callable[[PhoneConfig, str, Flash, Login | None], Transport]
"""A phone's transport: (its configuration, its address, its flash, its HTTP login)."""


def connector(
    host: str,
    port: int,
    *,
    tftp: bool = False,
    ftp: FtpLogins | None = None,
    timeout_s: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> Connect:
    """How phones reach ``host:port``: over FTP with ``ftp``'s logins, over TFTP, else HTTP
    (HTTPS with ``tls``)."""
    if ftp is not None:
        return lambda config, address, flash, _: ftp.client(
            host, port, address, config.mac, flash.headers
        )
    if tftp:
        return lambda _, address, __, ___: TftpClient(host, port, local_address=address)
    return lambda config, address, _, login: HttpClient(
        host,
        port,
        local_address=address,
        user_agent=user_agent(config),
        timeout_s=timeout_s,
        login=login,
        tls=tls,
    )


async def send(
    transport: Transport,
    path: str,
    request: FileRequest,
    body: bytes,
    agent: str,
    first_bytes: int | None,
    keep: bool,
) -> Reply:
    """``request`` at ``path``: a PUT of ``body``, or a GET (``first_bytes``, ``keep`` as
    ``Transport.fetch`` takes them)."""
    if request.method == "PUT":
        return await transport.put(path, body, user_agent=agent)
    return await transport.fetch(path, user_agent=agent, first_bytes=first_bytes, keep=keep)
