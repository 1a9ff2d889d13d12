"""Readiness of the transfer sockets through one epoll set that the event loop watches as one fd.

Every TFTP transfer has a socket of its own (its TID), open for a few milliseconds. Handing
each to the event loop (``loop.add_reader`` / ``remove_reader``) cost uvloop ~6.5 µs of a
transfer's ~60 µs (a handle, a poll object, a look-up of transports by fd that raises inside).
Here a socket joins a Linux epoll set with one system call and leaves it by being closed (the
kernel drops a closed file from every epoll set); the loop wakes us when any of them is ready
and one ``epoll_wait`` returns all of them at once.

Elsewhere than Linux (no ``select.epoll``) the loop's own readers are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import Callable
from typing import Final

BATCH: Final = 256  # ready sockets taken per wake-up; more wake the loop again (level-triggered)


class Poller:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._readers: dict[int, Callable[[], None]] = {}
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        if self._epoll is not None:
            loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, readable: Callable[[], None]) -> None:
        """Call ``readable()`` whenever ``fd`` has something to read, until ``forget(fd)``."""
        if self._epoll is None:
            self._loop.add_reader(fd, readable)
            return
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = readable

    def forget(self, fd: int) -> None:
        """Stop calling back for ``fd``; close it right after (closing leaves the epoll set)."""
        if self._epoll is None:
            self._loop.remove_reader(fd)
            return
        self._readers.pop(fd, None)

    def _ready(self) -> None:
        assert self._epoll is not None  # noqa: S101  # registered only with an epoll set
        readers = self._readers
        for fd, _ in self._epoll.poll(0, BATCH):
            readable = readers.get(fd)
            if readable is not None:
                readable()
            else:  # forgotten (and closed, which left the set) or forgotten but still open
                with contextlib.suppress(OSError):
                    self._epoll.unregister(fd)

    def __len__(self) -> int:
        return len(self._readers)

    def close(self) -> None:
        """Stop watching; transfers still open (an upload's dally) just close their sockets."""
        if self._epoll is not None and not self._epoll.closed:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
