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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine

from fleetkey.errors import FleetkeyError
from fleetkey.store.fetches import batch_written, insert_records
from fleetkey.store.records import FetchRecord

log = logging.getLogger(__name__)


def record_json(record: FetchRecord) -> dict[str, Any]:
    """A record as a JSON line of the spill and fallback files."""
    return record._asdict() | {"at": record.at.isoformat()}


def record_from_json(document: dict[str, Any]) -> FetchRecord:
    """The inverse of :func:`record_json` (fallback files of earlier versions included)."""
    fields = {k: v for k, v in document.items() if k in FetchRecord._fields}
    fields["at"] = datetime.fromisoformat(str(fields["at"]))
    return FetchRecord(**fields)


def batch_lines(writer: str, seq: int, batch: list[FetchRecord]) -> str:
    head = json.dumps({"batch": seq, "writer": writer, "records": len(batch)})
    return head + "\n" + "".join(json.dumps(record_json(r)) + "\n" for r in batch)


def read_batches(path: Path) -> Iterator[tuple[str, int, list[FetchRecord]]]:
    """A spill file's batches: a head line, then its records. A batch torn by a crash while
    it was written is read as far as it goes."""
    with path.open(encoding="utf-8") as handle:
        lines = iter(handle)
        for line in lines:
            batch: list[FetchRecord] = []
            try:
                head = json.loads(line)
                writer, seq = str(head["writer"]), int(head["batch"])
            except (ValueError, KeyError, TypeError):
                log.warning("spill file %s ends in a torn batch head: not read", path)
                return
            try:
                for _ in range(int(head["records"])):
                    batch.append(record_from_json(json.loads(next(lines))))
            except (StopIteration, ValueError, KeyError, TypeError):
                log.warning("spill file %s ends in a torn batch: read as far as it goes", path)
                if batch:
                    yield writer, seq, batch
                return
            yield writer, seq, batch


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
