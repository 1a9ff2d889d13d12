"""A TFTP license answer's last DATA block is sent once the transfer's fetch record is
committed (``serve/commits.py``, as an HTTP license answer and FTP's ``226``).

A rollout's executor confirms a phone from the fetch records; a record still in a killed
server's queue is lost, and the phone would be notified again. A TFTP client has its file when
the last block (the one shorter than the block size) comes, so that block waits: when the
window reaches it, the transfer records itself as what it is about to send (200, the whole
size) through the commit gate, sends every block before it as usual, and sends the last once
the gate resolves. Nothing blocks: the gate's future calls back on the event loop.

While it waits the transfer's timer still runs, and an expiry resends the blocks not yet
acknowledged, as always; it is not counted as one of the tries a silent phone is allowed (the
transfer waits for the store, not for the phone). A phone that retransmits its last ACK is
ignored as before (no Sorcerer's Apprentice). The gate sends without the commit when the store
refuses records or none came within 5 s, as for HTTP. A single-block file (a license file is
~430 bytes) is sent whole after the commit; the phone's own timeout (seconds) is far longer
than a commit (milliseconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fleetkey.serve.tftp.sources import Source
from fleetkey.serve.tftp.transfer import ReadTransfer, Terms, TransferResult


class HeldReadTransfer(ReadTransfer):
    """RRQ whose last block waits for ``hold``'s future (``hold`` records the answer, once)."""

    def __init__(
        self,
        terms: Terms,
        done: Callable[[TransferResult], None],
        source: Source,
        size: int,
        hold: Callable[[], asyncio.Future[bool] | None],
    ) -> None:
        super().__init__(terms, done, source, size)
        self._hold: Callable[[], asyncio.Future[bool] | None] | None = hold
        self._holding = False
        self.recorded = False  # by ``hold``, before the end: not again at the end

    def _window_end(self, upto: int) -> int:
        if upto == self._last and self._hold is not None:
            hold, self._hold = self._hold, None
            future = hold()
            self.recorded = True
            if future is not None and not future.done():
                self._holding = True
                future.add_done_callback(self._release)
        return upto - 1 if self._holding and upto == self._last else upto

    def _release(self, _: object) -> None:
        """The record is in (or will not wait longer): the last block goes."""
        self._holding = False
        if self.outcome is None and self._sock is not None:
            self._send_window()

    def retry(self) -> None:
        if self._holding:
            self._tries = 0  # waiting for a commit, not for the phone
        super().retry()


def read_transfer(
    terms: Terms,
    done: Callable[[TransferResult], None],
    source: Source,
    size: int,
    hold: Callable[[], asyncio.Future[bool] | None] | None,
) -> ReadTransfer:
    """A read transfer; one whose last block waits for ``hold``'s future when given."""
    if hold is None:
        return ReadTransfer(terms, done, source, size)
    return HeldReadTransfer(terms, done, source, size, hold)
