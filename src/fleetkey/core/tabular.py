"""Operator CSV input: decoded as UTF-8, checked header, every bad row reported by its line.

All rows or none: callers get the parsed rows only when every row is good; otherwise one
RowError lists each bad line with its reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from fleetkey.errors import FleetkeyError, InputError, RowError

T = TypeVar("T")


def read_rows(
    data: bytes,
    *,
    source: str,
    required: Sequence[str],
    parse: Callable[[dict[str, str]], T],
    key: Callable[[T], str],
    optional: Sequence[str] = (),
    outcome: str = "nothing was done",
) -> list[T]:
    """Parse every row with ``parse`` (column → stripped cell); rows must differ by ``key``."""
    text = decode(data, source)
    reader = csv.reader(io.StringIO(text, newline=""))
    records = _records(reader, source)
    header = [cell.strip().lower() for cell in next(records, [])]
    if not any(header):
        raise InputError(f"{source}: the file is empty, expected a header {','.join(required)}")
    allowed = (*required, *optional)
    if (
        any(name not in header for name in required)
        or any(n not in allowed for n in header)
        or len(set(header)) != len(header)
    ):
        also = f", {', '.join(optional)} optional" if optional else ""
        raise InputError(
            f"{source}: header {','.join(header)!r} is not usable: columns "
            f"{', '.join(required)} are required{also}, each once"
        )
    rows: list[T] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for cells in records:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            problems.append(f"line {line}: {len(cells)} columns, expected {len(header)}")
            continue
        try:
            row = parse({name: cell.strip() for name, cell in zip(header, cells, strict=True)})
        except FleetkeyError as exc:
            problems.append(f"line {line}: {exc.message}")
            continue
        identity = key(row)
        if identity in seen:
            problems.append(f"line {line}: MAC {identity} is already on line {seen[identity]}")
            continue
        seen[identity] = line
        rows.append(row)
    if problems:
        raise RowError(source, problems, outcome)
    if not rows:
        raise InputError(f"{source}: no rows after the header, {outcome}")
    return rows


def _records(reader: Iterator[list[str]], source: str) -> Iterator[list[str]]:
    """The reader's records; what the csv module cannot read is an InputError naming the line
    (a field over its 128 KiB limit, a NUL byte): a file fleetkey cannot take, not a bug."""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = getattr(reader, "line_num", 0)
            raise InputError(
                f"{source}: line {line} cannot be read as CSV: {exc}",
                hint="check that the file is the CSV you meant (one row per line)",
            ) from exc
        yield cells


def decode(data: bytes, source: str) -> str:
    """UTF-8 (a byte-order mark is fine); the error names the line and byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{source}: line {line}, byte {exc.start} is not UTF-8 "
            f"({data[exc.start : exc.start + 1]!r})",
            hint="save the CSV as UTF-8",
        ) from exc
