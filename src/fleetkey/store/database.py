"""Opening the database: URL rules, SQLite pragmas, sessions.

A SQLite database file is created here, owner-only (0600), before SQLite opens it: it holds the
phones' Digest HA1 (as good as their passwords for HTTP Digest). SQLite gives the ``-wal`` and
``-shm`` files it makes beside it the database file's mode, so they are private too.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from fleetkey.errors import DatabaseError

DB_ENV: Final = "FLEETKEY_DB"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000  # writers queue on SQLite's lock instead of failing
SQLITE_FILE_MODE: Final = 0o600


def default_url(data_root: Path) -> str:
    return f"sqlite:///{data_root / 'fleetkey.db'}"


def resolve_url(explicit: str | None, env: Mapping[str, str], data_root: Path) -> str:
    """``--db``, else ``FLEETKEY_DB``, else SQLite in the data directory."""
    return explicit or env.get(DB_ENV) or default_url(data_root)


def normalize_url(url: str) -> str:
    """Take a URL as users write it: ``postgresql://user@host:port/db`` uses psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"database URL {url!r} is not valid: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(
            f"database URL {url!r}: {parsed.get_backend_name()} is not supported, "
            "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        )
    return parsed.render_as_string(hide_password=False)


def open_engine(url: str, **options: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    normalized = normalize_url(url)
    if normalized.startswith("postgresql"):
        # psycopg prepares a statement after a few runs, and PostgreSQL may then plan it
        # generically: for `mac IN (1000 parameters)` that is a scan comparing every row with
        # every parameter (1 s instead of 20 ms). Custom plans keep the index.
        options.setdefault("connect_args", {}).setdefault(
            "options", "-c plan_cache_mode=force_custom_plan"
        )
    # errors name the statement, not its parameters: a batch's would put hundreds of rows,
    # phones' addresses and User-Agents among them, in every log line about it
    options.setdefault("hide_parameters", True)
    engine = create_engine(normalized, **options)
    if engine.dialect.name == "sqlite":
        path = sqlite_file(normalized)
        if path is not None:
            event.listen(engine, "do_connect", lambda *_: create_private(path))
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def sqlite_file(url: str) -> Path | None:
    """The database file a SQLite URL names; None for memory and ``uri=true`` URLs."""
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or parsed.query.get("uri") in ("true", "1"):
        return None
    return Path(database)


def create_private(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 unless it exists (SQLite reads a 0-byte file as
    an empty database); a missing directory is left for SQLite to report."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, flags, SQLITE_FILE_MODE))


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


PARAM_MARKERS: Final = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": ":{}"}
"""Bound-parameter markers by DB-API paramstyle, for statements handed to the driver."""

ROWS_A_STATEMENT: Final = 256  # rows of one multi-row statement on SQLite (a power of two)
# SQLite's bound-parameter limit when the driver cannot say: 32,766 since 3.32, 999 before
_SQLITE_PARAMETERS: Final = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999


def _sqlite_parameters(connection: Connection) -> int:
    """The connection's own limit on bound parameters (a build may set it either way)."""
    driver = connection.connection.dbapi_connection
    getlimit = getattr(driver, "getlimit", None)
    if getlimit is None:
        return _SQLITE_PARAMETERS
    return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


def execute_rows(
    connection: Connection, head: str, width: int, rows: Sequence[tuple[Any, ...]], tail: str = ""
) -> None:
    """``head VALUES (…), (…) tail`` for ``rows`` of ``width`` values, to the driver directly.

    On SQLite as multi-row statements of power-of-two sizes (at most ``ROWS_A_STATEMENT`` rows,
    so a few statement texts, each prepared once and cached by the driver): Python's sqlite3
    steps an executemany row by row and releases the GIL around every step, so under a busy
    event loop each row of a record batch was a GIL hand-off, two to four futex calls on each
    side (docs/serve.md, "The storm with history"). Elsewhere one executemany (psycopg sends
    its rows in a pipeline).
    """
    if not rows:
        return
    style = connection.dialect.paramstyle
    if connection.dialect.name != "sqlite":
        connection.exec_driver_sql(_statement(style, head, width, 1, tail), list(rows))
        return
    most = min(ROWS_A_STATEMENT, _sqlite_parameters(connection) // width)
    if most < 1:
        raise ValueError(f"a row of {width} values is over SQLite's bound-parameter limit")
    start = 0
    while start < len(rows):
        size = 1 << (min(most, len(rows) - start).bit_length() - 1)
        chunk = rows[start : start + size]
        values = tuple(itertools.chain.from_iterable(chunk))
        connection.exec_driver_sql(_statement(style, head, width, size, tail), values)
        start += size


@functools.cache
def _statement(style: str, head: str, width: int, count: int, tail: str) -> str:
    return f"{head} VALUES {values_list(style, width, count)}{tail}"


def values_list(paramstyle: str, width: int, count: int) -> str:
    """``(?, ?), (?, ?)``: ``count`` rows of ``width`` markers in the driver's paramstyle,
    numbered in order where the style numbers them."""
    marker = PARAM_MARKERS[paramstyle]
    numbers = iter(range(1, width * count + 1))
    return ", ".join(
        "(" + ", ".join(marker.format(next(numbers)) for _ in range(width)) + ")"
        for _ in range(count)
    )
