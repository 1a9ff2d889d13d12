"""One emulated phone: what it keeps across its boots (the installed image, its login, the
master configuration it follows), what it saw (every answer, its errors, its boots), and how an
answer is written down. ``emulate.fleet`` runs many of them; ``emulate.report`` tells of them.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from fleetkey.core.device.engine import Action, DeviceEngine
from fleetkey.core.masterconfig import Application
from fleetkey.emulate.booting import Flash
from fleetkey.emulate.http import Login
from fleetkey.emulate.sip import SipPhone
from fleetkey.emulate.transport import Reply


@dataclass
class Fetch:
    at: datetime
    method: str
    name: str
    status: int
    bytes: int
    digest: str | None
    said: str | None = None  # a refusal's own words (FTP's reply line), for the report


@dataclass
class EmulatedPhone:
    engine: DeviceEngine
    address: str
    sip: SipPhone | None = None
    fetches: list[Fetch] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # config file → digest at the last boot
    flash: Flash = field(default_factory=Flash)  # the installed image, kept across reboots
    master: tuple[str, Application] | None = None  # the master configuration it follows
    image_bytes: int = 0  # firmware downloaded, over all its boots
    image_downloads: int = 0
    login: Login | None = None  # its provisioning login (HTTP), kept across its boots
    # what the engine decided outside the phone's loop (on a check-sync), for the loop to do
    decided: asyncio.Queue[list[Action]] = field(default_factory=asyncio.Queue)
    boots_done: int = 0
    busy_waits_s: list[float] = field(default_factory=list)  # real seconds waited after 503s
    errors: list[str] = field(default_factory=list)
    # after each boot: when, the reason it booted, the effective feature slots then
    timeline: list[tuple[datetime, str, tuple[int, ...]]] = field(default_factory=list)

    async def next_decided(self, timeout_s: float | None) -> list[Action] | None:
        """Actions decided on a check-sync (at once when some are queued), or None once
        ``timeout_s`` real seconds have passed without one. A cancellation always gets
        through, even when actions arrive at the same moment."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self.decided.get()
        except TimeoutError:
            return None


def fetch_record(at: datetime, method: str, name: str, reply: Reply) -> Fetch:
    """A phone's note of one answer: what came, its size and SHA-256 (of the header read, of
    the image downloaded without keeping it, of a file kept)."""
    if method != "GET":
        return Fetch(at, method, name, reply.status, 0, None, reply.said)
    if reply.digest is not None:  # downloaded without keeping it
        return Fetch(at, method, name, reply.status, reply.size or 0, reply.digest)
    ok = reply.status in (200, 206)
    digest = hashlib.sha256(reply.body).hexdigest() if ok else None
    return Fetch(at, method, name, reply.status, len(reply.body), digest, reply.said)


def failure_reason(exc: BaseException) -> str:
    """What went wrong, in words: ``connection refused`` rather than a bare errno."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.errno == errno.EINVAL:  # from 127.x to another host
        return "cannot reach the server from a loopback address (it is not on this machine)"
    return str(exc) or type(exc).__name__
