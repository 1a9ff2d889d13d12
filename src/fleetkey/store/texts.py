"""Request paths and User-Agents kept once: fetch records hold their ids.

Measured on a store of bench/history.py's traffic (docs/store.md): of ~205 bytes a raw record
took with its indexes, the User-Agent was ~63 and the path ~18, the same few strings again
and again (a fleet's User-Agents differ by model and firmware, its paths by file and MAC).
Each distinct text is one ``fetch_texts`` row; a record holds its id (1-3 bytes).

:class:`Texts` gives the ids of a batch's texts to the writer: from a cache in memory, and the
texts it has not seen are inserted (``ON CONFLICT DO NOTHING``: several servers on one
PostgreSQL agree on one id per text) and read back in the batch's own transaction (one commit
a batch, not two: a storm of first boots has new paths in every batch), and remembered only
once it is committed, so an id in the cache always names a stored row.
Rows are never deleted. Readers join the table (:func:`path_of` and :func:`agent_of` are the
aliases) or look ids up with :func:`lookup`.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable
from typing import Final
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import aliased

from fleetkey.store.database import values_list
from fleetkey.store.inventory import LOOKUP_CHUNK
from fleetkey.store.schema import FetchTextRow

CACHE_TEXTS: Final = 500_000  # texts a writer remembers; past it, the cache starts again
_TABLE: Final = FetchTextRow.__tablename__

path_of = aliased(FetchTextRow, name="path_text")  # join on FetchRow.path_id
agent_of = aliased(FetchTextRow, name="agent_text")  # outer join on FetchRow.agent_id


class Texts:
    """The ids of texts in one database, remembered (thread-safe: one writer thread, and
    commands that insert records directly)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def ids(self, engine: Engine, texts: Collection[str]) -> dict[str, int]:
        """The id of each of ``texts``, the new ones stored first in a transaction of their
        own (for callers without a transaction of theirs: the bench's loaders)."""
        with engine.begin() as connection:
            found, new = self.ids_within(connection, texts)
        self.remember(new)
        return found

    def ids_within(
        self, connection: Connection, texts: Collection[str]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """The id of each of ``texts``, the new ones stored in ``connection``'s transaction;
        and those new ones, to :meth:`remember` once that transaction is committed."""
        with self._lock:
            known = self._ids
            missing = [t for t in texts if t not in known]
        found = store(connection, missing) if missing else {}
        return {t: found[t] if t in found else known[t] for t in texts}, found

    def remember(self, found: dict[str, int]) -> None:
        """Keep ``found`` (ids of committed rows) for the next batches."""
        if found:
            with self._lock:
                if len(self._ids) + len(found) > CACHE_TEXTS:
                    self._ids = {}
                self._ids.update(found)


_CACHES: WeakKeyDictionary[Engine, Texts] = WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def texts_of(engine: Engine) -> Texts:
    """The cache of ``engine``'s database (forgotten with the engine, or by :func:`forget`)."""
    with _CACHES_LOCK:
        return _CACHES.setdefault(engine, Texts())


def forget(engine: Engine) -> None:
    """Drop what is remembered of ``engine``'s texts (its schema was migrated)."""
    with _CACHES_LOCK:
        _CACHES.pop(engine, None)


def store(connection: Connection, texts: Iterable[str]) -> dict[str, int]:
    """Insert the texts not stored yet and return every one's id (in the caller's
    transaction: its ids are for the cache once it is committed).

    One statement a chunk, to the driver directly, returning the ids it gave; only texts
    another server stored meanwhile are looked up (SQLAlchemy's insert of a list of dicts
    and a look-up of every text were a fifth of the record writer's time in a storm of
    first boots, whose per-phone paths are new in every batch)."""
    wanted = sorted(set(texts))  # one order for every server: no deadlock on PostgreSQL
    style = connection.dialect.paramstyle
    found: dict[str, int] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        values = values_list(style, 1, len(chunk))
        rows = connection.exec_driver_sql(
            f'INSERT INTO {_TABLE} ("text") VALUES {values} '  # noqa: S608  # constant, values bound
            'ON CONFLICT ("text") DO NOTHING RETURNING "text", id',
            tuple(chunk),
        )
        found.update({text: text_id for text, text_id in rows.all()})  # one fetchall
    stored_before = [t for t in wanted if t not in found]
    if stored_before:
        found.update(lookup(connection, stored_before))
    return found


def lookup(connection: Connection, texts: Iterable[str]) -> dict[str, int]:
    """The ids of those of ``texts`` that are stored."""
    wanted = list(texts)
    found: dict[str, int] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        rows = connection.execute(
            select(FetchTextRow.text, FetchTextRow.id).where(FetchTextRow.text.in_(chunk))
        )
        found.update({text: text_id for text, text_id in rows.all()})  # one fetchall
    return found
