"""The fetch-record writer's spill file: held records on disk while the store refuses them.

A mixin of ``store.writer.FetchWriter`` (its state is the writer's): past ``spill_at`` records
held in memory the oldest batches are appended to the spill file, in order, with their batch
numbers; they are written back first once the store answers again, and at the next start if
the process stopped meanwhile; a damaged file is set aside, and what a stop cannot write is
kept there (or in the fallback file) for the next start or ``fleetkey fetches replay``.
Records the store refuses for what they hold go to the rejected file next to the fallback.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from pathlib import Path
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from fleetkey.errors import HeldFileError
from fleetkey.store.fetches import RecordSink, refused_for_content
from fleetkey.store.held import (
    append_records,
    appending,
    batch_lines,
    keep_at_stop,
    read_batches,
)
from fleetkey.store.records import FetchRecord

FAILURES: Final = (SQLAlchemyError, OSError)  # the store refusing, not a bug of ours
REJECTED_NAME: Final = "fetches-rejected.jsonl"  # next to the fallback file
log = logging.getLogger("fleetkey.store.writer")  # the writer's lines, whichever half says them


def said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"


class SpillFile:
    """The spill-file half of ``FetchWriter``: the attributes below are the writer's."""

    name: str
    spilled: int
    dropped: int
    rejected: int
    _sink: RecordSink
    _spill: Path | None
    _spill_at: int
    _batch_size: int
    _fallback: Path | None
    _held: deque[tuple[int, list[FetchRecord]]]
    _held_count: int
    _pending: deque[FetchRecord]
    _seq: itertools.count[int]

    def _wrote(self, batch: list[FetchRecord]) -> None:  # pragma: no cover  # the writer's
        raise NotImplementedError

    def _refused(self, exc: BaseException) -> None:  # pragma: no cover  # the writer's
        raise NotImplementedError

    def _sort_out(  # pragma: no cover  # the writer's
        self, batch: list[FetchRecord], first: BaseException
    ) -> list[FetchRecord]:
        raise NotImplementedError

    def _spill_held(self) -> None:
        """Move the oldest held batches to the spill file (appended, in order)."""
        assert self._spill is not None  # noqa: S101  # the caller checks
        try:
            with appending(self._spill) as handle:
                while self._held_count > self._spill_at // 2:
                    seq, batch = self._held[0]
                    handle.write(batch_lines(self.name, seq, batch))
                    handle.flush()
                    self._held.popleft()
                    self._held_count -= len(batch)
                    self.spilled += len(batch)
        except OSError as exc:  # the disk is full too: they stay in memory
            log.error("cannot spill held fetch records to %s: %s", self._spill, exc)  # noqa: TRY400

    def _write_spilled(self) -> bool:
        """The spill file's batches, oldest first; the file goes once all are in the store."""
        assert self._spill is not None  # noqa: S101  # spilled > 0 only with a spill file
        try:
            for writer, seq, batch in read_batches(self._spill):
                try:
                    if not self._sink.batch_written(writer, seq):
                        self._sink.insert_batch(batch, (writer, seq))
                        self._wrote(batch)
                except FAILURES as exc:
                    if not refused_for_content(exc):
                        self._refused(exc)
                        return False
                    if self._sort_out(batch, exc):
                        return False  # the store went away meanwhile: the file is read again
        except HeldFileError as exc:
            self._set_aside(exc)
            return True
        self._spill.unlink()
        self.spilled = 0
        return True

    def _set_aside(self, exc: HeldFileError) -> None:
        """A damaged spill file is renamed, not read for ever: what it held up to the damage
        is in the store, the rest counted as dropped and kept for the operator."""
        assert self._spill is not None  # noqa: S101  # only spill files are read back
        aside = self._spill.with_name(f"{self._spill.name}.damaged-{int(time.time())}")
        self._spill.rename(aside)
        self.dropped += self.spilled
        log.error("%s; the file is set aside as %s", exc, aside)  # said whole
        self.spilled = 0

    def _reject(self, records: list[FetchRecord], exc: BaseException) -> None:
        if not records:
            return
        self.rejected += len(records)
        self.dropped += len(records)
        kept = self._fallback.with_name(REJECTED_NAME) if self._fallback else None
        error = append_records(kept, records) if kept is not None else None
        log.error(
            "the store refused %d fetch records for what they hold (%s); %s",
            len(records),
            said(exc),
            f"kept in {kept}" if kept is not None and error is None else f"not kept ({error})",
        )

    def _give_up(self) -> None:
        """Stopping while the store refuses: what is held goes to the spill file, which the
        next start writes first; without one (or if it cannot be written), to the fallback
        file, for ``fleetkey fetches replay``."""
        batches = list(self._held)
        waiting = list(self._pending)
        for start in range(0, len(waiting), self._batch_size):  # no batch over the size: a
            # batch is written sorted by MAC, so batches are what keeps the records' order
            batches.append((next(self._seq), waiting[start : start + self._batch_size]))
        self._held.clear()
        self._pending.clear()
        self._held_count = 0
        spilled, dropped = keep_at_stop(self.name, batches, self._spill, self._fallback)
        self.spilled += spilled
        self.dropped += dropped
