"""The HTTP server's connections: caps, and time limits on clients that send too slowly.

A client that opens connections and sends nothing, or a request byte by byte (slowloris),
must not hold the server's file descriptors: 1,100 such connections once left no phone
answered. So:

- a request's headers must arrive within ``header_s`` of the connection opening (or of the
  previous answer on a keep-alive connection: then ``idle_s``), its body within ``body_s`` of
  the headers; a client that started a request and missed the time gets 408, an idle one is
  closed without a word;
- an answer the client stops reading (the socket's buffer full) for ``send_s`` is abandoned;
- at most ``per_address`` connections from one address (a NAT may hide a whole site's phones
  booting at once behind one, so the default is generous) and ``total`` in all; at the total,
  the connections that have waited longest for a request are closed first, a batch at a time,
  so a new phone gets in: slow clients, which wait longest, go first.

Deadlines are checked by one sweep a second over all connections (no timer per connection: a
timer costs more than a license answer). Times are ``time.monotonic()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import resource
import time
from dataclasses import dataclass
from typing import Final, Protocol

log = logging.getLogger(__name__)

SWEEP_EVERY_S: Final = 1.0
EVICT_SHARE: Final = 0.01  # of the total cap, closed at once when it is reached
NEVER: Final = math.inf


def default_total() -> int:
    """Connections in all: the file descriptors this process may open, less room for the rest
    (TFTP transfers, the database, uploads)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 16_384
    return max(16, min(16_384, soft - min(1024, soft // 4)))


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_s: float = 10.0  # the first request's headers, from the connection's start
    idle_s: float = 15.0  # the next request's headers on a keep-alive connection
    body_s: float = 30.0  # a request's body, from its headers
    send_s: float = 60.0  # an answer the client does not read
    per_address: int = 4096  # a site's phones behind one NAT boot at once
    total: int = 0  # 0: from the open-file limit (default_total)


class Connection(Protocol):
    """What the registry needs of a connection (``HttpProtocol``)."""

    remote: str | None
    waiting_since: float  # when it began waiting for a request; NEVER while answering
    deadline: float  # when it must have sent what it owes; NEVER while answering

    def stalled_since(self) -> float:
        """When writing stopped being possible (NEVER when it is possible)."""
        ...

    def timed_out(self) -> None:
        """Its deadline passed: answer 408 if a request was begun, and close."""
        ...

    def abandon(self) -> None:
        """Close at once (the client stopped reading, room is needed, or the grace is over)."""
        ...

    def close_when_idle(self) -> None:
        """Graceful stop: close now if nothing is in flight, else after the current answer."""
        ...


class Connections:
    """Every open connection of one server: counts, caps and the sweep."""

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self.limits = limits or ConnectionLimits()
        self.total_cap = self.limits.total or default_total()
        self.open: set[Connection] = set()
        self._per_address: dict[str | None, int] = {}
        self.refused = 0  # connections closed at once: over a cap
        self.timed_out = 0  # closed for a missed deadline
        self.evicted = 0  # closed to make room for new ones

    def __len__(self) -> int:
        return len(self.open)

    def join(self, connection: Connection) -> bool:
        """Count a new connection in; False when it must be closed at once (over a cap)."""
        address = connection.remote
        count = self._per_address.get(address, 0)
        if count >= self.limits.per_address:
            self.refused += 1
            return False
        if len(self.open) >= self.total_cap:
            self._evict()
            if len(self.open) >= self.total_cap:
                self.refused += 1
                return False
        self._per_address[address] = count + 1
        self.open.add(connection)
        return True

    def leave(self, connection: Connection) -> None:
        if connection not in self.open:
            return
        self.open.discard(connection)
        address = connection.remote
        left = self._per_address.get(address, 1) - 1
        if left > 0:
            self._per_address[address] = left
        else:
            self._per_address.pop(address, None)

    def sweep(self, now: float) -> None:
        """Close what missed its deadline or stopped reading its answer."""
        send_s = self.limits.send_s
        for connection in list(self.open):
            if connection.deadline < now:
                self.timed_out += 1
                connection.timed_out()
            elif now - connection.stalled_since() > send_s:
                self.timed_out += 1
                connection.abandon()

    def _evict(self) -> None:
        """Close the connections that have waited longest for a request (a batch)."""
        waiting = [c for c in self.open if c.waiting_since != NEVER]
        batch = max(1, int(self.total_cap * EVICT_SHARE))
        waiting.sort(key=lambda c: c.waiting_since)
        for connection in waiting[:batch]:
            self.evicted += 1
            connection.abandon()
            self.leave(connection)

    async def keep_swept(self, stop: asyncio.Event) -> None:
        """Sweep every second until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SWEEP_EVERY_S):  # not wait_for (CPython gh-86296)
                    await stop.wait()
            self.sweep(time.monotonic())
