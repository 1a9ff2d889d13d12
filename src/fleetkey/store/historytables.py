"""The fetch history's tables beyond the records' own: texts kept once and each day's boots (a
part of ``store/schema.py``, which re-exports them), and on PostgreSQL the fetch table's
partitions, one a UTC day.

Since migration 0019 PostgreSQL's ``fetches`` is partitioned by range of ``day`` (UTC days
since the epoch): ``fetches_d<day>`` holds one day, ``fetches_default`` whatever no partition
takes. A prune drops a whole day's partition after rolling it up (``store/retention.py``), in
a few milliseconds, where deleting its records took minutes. Partitions are made ahead: by
the migration, by each prune (today and the next :data:`AHEAD_DAYS` days) and by the writer
for any day a batch holds that it has not seen (:func:`ensure_partitions`); a record whose day
has no partition, and cannot get one, goes to the default partition, never refused. SQLite
keeps one table: nothing here touches it.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Collection, Iterable
from typing import Final

from sqlalchemy import BigInteger, Connection, Engine, Integer, String, Text, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, mapped_column

from fleetkey.store.schema import Base

log = logging.getLogger(__name__)

DEFAULT_PARTITION: Final = "fetches_default"
AHEAD_DAYS: Final = 2  # days after today a prune makes partitions for
LOCK_TIMEOUT: Final = "5s"  # at most this long waiting for the lock a partition's DDL takes
_PARTITION: Final = re.compile(r"fetches_d(\d+)")
# partitions of the fetch table, as the catalogue lists them
_CHILDREN: Final = text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'fetches'::regclass"
)
_PARTITIONED: Final = text(
    "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = 'fetches' AND n.nspname = current_schema()"
)


class FetchTextRow(Base):
    """A request path or User-Agent that fetch records name, kept once (store/texts.py):
    never deleted, so an id a record holds always names its text."""

    __tablename__ = "fetch_texts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(String(1024), unique=True)


class BootDayRow(Base):
    """A day (UTC) of boots in the raw fetch records, tallied once the day is over
    (store/bootdays.py): what the boot-cost measure reads instead of the newest records."""

    __tablename__ = "boot_days"

    # UTC days since the epoch, as fetches.day
    day: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    boots: Mapped[int] = mapped_column(BigInteger)
    requests: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    spans_ms: Mapped[str] = mapped_column(Text)  # JSON {"<boot length, ms>": boots}
    firmware: Mapped[int] = mapped_column(BigInteger)  # boots left out: they downloaded an image


def partition_name(day: int) -> str:
    return f"fetches_d{day}"


def is_partition(name: str | None) -> bool:
    """Whether a table name is one of the fetch table's partitions (not in the models)."""
    return name == DEFAULT_PARTITION or (
        name is not None and _PARTITION.fullmatch(name) is not None
    )


def partitioned(connection: Connection) -> bool:
    """Whether the fetch table is partitioned (PostgreSQL since migration 0019)."""
    if connection.dialect.name != "postgresql":
        return False
    return bool(connection.scalar(_PARTITIONED) == "p")


def partition_days(connection: Connection) -> set[int]:
    """The days that have a partition of their own (none on SQLite)."""
    if not partitioned(connection):
        return set()
    found = (_PARTITION.fullmatch(name) for name in connection.scalars(_CHILDREN))
    return {int(match.group(1)) for match in found if match}


def create_partitions(connection: Connection, days: Iterable[int]) -> None:
    """A partition for each day, in the caller's transaction (IF NOT EXISTS: one made
    meanwhile by another server is kept). PostgreSQL refuses it while the default partition
    holds records of that day: they stay there, and the day keeps going to it."""
    for day in sorted(set(days)):
        connection.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF fetches "
            f"FOR VALUES FROM ({day}) TO ({day + 1})"
        )


def make_ahead(engine: Engine, days: Collection[int]) -> list[int]:
    """Partitions for ``days`` that have none, each in a short transaction of its own that
    waits at most :data:`LOCK_TIMEOUT` for its lock; the days made. A day that cannot get one
    is logged and left to the default partition."""
    with engine.connect() as connection:
        if not partitioned(connection):
            return []
        missing = set(days) - partition_days(connection)
    made = []
    for day in sorted(missing):
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                create_partitions(connection, [day])
            made.append(day)
        except DBAPIError as exc:
            log.warning("no partition for fetch records of day %d (%s): they go to %s",
                        day, exc.orig, DEFAULT_PARTITION)  # fmt: skip
    return made


_ensured: weakref.WeakKeyDictionary[Engine, set[int]] = weakref.WeakKeyDictionary()


def ensure_partitions(engine: Engine, days: Collection[int]) -> None:
    """The writer, before a batch: partitions for the days it holds that this process has not
    seen yet (one set difference a batch; the catalogue is read only for a new day)."""
    if engine.dialect.name != "postgresql":
        return
    seen = _ensured.setdefault(engine, set())
    new = set(days) - seen
    if new:
        make_ahead(engine, new)
        seen.update(new)


def forget(engine: Engine) -> None:
    """Forget the days seen (after a migration: the table may be another one)."""
    _ensured.pop(engine, None)


def lock_table(connection: Connection, day: int) -> bool:
    """Lock the whole fetch table (waiting at most :data:`LOCK_TIMEOUT`) until the transaction
    ends, to drop the partition of ``day``; False if it has none (any more)."""
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    connection.exec_driver_sql("LOCK TABLE fetches IN ACCESS EXCLUSIVE MODE")
    return day in partition_days(connection)


def drop_partition(connection: Connection, day: int) -> None:
    """Drop a day's partition (in the transaction that locked the table: :func:`lock_table`)."""
    connection.exec_driver_sql(f"DROP TABLE {partition_name(day)}")
