"""FTP's ``226`` for a license file is sent once the transfer's fetch record is committed.

A rollout's executor confirms a phone from the fetch records (``store/confirmation.py``); a
record still in a killed server's queue is lost, and a phone whose confirming record it was
would be notified again, for one more reboot. An HTTP license answer is sent only once its
record is committed (``serve/commits.py``). Over FTP the file has gone when its data
connection closes: stream mode ends a file by that close, and the kernel closes a killed
process's sockets with a FIN, so holding the close back would prove nothing. What waits is the
``226 Transfer complete.``: a client takes a transfer without it as failed (curl exits 28 or
56, ftplib raises, the emulator counts no answer) and asks again, and the answer it then gets
is recorded by the server that gives it.

The session (``serve.ftp.session``) records a completed ``RETR`` that confirms a delivery
(``serve.recorder.confirms``: a posted license, to a phone the server knows) through
:class:`Confirmations`, the FTP thread's record queue: the record goes to the event loop's
:class:`~fleetkey.serve.commits.CommitGate`, the one HTTP answers wait on (one writer, one
group commit for both), and the session holds its replies, the ``226`` first, until the gate
resolves. The gate's future resolves on the event loop; the FTP thread is woken through a
socket pair its poller watches, and releases the sessions whose record went in (or was sent
without its commit: the store refusing, or 5 s without a commit, as for HTTP).

Both hand-offs go by batches. The FTP thread gathers confirming records for ``HANDOFF_S``
(a timer on its poller, set by the first) and hands them to the event loop with one
``call_soon_threadsafe``; a session released is put in a queue and the FTP thread woken only
when no wake-up is pending (a commit releases its whole batch with one byte). A call and a
byte per record each woke the other thread on the server's one core (the woken thread takes
the core, then waits for the GIL the other holds). The 2 ms are small beside the writer's
group commit (an urgent batch within 50 ms of the last), which the ``226`` waits for anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections import deque
from typing import Any, Final, Protocol

from fleetkey.errors import FleetkeyError
from fleetkey.serve.commits import CommitGate
from fleetkey.serve.recorder import RecordQueue
from fleetkey.store.records import FetchRecord

HANDOFF_S: Final = 0.002  # confirming records gathered this long on the FTP thread
COMPLETE: Final = b"226 Transfer complete.\r\n"  # pyftpdlib's words for a finished transfer
HELD: Final = ""  # a transfer's closing reply when its 226 waits for the record's commit
log = logging.getLogger(__name__)


class Waiting(Protocol):
    """A session whose ``226`` waits (``serve.ftp.session.SessionMixin``)."""

    def fk_confirmed(self) -> None: ...


class Confirmations:
    """The FTP thread's record queue: records go to the writer as they come, except the one a
    session announced with :meth:`expect`, which goes to the gate on the event loop."""

    def __init__(
        self, writer: RecordQueue, gate: CommitGate, *, handoff_s: float = HANDOFF_S
    ) -> None:
        self._writer = writer
        self._gate = gate
        self._handoff_s = handoff_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ioloop: Any = None  # the FTP thread's poller (its timers)
        self._timer: Any = None  # the hand-off's, while records gather
        self._expecting: Waiting | None = None
        self._took = False
        self._ready: deque[Waiting] = deque()  # appended on the loop, taken on the FTP thread
        self._woken = False  # a wake-up of the FTP thread is pending (it takes all ready)
        self._outgoing: list[tuple[FetchRecord, Waiting]] = []  # gathering, FTP thread
        self._waker: _Waker | None = None
        self.not_queued = 0  # confirming records the writer refused (not recorded): on the
        # loop (the gate refused them) or on the FTP thread (``hand_over`` with no loop)

    @property
    def depth(self) -> int:
        return self._writer.depth

    def attach(self, loop: asyncio.AbstractEventLoop, ioloop: Any) -> None:
        """Wait on ``loop``'s gate from now on, waking the FTP thread's ``ioloop``."""
        self._woken = False  # a wake-up pending on an earlier poller will never come
        self._waker = _Waker(self)
        ioloop.register(self._waker.fileno(), self._waker, ioloop.READ)
        self._ioloop = ioloop
        self._loop = loop

    def detach(self) -> None:
        """No more waiting (the FTP thread has stopped: its sessions are closed). Records
        still gathering go to the writer plainly (``hand_over`` without a loop), and nothing
        of this poller's is left to a later ``attach``: its timer, a wake-up it owed."""
        self._loop = None
        self.hand_over()
        waker, self._waker = self._waker, None
        if waker is not None:
            waker.close()
        self._ioloop = None
        self._woken = False
        self._ready.clear()  # their sessions closed with the FTP thread

    @property
    def registered(self) -> int:
        """Descriptors this adds to the FTP poller (not connections: ``_Server._map_len``)."""
        return int(self._waker is not None)

    def expect(self, session: Waiting) -> None:
        """The next record submitted (FTP thread) is ``session``'s confirming one."""
        self._expecting, self._took = session, False

    def took(self) -> bool:
        """Whether that record went to the gate (then the session waits for ``fk_confirmed``)."""
        took, self._took, self._expecting = self._took, False, None
        return took

    def submit(self, record: FetchRecord, timeout: float | None = None) -> None:
        session, loop = self._expecting, self._loop
        if session is None or loop is None:
            self._writer.submit(record, timeout=timeout)
            return
        self._expecting = None
        self._outgoing.append((record, session))
        if self._timer is None:  # the first of a batch: handed over in HANDOFF_S
            self._timer = self._ioloop.call_later(self._handoff_s, self.hand_over)
        self._took = True

    def hand_over(self) -> None:
        """On the FTP thread (the timer, or its stop): the records gathered, to the loop; when
        the loop has closed, to the writer plainly, and their sessions go on at once."""
        timer, self._timer = self._timer, None
        if timer is not None and not timer.cancelled:
            timer.cancel()  # called before its time (the thread is stopping)
        batch, self._outgoing = self._outgoing, []
        if not batch:
            return
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._on_loop, batch)
            except RuntimeError:  # the loop has closed (the server is stopping)
                pass
            else:
                return
        for record, session in batch:  # nobody waits on the gate: plainly, and go on
            try:
                self._writer.submit(record, timeout=0)
            except FleetkeyError:
                self.not_queued += 1
            session.fk_confirmed()

    def _on_loop(self, batch: list[tuple[FetchRecord, Waiting]]) -> None:
        """On the event loop: a batch of records handed over, to the gate."""
        gate = self._gate
        for record, session in batch:
            try:
                future = gate.submit(record)
            except FleetkeyError:  # the queue full (or the writer stopped): the 226 goes, counted
                self.not_queued += 1
                future = None
            if future is None:
                self._release(session)
            else:
                future.add_done_callback(functools.partial(self._released, session))

    def _released(self, session: Waiting, _: object) -> None:
        self._release(session)

    def _release(self, session: Waiting) -> None:
        self._ready.append(session)
        if self._woken:
            return  # the FTP thread has a wake-up coming, and takes every session ready
        waker = self._waker
        if waker is not None:
            self._woken = True
            waker.wake()

    def _on_thread(self) -> None:
        """The FTP thread, woken: the sessions whose record is in send their ``226``."""
        self._woken = False  # first: a session released from now on wakes it again
        ready = self._ready
        while ready:
            ready.popleft().fk_confirmed()


class _Waker:
    """A socket pair the FTP poller watches (pyftpdlib's dispatcher interface, what its loop
    and ``_Poller`` call); a byte sent from the event loop wakes the FTP thread."""

    def __init__(self, owner: Confirmations) -> None:
        self._owner = owner
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._fileno = self._read.fileno()
        self._closed = False

    def fileno(self) -> int:
        return self._fileno

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway; closed: stopped
            self._write.send(b"\0")

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._read.recv(4096):
                pass
        self._owner._on_thread()

    def handle_close(self) -> None:
        self.close()

    def handle_error(self) -> None:  # a session's release raised: the others go on next time
        log.exception("releasing FTP answers after their commit failed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._read.close()
            self._write.close()
