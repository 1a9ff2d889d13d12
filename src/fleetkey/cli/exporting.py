"""``fleetkey fetches export``'s files: raw fetch records as CSV (the columns of ``fetches
--csv``) or Parquet (typed columns, for analysis tools; with the optional ``parquet`` extra,
pyarrow, which fleetkey does not otherwise need).

A file is written beside its place under a temporary name and put in place whole, so an
interrupted export never leaves a half-written file under the name asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TextIO

from fleetkey.cli.tables import Column, csv_text
from fleetkey.errors import FleetkeyError
from fleetkey.store.records import FetchRecord

CHUNK: Final = 10_000  # records formatted (CSV) or put in one row group (Parquet) at a time
FORMATS: Final = ("csv", "parquet")
PARQUET_FIELDS: Final = (  # name, Arrow type (as pyarrow names it)
    ("at", "timestamp_us_utc"),
    ("mac", "string"),
    ("method", "string"),
    ("path", "string"),
    ("protocol", "string"),
    ("status", "int32"),
    ("bytes", "int64"),
    ("digest", "string"),
    ("duration_ms", "float64"),
    ("remote_addr", "string"),
    ("user_agent", "string"),
    ("identified_by", "string"),
)


def pyarrow_modules() -> tuple[ModuleType, ModuleType]:
    """pyarrow and pyarrow.parquet, or a clear error when they are not installed."""
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise FleetkeyError(
            "Parquet export needs pyarrow, which is not installed",
            hint="install it with `pip install 'fleetkey[parquet]'`, or export CSV (--format csv)",
            field="format",
        ) from exc


def write_csv(
    handle: TextIO,
    records: Iterator[FetchRecord],
    columns: Sequence[Column],
    row: Callable[[FetchRecord], list[str]],
) -> int:
    """Records as RFC 4180 CSV under ``columns``' header; how many."""
    written = 0
    handle.write(csv_text(columns, []))
    chunk: list[list[str]] = []
    for record in records:
        chunk.append(row(record))
        if len(chunk) == CHUNK:
            handle.write(csv_text(columns, chunk).split("\r\n", 1)[1])
            written += len(chunk)
            chunk.clear()
    if chunk:
        handle.write(csv_text(columns, chunk).split("\r\n", 1)[1])
        written += len(chunk)
    return written


def write_parquet(into: Path, records: Iterator[FetchRecord]) -> int:
    """Records as a Parquet file at ``into`` (put in place whole), a row group per chunk."""
    pa, pq = pyarrow_modules()
    types = {
        "timestamp_us_utc": pa.timestamp("us", tz="UTC"),
        "string": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float64": pa.float64(),
    }
    schema = pa.schema([(name, types[kind]) for name, kind in PARQUET_FIELDS])
    partial = into.with_name(f".{into.name}.partial")
    written = 0
    try:
        with pq.ParquetWriter(str(partial), schema) as writer:
            chunk: list[FetchRecord] = []
            for record in records:
                chunk.append(record)
                if len(chunk) == CHUNK:
                    writer.write_table(_table(pa, schema, chunk))
                    written += len(chunk)
                    chunk.clear()
            if chunk or not written:  # an empty export is a file with the schema and no rows
                writer.write_table(_table(pa, schema, chunk))
                written += len(chunk)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(into)
    return written


def _table(pa: Any, schema: Any, records: list[FetchRecord]) -> Any:
    columns = {name: [getattr(r, name) for r in records] for name, _ in PARQUET_FIELDS}
    return pa.Table.from_pydict(columns, schema=schema)
