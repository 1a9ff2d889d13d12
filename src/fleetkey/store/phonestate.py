"""Per-phone state: what the fleet is now, kept current by the fetch-record writer.

For each phone, its newest fetch record (``phone_seen``: time, address, protocol, User-Agent,
firmware) and, per license file, its newest request and its newest answer that served a version
(``phone_files``: time, path, protocol, status, digest). The writer folds each batch into these
(:func:`apply`, upserts in the batch's own transaction), so readers never scan the history and
the history can age out (``store/retention.py``) while a phone keeps its last fetch.

The reading API, for the CLI, the alerts, rollout confirmation and the dashboard:
:func:`seen`, :func:`seen_many`, :func:`file_fetches`, :func:`last_requests` and
:func:`served_since`. :func:`check` compares the state with the raw records (``fleetkey db
check``); :func:`rebuild` computes it from them (migration 0011).

"Newest" is by time, then by the order records were written, as the raw records sort by
(time, id): a batch's rows go in sorted by (MAC, time), and a late record older than the stored
state never replaces it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple, cast

from sqlalchemy import ColumnElement, Connection, Table, and_, column, exists, func, inspect, select
from sqlalchemy import table as sa_table
from sqlalchemy.orm import InstrumentedAttribute, Session

from fleetkey.core.useragent import parse_user_agent
from fleetkey.store.database import execute_rows
from fleetkey.store.inventory import LOOKUP_CHUNK
from fleetkey.store.records import utc
from fleetkey.store.schema import (
    EPOCH,
    FetchRow,
    PhoneFileRow,
    PhoneRow,
    PhoneSeenRow,
    epoch_micros,
)
from fleetkey.store.texts import agent_of, path_of

# the writer's row layout (store/fetches.py inserts tuples in this column order); the state
# reads the first twelve, which every revision since 0011 has (``day`` came with 0013)
RECORD_COLUMNS: Final = (
    "mac",
    "at",
    "path",
    "protocol",
    "method",
    "status",
    "bytes",
    "digest",
    "remote_addr",
    "user_agent",
    "duration_ms",
    "identified_by",
)
ROW_COLUMNS: Final = (*RECORD_COLUMNS, "day")
_MAC, _AT, _PATH, _PROTOCOL, _STATUS, _DIGEST, _ADDRESS, _AGENT = 0, 1, 2, 3, 5, 7, 8, 9
LICENSE_SUFFIX: Final = "-license.cfg"
SERVED_BELOW: Final = 400  # an answer under 400 with a digest served (or confirmed) a version
REQUEST: Final = "request"
SERVED: Final = "served"

Row = tuple[Any, ...]
FileKey = tuple[str, str, str]  # mac, file name, kind


@dataclass(frozen=True, slots=True)
class Seen:
    """A phone's newest fetch record."""

    mac: str
    at: datetime
    address: str | None
    protocol: str
    user_agent: str | None
    firmware: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "address": self.address,
            "protocol": self.protocol,
            "user_agent": self.user_agent,
            "firmware": self.firmware,
        }


@dataclass(frozen=True, slots=True)
class FileFetch:
    """A phone's newest request for a license file, or its newest answer that served one."""

    mac: str
    file_name: str
    kind: str  # request | served
    at: datetime
    path: str
    protocol: str
    status: int
    digest: str | None


class Newest(NamedTuple):
    seen: dict[str, Row]
    files: dict[FileKey, Row]


def file_name(path: str) -> str:
    """The file a request path names, as the state keys it: lowercase, without directories."""
    return path.replace("\\", "/").rsplit("/", 1)[-1].lower()[:64]


def fold(rows: Iterable[Row], into: Newest | None = None) -> Newest:
    """The newest row per phone and per (phone, license file, kind) of ``rows`` (writer
    tuples with a MAC, in (MAC, time) order: a later row is a newer one)."""
    newest = into or Newest({}, {})
    seen, files = newest
    for row in rows:
        mac = row[_MAC]
        seen[mac] = row
        path = row[_PATH]
        if path[-12:].lower() == LICENSE_SUFFIX:
            name = file_name(path)
            files[mac, name, REQUEST] = row
            if row[_STATUS] < SERVED_BELOW and row[_DIGEST] is not None:
                files[mac, name, SERVED] = row
    return newest


@functools.lru_cache(maxsize=4096)
def _firmware(user_agent: str | None) -> str | None:
    agent = parse_user_agent(user_agent)
    return agent.firmware[:64] if agent else None


def _moment(value: Any) -> datetime:
    """A row's time as a datetime: SQLite rows carry the stored integer microseconds."""
    if isinstance(value, int):
        return EPOCH + timedelta(microseconds=value)
    return utc(value)


def seen_row(mac: str, row: Row, at: Callable[[Any], Any] = _moment) -> tuple[Any, ...]:
    """A phone's ``phone_seen`` row from its newest writer row, in ``_SEEN_COLUMNS`` order."""
    agent = row[_AGENT]
    return (mac, at(row[_AT]), row[_ADDRESS], row[_PROTOCOL], agent, _firmware(agent))


def file_row(key: FileKey, row: Row, at: Callable[[Any], Any] = _moment) -> tuple[Any, ...]:
    """A ``phone_files`` row from the newest writer row of its key, in ``_FILE_NAMES`` order."""
    mac, file_name, kind = key
    return (mac, file_name, kind, at(row[_AT]), row[_PATH], row[_PROTOCOL], row[_STATUS],
            row[_DIGEST])  # fmt: skip


def seen_values(row: Row) -> dict[str, Any]:
    return dict(zip(_SEEN_COLUMNS, seen_row(row[_MAC], row), strict=True))


def file_values(key: FileKey, row: Row) -> dict[str, Any]:
    return dict(zip(_FILE_NAMES, file_row(key, row), strict=True))


_SEEN = cast(Table, PhoneSeenRow.__table__)
_FILES = cast(Table, PhoneFileRow.__table__)
_KEYS: Final = {"phone_seen": ("mac",), "phone_files": ("mac", "file_name", "kind")}
_FILE_COLUMNS: Final = (
    PhoneFileRow.mac,
    PhoneFileRow.file_name,
    PhoneFileRow.kind,
    PhoneFileRow.at,
    PhoneFileRow.path,
    PhoneFileRow.protocol,
    PhoneFileRow.status,
    PhoneFileRow.digest,
)
_FILE_NAMES: Final = tuple(c.key for c in _FILE_COLUMNS)
_SEEN_COLUMNS: Final = ("mac", "at", "address", "protocol", "user_agent", "firmware")


@functools.cache
def _upsert(table: str, columns: tuple[str, ...], keys: tuple[str, ...]) -> tuple[str, str]:
    """INSERT … ON CONFLICT DO UPDATE (the same words on SQLite and PostgreSQL) that replaces
    the stored row only with a row at least as new (a retried or late record never turns the
    state back), as the head and tail of ``execute_rows``: SQLAlchemy's per-row parameter
    processing cost more than the upsert, and a writer batch makes one per phone in it
    (docs/serve.md, "What it costs")."""
    updated = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    return (
        f"INSERT INTO {table} ({', '.join(columns)})",
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updated} WHERE excluded.at >= {table}.at",
    )


def apply(connection: Connection, rows: Sequence[Row]) -> None:
    """Fold a batch of writer rows (with a MAC, in (MAC, time) order) into the state, in the
    caller's transaction: one upsert per phone and one per (phone, license file, kind)."""
    if rows:
        write(connection, fold(rows))


def write(connection: Connection, newest: Newest) -> None:
    sqlite = connection.dialect.name == "sqlite"

    def at(value: Any) -> Any:  # as the table's Micros column stores it
        if sqlite:
            return value if isinstance(value, int) else epoch_micros(value)
        return _moment(value)

    seen = [seen_row(mac, row, at) for mac, row in newest.seen.items()]
    files = [file_row(key, row, at) for key, row in newest.files.items()]
    for table, columns, keys, values in (
        ("phone_seen", _SEEN_COLUMNS, _KEYS["phone_seen"], seen),
        ("phone_files", _FILE_NAMES, _KEYS["phone_files"], files),
    ):
        head, tail = _upsert(table, columns, keys)
        execute_rows(connection, head, len(columns), values, tail)


def seen(session: Session, mac: str) -> Seen | None:
    """The phone's newest fetch record, or None if it never fetched anything."""
    row = session.get(PhoneSeenRow, mac)
    return None if row is None else _seen(row)


def seen_many(session: Session, macs: Sequence[str]) -> dict[str, Seen]:
    """The newest fetch record of each of ``macs`` that fetched anything (a page of phones)."""
    found: dict[str, Seen] = {}
    for start in range(0, len(macs), LOOKUP_CHUNK):
        chunk = macs[start : start + LOOKUP_CHUNK]
        for row in session.scalars(select(PhoneSeenRow).where(PhoneSeenRow.mac.in_(chunk))):
            found[row.mac] = _seen(row)
    return found


def protocols_by_site(
    session: Session, sites: Sequence[str] | None = None
) -> dict[str, dict[str, int]]:
    """Each site's phones (of ``sites``, or every site) by the protocol of their newest fetch
    (phones that never fetched are not counted), summed up by the database."""
    query = (
        select(PhoneRow.site_serial, PhoneSeenRow.protocol, func.count())
        .join(PhoneSeenRow, PhoneSeenRow.mac == PhoneRow.mac)
        .group_by(PhoneRow.site_serial, PhoneSeenRow.protocol)
    )
    chunks = (
        [query]
        if sites is None
        else [
            query.where(PhoneRow.site_serial.in_(sites[start : start + LOOKUP_CHUNK]))
            for start in range(0, len(sites), LOOKUP_CHUNK)
        ]
    )
    found: dict[str, dict[str, int]] = {}
    for chunk in chunks:
        for site, protocol, phones in session.execute(chunk):
            found.setdefault(site, {})[protocol] = int(phones)
    return found


def file_fetches(
    session: Session, mac: str, name: str
) -> tuple[FileFetch | None, FileFetch | None]:
    """The phone's newest request for license file ``name`` and its newest answer that served
    a version of it (each None when there is none)."""
    rows = session.scalars(
        select(PhoneFileRow).where(PhoneFileRow.mac == mac, PhoneFileRow.file_name == name.lower())
    )
    by_kind = {row.kind: _file(row) for row in rows}
    return by_kind.get(REQUEST), by_kind.get(SERVED)


def last_requests(session: Session, name: str, kind: str = REQUEST) -> list[FileFetch]:
    """Every phone's newest request for license file ``name`` (in MAC order), or with ``kind``
    SERVED its newest answer that served a version. Read as tuples: an ORM object a row cost
    ~50 µs, seconds for a large fleet."""
    rows = session.execute(
        select(*_FILE_COLUMNS)
        .where(PhoneFileRow.file_name == name.lower(), PhoneFileRow.kind == kind)
        .order_by(PhoneFileRow.mac)
    )
    return [
        FileFetch(mac, file, kind, utc(at), path, protocol, status, digest)
        for mac, file, kind, at, path, protocol, status, digest in rows
    ]


def served_since(
    mac: ColumnElement[str] | InstrumentedAttribute[str],
    digest: str,
    since: datetime,
    statuses: Sequence[int],
) -> ColumnElement[bool]:
    """A condition on a MAC column: the phone's newest served version of some license file is
    ``digest``, answered with one of ``statuses`` at or after ``since`` (a look-up by key)."""
    return exists(
        select(PhoneFileRow.mac).where(
            and_(
                PhoneFileRow.mac == mac,
                PhoneFileRow.kind == SERVED,
                PhoneFileRow.digest == digest,
                PhoneFileRow.at >= utc(since),
                PhoneFileRow.status.in_(statuses),
            )
        )
    )


def _seen(row: PhoneSeenRow) -> Seen:
    return Seen(row.mac, utc(row.at), row.address, row.protocol, row.user_agent, row.firmware)


def _file(row: PhoneFileRow) -> FileFetch:
    return FileFetch(
        row.mac,
        row.file_name,
        row.kind,
        utc(row.at),
        row.path,
        row.protocol,
        row.status,
        row.digest,
    )


def from_records(
    connection: Connection, batch_rows: int = 50_000
) -> tuple[Newest, datetime | None]:
    """The state the raw records say (every record with a MAC, in (MAC, time, id) order), and
    the time of the oldest record kept (None when there is none)."""
    table = cast(Table, FetchRow.__table__)
    if "path" in {c["name"] for c in inspect(connection).get_columns("fetches")}:
        # before migration 0017 (migration 0011 rebuilds the state at that revision)
        legacy = sa_table("fetches", *(column(name) for name in (*RECORD_COLUMNS, "id")))
        statement = select(*(legacy.c[name] for name in RECORD_COLUMNS)).where(
            legacy.c.mac.is_not(None)
        )
        order = (legacy.c.mac, legacy.c.at, legacy.c.id)
    else:
        texts = {"path": path_of.text, "user_agent": agent_of.text}
        statement = (
            select(*(texts[name] if name in texts else table.c[name] for name in RECORD_COLUMNS))
            .join(path_of, path_of.id == table.c.path_id)
            .outerjoin(agent_of, agent_of.id == table.c.agent_id)
            .where(table.c.mac.is_not(None))
        )
        order = (table.c.mac, table.c.at, table.c.id)
    statement = statement.order_by(*order).execution_options(yield_per=batch_rows)
    newest = Newest({}, {})
    for part in connection.execute(statement).partitions():
        fold((tuple(row) for row in part), newest)
    oldest = connection.scalar(select(func.min(table.c.at)))
    return newest, None if oldest is None else utc(oldest)


def rebuild(connection: Connection) -> int:
    """Replace the state with what the raw records say; the number of phones in it."""
    connection.execute(_SEEN.delete())
    connection.execute(_FILES.delete())
    newest, _ = from_records(connection)
    write(connection, newest)
    return len(newest.seen)
