"""Which fetch records a listing keeps (:class:`FetchFilter`), and how a phone's are found.

The fetch table's index is on (day, mac): a phone's records are found with one look-up per day
the store keeps (:func:`by_day` lists the days). On SQLite that is ``day IN (...) AND mac = ?``,
one probe a day. PostgreSQL keeps a partition a day (``store/historytables.py``), and the same
condition made it probe every day in every partition (days x days probes, or a scan of every
partition when it chose that instead), which grows without end under ``--fetch-retention 0``.
There the days are a ``LATERAL`` subquery, one day at a time: each day's look-up runs in that
day's partition alone, one index probe (run-time partition pruning), as docs/store.md shows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, TypeVarTuple

from sqlalchemy import (
    FromClause,
    Integer,
    Select,
    bindparam,
    column,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from fleetkey.core.naming import normalize_mac
from fleetkey.store.records import utc
from fleetkey.store.schema import FetchRow, epoch_micros
from fleetkey.store.texts import path_of

MICROS_A_DAY: Final = 86_400_000_000  # the ``day`` column: UTC days since the epoch
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True, slots=True)
class FetchFilter:
    """Which fetch records a listing keeps; every condition given must hold."""

    mac: str | None = None
    since: datetime | None = None  # from this moment on
    until: datetime | None = None  # before this moment
    statuses: tuple[tuple[int, int], ...] = ()  # status ranges (inclusive), any of them
    path: str | None = None  # paths that contain it; ``*`` stands for any characters
    days: tuple[int, ...] | None = None  # with a MAC: the days to look in (``by_day``)
    per_day: bool = False  # the days one at a time, a LATERAL subquery (PostgreSQL)

    def source(self) -> tuple[Any, FromClause | None]:
        """What to select the records from: the fetch table (None), or a phone's rows looked
        up one day at a time, with the days to join them to first (``JOIN LATERAL … ON
        true``)."""
        if self.mac is None or self.days is None or not self.per_day:
            return FetchRow, None
        days = (
            func.unnest(bindparam("days", list(self.days), type_=ARRAY(Integer)))
            .table_valued(column("day", Integer))
            .render_derived(name="days")
        )
        one_day = (
            select(FetchRow)
            .where(FetchRow.day == days.c.day, FetchRow.mac == normalize_mac(self.mac))
            .offset(literal_column("0"))  # kept a subquery: a probe per day, never a join
            .lateral("day_rows")
        )
        return aliased(FetchRow, one_day), days

    def where(self, statement: Select[*Ts], rows: Any = FetchRow) -> Select[*Ts]:
        """``statement`` (of ``rows``, the table or :meth:`source`'s) keeping what this keeps."""
        if self.mac is not None and rows is FetchRow:  # else the day's look-up has it
            statement = statement.where(FetchRow.mac == normalize_mac(self.mac))
            if self.days is not None:  # one probe a day in the index
                statement = statement.where(
                    FetchRow.day.in_(
                        bindparam(
                            "days",
                            list(self.days),
                            type_=Integer,
                            expanding=True,
                            literal_execute=True,
                        )
                    )
                )
        if self.since is not None:
            statement = statement.where(rows.at >= utc(self.since))
        if self.until is not None:
            statement = statement.where(rows.at < utc(self.until))
        if self.statuses:
            statement = statement.where(
                or_(*(rows.status.between(low, high) for low, high in self.statuses))
            )
        if self.path is not None:
            matching = select(path_of.id).where(
                or_(*(path_of.text.ilike(like, escape="\\") for like in _likes(self.path)))
            )
            statement = statement.where(rows.path_id.in_(matching.scalar_subquery()))
        return statement


def by_day(session: Session, where: FetchFilter) -> FetchFilter:
    """``where`` with the days a phone's records can be on, when it names a phone: the index
    is on (day, mac), so a phone's records are found with one look-up per day kept (one at a
    time on PostgreSQL, whose partitions each hold a day).

    On PostgreSQL the transaction then runs without JIT: the planner costs each day's look-up
    as one in every partition (it prunes them only as it runs), so past ~100 days it compiled
    the 2 ms query for 0.6-0.8 s (120 days, docs/store.md)."""
    if where.mac is None:
        return where
    first = session.scalar(select(func.min(FetchRow.day)))
    last = session.scalar(select(func.max(FetchRow.day)))
    per_day = session.get_bind().dialect.name == "postgresql"
    if per_day:
        session.execute(text("SET LOCAL jit = off"))
    if first is None or last is None:
        return replace(where, days=(), per_day=per_day)
    if where.since is not None:
        first = max(first, epoch_micros(where.since) // MICROS_A_DAY)
    if where.until is not None:
        last = min(last, (epoch_micros(where.until) - 1) // MICROS_A_DAY)
    return replace(where, days=tuple(range(first, last + 1)), per_day=per_day)


def _likes(pattern: str) -> tuple[str, ...]:
    """``pattern`` (``*``: any characters) as LIKE patterns for paths that contain it (ILIKE:
    the same on SQLite, whose LIKE ignores ASCII case, and PostgreSQL). A leading ``/`` also
    matches at the path's start: a phone's TFTP request names a file without one
    (``0004f2a1b2c3-boot.log`` where HTTP asks ``/0004f2a1b2c3-boot.log``), and the same file
    is meant."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = escaped.replace("*", "%")
    if like.startswith("/") and not like.startswith("//"):  # ``//``: a doubled slash, as asked
        return f"%{like}%", f"{like[1:]}%"
    return (f"%{like}%",)
