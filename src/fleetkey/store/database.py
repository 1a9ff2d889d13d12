"""Opening the database: URL rules, SQLite pragmas, sessions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from fleetkey.errors import DatabaseError

DB_ENV: Final = "FLEETKEY_DB"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000  # writers queue on SQLite's lock instead of failing


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
    engine = create_engine(normalized, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


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
