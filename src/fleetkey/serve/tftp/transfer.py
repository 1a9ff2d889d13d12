"""One TFTP transfer on its own UDP port (its TID): sending a file, or receiving an upload.

Sending (RRQ): a window of ``windowsize`` DATA blocks, then wait for an ACK. An ACK of a block
in the window slides it; a repeated ACK changes nothing (no Sorcerer's Apprentice: only the
timer retransmits), and after ``timeout`` the unacknowledged window is sent again, up to
``retries`` times. Block numbers are 16 bits and roll over to 0, so images of more than 65535
blocks go through. Receiving (WRQ): in-order blocks are kept and acknowledged per window, an
out-of-order one makes the receiver acknowledge the last good block, and after the final ACK
the port stays open one timeout to acknowledge a repeated last block.

Packets from any other address or port get error 5 and do not touch the transfer.
"""

from __future__ import annotations

import _socket
import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from fleetkey.core import tftp as packets
from fleetkey.core.tftp import ErrorCode, Negotiated, Opcode
from fleetkey.serve.tftp.deadlines import Deadlines
from fleetkey.serve.tftp.poller import Poller
from fleetkey.serve.tftp.sources import Source

log = logging.getLogger(__name__)

RETRIES: Final = 5
MAX_DATAGRAM: Final = 65536
Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Terms:
    """What was agreed for one transfer: with whom, its options, the OACK saying so (None:
    plain RFC 1350), and how many times a packet is sent before giving up."""

    peer: Address
    options: Negotiated
    oack: bytes | None
    retries: int = RETRIES


@dataclass(slots=True)
class TransferResult:
    status: int  # as in fetch records: 200 done, 408 timed out, 499 client gave up, ...
    sent: int = 0  # payload bytes acknowledged (RRQ) or received (WRQ)
    retransmits: int = 0
    detail: str = ""
    payload: bytes | None = None  # a completed upload, for the service to store


def _reported(outcome: TransferResult) -> None:
    """Stands in for a transfer's ``done`` once it was called: a transfer reports once."""


class _Transfer:
    """A transfer on its own non-blocking UDP socket, read when the ``Poller`` says so.

    A raw socket rather than an asyncio transport: creating a datagram endpoint (a coroutine,
    a task, a transport) cost more than the rest of a one-block transfer.
    """

    def __init__(self, terms: Terms, done: Callable[[TransferResult], None]) -> None:
        self._peer = terms.peer
        self._options = terms.options
        self._oack = terms.oack
        self._done = done
        self._retries = terms.retries
        self._tries = 0
        self._deadline = 0.0  # loop time at which the transfer's timeout expires
        self._sock: _socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: Poller | None = None
        self._deadlines: Deadlines | None = None
        self.outcome: TransferResult | None = None
        self.started = time.perf_counter()
        self.retransmits = 0

    def open(self, host: str, poller: Poller, deadlines: Deadlines) -> None:
        """Bind a fresh port (the transfer's TID) on ``host`` and start; OSError if none.

        ``poller`` reads its socket, ``deadlines`` keeps its retransmission timeout.
        """
        # the C-level socket type: the Python wrapper's __init__ and close cost ~10 % here
        # non-blocking from birth: no fcntl system calls to make it so
        sock = _socket.socket(
            _socket.AF_INET6 if ":" in host else _socket.AF_INET,
            _socket.SOCK_DGRAM | _socket.SOCK_NONBLOCK,
        )
        try:
            sock.bind((host, 0))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._poller = poller
        self._deadlines = deadlines
        poller.add(sock.fileno(), self._readable)
        self.begin()

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable and the like: the phone is gone
                self.finish(TransferResult(499, detail=f"network error: {exc}"), notify=False)
                return
            self.datagram_received(data, addr if len(addr) == 2 else addr[:2])
            sock = self._sock

    def begin(self) -> None:
        raise NotImplementedError

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.outcome is not None and not self.dallying:
            return
        if addr != self._peer:  # RFC 1350 §4: a stranger's TID gets error 5, nothing else
            self.send(packets.error(ErrorCode.UNKNOWN_TID, "unknown transfer ID"), addr)
            return
        header = packets.head(data)
        if header is None:
            return  # too short to be anything: dropped
        opcode, number = header
        if opcode == Opcode.ERROR:
            said = data[4:].split(b"\0", 1)[0].decode("ascii", "replace")[:100]
            self.finish(
                TransferResult(499, detail=f"the phone ended it: error {number} {said!r}"),
                notify=False,
            )
        else:
            self.received(opcode, number, data)

    dallying = False

    def received(self, opcode: int, number: int, data: bytes) -> None:
        raise NotImplementedError

    def send(self, packet: bytes, addr: Address | None = None) -> None:
        """Send now, or not at all: a full socket buffer is a lost packet, the timer resends."""
        if self._sock is not None:
            try:  # noqa: SIM105  # not contextlib.suppress: this runs for every packet
                self._sock.sendto(packet, addr or self._peer)
            except (BlockingIOError, InterruptedError, ConnectionRefusedError):
                pass

    def arm(self) -> None:
        """Expire ``timeout`` from now. Scheduled once: progress moves the deadline, and an
        expiry that comes early schedules itself again (rescheduling at every packet cost
        more than the rest of a packet's handling)."""
        if self._loop is None or self._deadlines is None:
            return  # not open (no port): nothing to time
        self._deadline = self._loop.time() + self._options.timeout_s
        if self not in self._deadlines:  # scheduled already: for this deadline or earlier
            self._deadlines.schedule(self, self._deadline)

    def expired(self) -> None:
        """Called by ``Deadlines`` once the scheduled deadline has passed."""
        if self._loop is None or self._deadlines is None:  # pragma: no cover  # set by open
            return
        if self._loop.time() < self._deadline:  # progress since it was set: not yet
            self._deadlines.schedule(self, self._deadline)
            return
        if self.outcome is not None:  # ended (an upload's dally after its final ACK is over)
            self.close()
            return
        self._tries += 1
        if self._tries > self._retries:
            self.finish(
                TransferResult(408, detail=f"no answer after {self._retries} retransmissions")
            )
            return
        self.retry()

    def retry(self) -> None:
        raise NotImplementedError

    def progressed(self) -> None:
        self._tries = 0
        self.arm()

    def finish(self, outcome: TransferResult, *, notify: bool = True, linger: bool = False) -> None:
        """End the transfer once: tell the phone on failure, report, close (or dally)."""
        if self.outcome is not None:
            return
        if notify and outcome.status >= 400 and outcome.status != 499:
            self.send(packets.error(ErrorCode.NOT_DEFINED, outcome.detail or "transfer failed"))
        outcome.retransmits = self.retransmits
        self.outcome = outcome
        done, self._done = self._done, _reported
        # ``done`` is usually a closure over this transfer: dropping it here cuts that cycle,
        # so the transfer is freed by reference counting, not by the cyclic collector
        done(outcome)
        if linger:
            self.dallying = True
            self.arm()
        else:
            self.close()

    def close(self) -> None:
        if self._deadlines is not None:
            self._deadlines.cancel(self)
        if self._sock is not None:
            if self._poller is not None:
                self._poller.forget(self._sock.fileno())
            self._sock.close()
            self._sock = None


class ReadTransfer(_Transfer):
    """RRQ: send ``source`` (``size`` bytes) in DATA blocks."""

    def __init__(
        self, terms: Terms, done: Callable[[TransferResult], None], source: Source, size: int
    ) -> None:
        super().__init__(terms, done)
        self._source = source
        self._size = size
        self._last = size // terms.options.blksize + 1  # the final block is short, maybe empty
        self._acked = 0  # absolute number of the highest block acknowledged
        self._sent_to = 0  # absolute number of the highest block sent

    def begin(self) -> None:
        if self._oack is not None:
            self.send(self._oack)  # ACK 0 starts the data
            self.arm()
        else:
            self._send_window()

    def _send_window(self, resend: bool = False) -> None:
        blksize = self._options.blksize
        first = self._acked + 1
        upto = self._window_end(min(self._acked + self._options.windowsize, self._last))
        for block in range(first, upto + 1):
            if resend or block > self._sent_to:
                payload = self._source.read((block - 1) * blksize, blksize)
                self.send(packets.data(block, payload))
        self._sent_to = max(self._sent_to, upto)
        self.arm()

    def _window_end(self, upto: int) -> int:
        """The last block the window may send now (``serve.tftp.held`` holds the final one)."""
        return upto

    def received(self, opcode: int, number: int, data: bytes) -> None:
        if opcode != Opcode.ACK:
            self.finish(TransferResult(400, detail=f"opcode {opcode} in a read transfer"))
            return
        if self._sent_to == 0:  # waiting for ACK 0 of the OACK
            if number == 0:
                self._tries = 0
                self._send_window()
            return
        ahead = (number - self._acked) & 0xFFFF
        if ahead == 0 or self._acked + ahead > self._sent_to:
            return  # a repeated ACK, or one for a block never sent: the timer handles loss
        self._acked += ahead
        if self._acked >= self._last:
            self.finish(TransferResult(200, sent=self._size))
            return
        self._tries = 0
        self._send_window()

    def retry(self) -> None:
        if self._acked == 0 and self._oack is not None and self._sent_to == 0:
            self.send(self._oack)
            self.retransmits += 1
            self.arm()
            return
        self.retransmits += min(self._sent_to, self._last) - self._acked
        self._send_window(resend=True)

    def close(self) -> None:
        super().close()
        self._source.close()

    def acknowledged_bytes(self) -> int:
        return min(self._acked * self._options.blksize, self._size)

    def sent_bytes(self) -> int:
        """The payload of every block sent, acknowledged or not."""
        return min(self._sent_to * self._options.blksize, self._size)

    def finish(self, outcome: TransferResult, *, notify: bool = True, linger: bool = False) -> None:
        """A transfer the phone ended (499: an updater that read an image's first block and
        stopped) is recorded with the bytes that went out, as an FTP transfer cut short is;
        one that failed otherwise with the bytes the phone acknowledged."""
        if outcome.status == 499:
            outcome.sent = self.sent_bytes()
        elif outcome.status != 200:
            outcome.sent = self.acknowledged_bytes()
        super().finish(outcome, notify=notify, linger=linger)


class WriteTransfer(_Transfer):
    """WRQ: receive up to ``cap`` bytes; the outcome carries them for the service to store."""

    def __init__(self, terms: Terms, done: Callable[[TransferResult], None], cap: int) -> None:
        super().__init__(terms, done)
        self._cap = cap
        self._chunks: list[bytes] = []
        self._size = 0
        self._expected = 1  # absolute number of the next block wanted
        self._in_window = 0
        # the last block is in and the service is storing the upload: its ACK waits for the
        # file to be on disk, so a phone never hears "received" of an upload that was lost
        self._storing = False

    def begin(self) -> None:
        self.send(self._oack if self._oack is not None else packets.ack(0))
        self.arm()

    def received(self, opcode: int, number: int, data: bytes) -> None:
        if self.dallying:  # the final ACK was lost: say it again (once there is one to say)
            if (
                not self._storing
                and opcode == Opcode.DATA
                and number == (self._expected - 1) & 0xFFFF
            ):
                self.send(packets.ack(number))
            return
        if opcode != Opcode.DATA:
            self.finish(TransferResult(400, detail=f"opcode {opcode} in a write transfer"))
            return
        if number != self._expected & 0xFFFF:
            self._in_window = 0
            self.send(packets.ack(self._expected - 1))  # where we are: resend from there
            return
        payload = data[4:]
        if len(payload) > self._options.blksize:
            self.finish(
                TransferResult(400, detail=f"block larger than blksize {self._options.blksize}")
            )
            return
        self._size += len(payload)
        if self._size > self._cap:
            self.send(packets.error(ErrorCode.DISK_FULL, f"larger than {self._cap} bytes"))
            self.finish(
                TransferResult(413, sent=self._size, detail="upload too large"), notify=False
            )
            return
        self._chunks.append(payload)
        self._expected += 1
        self._in_window += 1
        final = len(payload) < self._options.blksize
        if final:  # acknowledged by ``stored``, once the service has it on disk
            body = b"".join(self._chunks)
            self._chunks = []
            self._storing = True
            self.finish(TransferResult(201, sent=self._size, payload=body), linger=True)
            return
        if self._in_window >= self._options.windowsize:
            self._in_window = 0
            self.send(packets.ack(self._expected - 1))
        self.progressed()

    def stored(self, failure: str | None) -> None:
        """The service stored the upload (``failure`` None): the final ACK, then the dally.
        Or it could not: error 3 (disk full, RFC 1350's only storage error) with why, and close.
        """
        self._storing = False
        if failure is None:
            self.send(packets.ack((self._expected - 1) & 0xFFFF))
            self.arm()
        else:
            self.send(packets.error(ErrorCode.DISK_FULL, failure))
            self.close()

    def expired(self) -> None:
        if self._storing:  # a slow disk is not the phone's silence: wait for ``stored``
            self.arm()
            return
        super().expired()

    def retry(self) -> None:
        self.retransmits += 1
        if self._expected == 1 and self._oack is not None:
            self.send(self._oack)
        else:
            self.send(packets.ack(self._expected - 1))
        self.arm()
