"""Held fetch records on disk: the spill file a writer keeps while the store refuses records,
the fallback file it leaves at a stop, and replaying either into the store.

Both are JSON Lines, one fetch record a line (``at`` in ISO 8601); a spill file puts a head
line before each batch (its writer, number and size), so that every batch is written to the
store once whatever happens between (``fetch_batches``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, TextIO

from sqlalchemy import Engine

from fleetkey.errors import FleetkeyError, HeldFileError
from fleetkey.store.fetches import batch_written, insert_records
from fleetkey.store.records import FetchRecord

log = logging.getLogger(__name__)


def record_json(record: FetchRecord) -> dict[str, Any]:
    """A record as a JSON line of the spill and fallback files: a storage format, kept apart
    from ``records.fetch_json`` (what the CLI and API print, which may grow) on purpose."""
    return record._asdict() | {"at": record.at.isoformat()}


def record_from_json(document: dict[str, Any]) -> FetchRecord:
    """The inverse of :func:`record_json` (fallback files of earlier versions included)."""
    fields = {k: v for k, v in document.items() if k in FetchRecord._fields}
    fields["at"] = datetime.fromisoformat(str(fields["at"]))
    return FetchRecord(**fields)


@contextmanager
def appending(path: Path) -> Iterator[TextIO]:
    """``path`` opened to append, made private (0600) if new; left empty by a failed first
    write (a full disk), it is removed rather than left to look like held records."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            yield handle
    except OSError:
        with suppress(OSError):
            if path.stat().st_size == 0:
                path.unlink()
        raise


def append_records(path: Path, records: list[FetchRecord]) -> OSError | None:
    """Append records to a fallback-style file (one a line); the error if it cannot be."""
    try:
        with appending(path) as handle:
            handle.writelines(json.dumps(record_json(r)) + "\n" for r in records)
    except OSError as exc:
        return exc
    return None


def keep_at_stop(
    writer: str,
    batches: list[tuple[int, list[FetchRecord]]],
    spill: Path | None,
    fallback: Path | None,
) -> tuple[int, int]:
    """A writer stops while the store refuses ``batches``: they go to the spill file, which
    the next start writes first; without one (or if it cannot be written), to the fallback
    file, for ``fleetkey fetches replay``. Returns (records spilled, records dropped)."""
    count = sum(len(batch) for _, batch in batches)
    if not count:
        return 0, 0
    if spill is not None:
        try:
            with appending(spill) as handle:
                handle.writelines(batch_lines(writer, seq, b) for seq, b in batches)
        except OSError as exc:
            log.error("cannot spill held fetch records to %s: %s", spill, exc)  # noqa: TRY400
        else:
            log.error(
                "the store refused %d fetch records: kept in %s, written at the next start",
                count,
                spill,
            )
            return count, 0
    error = append_records(fallback, [r for _, b in batches for r in b]) if fallback else None
    if fallback is None or error is not None:
        log.error(
            "lost %d fetch records: the store refuses them%s",
            count,
            f" and {fallback} cannot be written ({error})" if fallback else "",
        )
    else:
        log.error(
            "the store refused %d fetch records; they are in %s (fleetkey fetches replay)",
            count,
            fallback,
        )
    return 0, count


def batch_lines(writer: str, seq: int, batch: list[FetchRecord]) -> str:
    head = json.dumps({"batch": seq, "writer": writer, "records": len(batch)})
    return head + "\n" + "".join(json.dumps(record_json(r)) + "\n" for r in batch)


def read_batches(path: Path) -> Iterator[tuple[str, int, list[FetchRecord]]]:
    """A spill file's batches: a head line, then its records. A batch torn by a crash while
    it was written (at the end of the file) is read as far as it goes; a line that cannot be
    read with more after it is damage, not a tear: :class:`HeldFileError` names it."""
    with path.open("rb") as handle:  # bytes: an undecodable line is one bad line, not a crash
        lines = enumerate(handle, 1)
        for number, line in lines:
            batch: list[FetchRecord] = []
            try:
                head = json.loads(line)
                writer, seq, size = str(head["writer"]), int(head["batch"]), int(head["records"])
            except (ValueError, KeyError, TypeError) as exc:
                _torn_or_damaged(path, handle, number, exc)
                log.warning("spill file %s ends in a torn batch head: not read", path)
                return
            try:
                for _ in range(size):
                    number, line = next(lines)
                    batch.append(record_from_json(json.loads(line)))
            except StopIteration:
                pass  # torn at the end
            except (ValueError, KeyError, TypeError) as exc:
                _torn_or_damaged(path, handle, number, exc)
            else:
                yield writer, seq, batch
                continue
            log.warning("spill file %s ends in a torn batch: read as far as it goes", path)
            if batch:
                yield writer, seq, batch
            return


def _torn_or_damaged(path: Path, handle: BinaryIO, number: int, exc: Exception) -> None:
    if handle.read(1):  # more follows the bad line: the file is damaged
        raise HeldFileError(
            f"{path} line {number}: not a fetch record or batch head ({exc})",
            hint="the file was changed or damaged; the batches before that line are in the store",
        ) from exc


def count_records(path: Path) -> int:
    return sum(len(batch) for _, _, batch in read_batches(path))


REPLAY_BATCH: Final = 5000


@dataclass(frozen=True, slots=True)
class Replayed:
    written: int  # records written to the store now
    already: int  # records of batches the store already had (an earlier replay)


def replay(engine: Engine, path: Path) -> Replayed:
    """Write a fallback or spill file's records to the store, in order, each batch once.

    A fallback file (one record a line) is cut into batches numbered by their place in the
    file, under a name made from the file's contents, so replaying it again (or after a crash
    halfway) writes nothing twice; a spill file keeps its writer's own batch numbers.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    name = f"replay:{digest.hexdigest()[:32]}"
    written = already = 0
    for writer_name, seq, batch in _replay_batches(path, name):
        if batch_written(engine, writer_name, seq):
            already += len(batch)
            continue
        insert_records(engine, batch, (writer_name, seq))
        written += len(batch)
    return Replayed(written, already)


def _replay_batches(path: Path, name: str) -> Iterator[tuple[str, int, list[FetchRecord]]]:
    with path.open(encoding="utf-8") as handle:
        first = handle.readline()
    if first and "batch" in json.loads(first):
        yield from read_batches(path)  # a spill file
        return
    for _ in _fallback_records(path):  # every line checked before anything is written
        pass
    batch: list[FetchRecord] = []
    seq = 0
    for record in _fallback_records(path):
        batch.append(record)
        if len(batch) == REPLAY_BATCH:
            seq += 1
            yield name, seq, batch
            batch = []
    if batch:
        yield name, seq + 1, batch


def _fallback_records(path: Path) -> Iterator[FetchRecord]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                yield record_from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise FleetkeyError(
                    f"{path} line {number}: not a fetch record ({exc})",
                    hint="the file is one JSON fetch record a line, as fleetkey serve writes it",
                ) from exc
