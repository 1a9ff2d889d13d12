"""What the dashboard reads about each phone: when it was last seen, and whether it fetched the
site license posted for it.

Last seen is the phones table's ``last_seen_at`` (written by sightings); the license version
is the per-phone state the fetch-record writer keeps (``phone_files``, ``store/phonestate.py``):
the version of ``000000000000-license.cfg`` the phone was last served, one row per phone, so
no page scans the fetch history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeVarTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from fleetkey.core.license import LicenseState
from fleetkey.store import pages
from fleetkey.store.phonestate import SERVED
from fleetkey.store.records import utc
from fleetkey.store.schema import LicenseRow, PhoneFileRow, PhoneRow
from fleetkey.ui import fetched

Ts = TypeVarTuple("Ts")
Column = ColumnElement[Any] | InstrumentedAttribute[Any]
RECENT: Final = timedelta(minutes=5)
SPARSE_SEARCH: Final = 10_000  # a search matching this few phones is read by its matches
DAY: Final = timedelta(hours=24)


class Seen(StrEnum):
    """When a phone was last seen, in the overview's buckets."""

    RECENT = "5m"  # in the last 5 minutes
    DAY = "24h"  # in the last 24 hours, not the last 5 minutes
    OLDER = "older"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class PhoneFilter:
    """The phone table's filters; every one given must hold."""

    search: str | None = None  # a prefix of the MAC, model, firmware or address
    site: str | None = None
    model: str | None = None
    firmware: str | None = None
    seen: Seen | None = None
    current: bool | None = None  # fetched the site license posted for its site
    feature: int | None = None  # a posted key of the phone or its site grants this slot
    license_id: int | None = None  # the phone was last served this key's file (any state)


@dataclass(frozen=True, slots=True)
class PhoneLine:
    mac: str
    site: str
    model: str
    firmware: str | None
    last_address: str | None
    last_user_agent: str | None
    last_seen_at: datetime | None
    current: bool | None  # None: its site has no posted site license


def seen_condition(seen: Seen, now: datetime) -> ColumnElement[bool]:
    at = PhoneRow.last_seen_at
    recent, day = utc(now - RECENT), utc(now - DAY)
    if seen is Seen.RECENT:
        return at >= recent
    if seen is Seen.DAY:
        return and_(at >= day, at < recent)
    if seen is Seen.OLDER:
        return at < day
    return at.is_(None)


def seen_by_site(session: Session, now: datetime) -> dict[str, dict[Seen, int]]:
    """Per site serial, how many phones fall in each bucket of last seen: one pass over the
    (site_serial, last_seen_at) index in site order (grouping by the bucket too sorted
    every phone: 43 ms for 100,000, against 13)."""
    buckets = list(Seen)
    counts = [func.count(case((seen_condition(seen, now), 1))) for seen in buckets]
    statement = select(PhoneRow.site_serial, *counts).group_by(PhoneRow.site_serial)
    return {
        site: dict(zip(buckets, (int(n) for n in numbers), strict=True))
        for site, *numbers in session.execute(statement)
    }


def _served_license(license_id: int) -> ColumnElement[bool]:
    """The version of a license file the phone was last served is license ``license_id``
    (whatever its state now: a superseded key's phones are the ones still to move), as
    ``phones show`` says it: the file's newest answer that served a version (the per-phone
    state), the key found by that answer's digest."""
    key, state = aliased(LicenseRow), aliased(PhoneFileRow)  # inside a count by posted key
    return exists(
        select(state.mac)
        .join(key, key.digest == state.digest)
        .where(
            key.id == license_id,
            state.mac == PhoneRow.mac,
            state.kind == SERVED,
            state.file_name == func.lower(key.file_name),
        )
    )


def _grants(slot: int) -> ColumnElement[bool]:
    key = aliased(LicenseRow)  # inside a count by posted key: not that key
    return exists(
        select(key.id).where(
            key.state == LicenseState.POSTED.value,
            or_(key.serial == PhoneRow.mac, key.serial == PhoneRow.site_serial),
            key.terms.like(f'%"{slot}": %'),
        )
    )


def search_terms(text: str) -> tuple[str, str]:
    """What a search looks for: (the text lowercased, the same as a MAC's first digits:
    separators dropped)."""
    lowered = text.strip().lower()
    return lowered, "".join(c for c in lowered if c not in ":-. ")


def _prefix(column: Column, prefix: str, dialect: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, as a range of its index: on SQLite a comparison of
    code points (what its BINARY collation orders by); on PostgreSQL a ``LIKE 'prefix%'``,
    which its ``text_pattern_ops`` indexes answer whatever the database's collation."""
    if not prefix:
        return false()
    if dialect == "postgresql":
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(escaped + "%", escape="\\")
    after = prefix[:-1] + chr(ord(prefix[-1]) + 1) if ord(prefix[-1]) < 0x10FFFF else None
    if after is None:
        return column >= prefix
    return and_(column >= prefix, column < after)


def _search(text: str, dialect: str) -> ColumnElement[bool]:
    """The phone is one the search finds: a prefix of one of its columns, each an index range
    (SQLite and PostgreSQL read them as one bitmap or multi-index OR)."""
    lowered, mac = search_terms(text)
    return or_(
        _prefix(PhoneRow.mac, mac, dialect),
        _prefix(func.lower(PhoneRow.model), lowered, dialect),
        _prefix(func.lower(PhoneRow.firmware), lowered, dialect),
        _prefix(PhoneRow.last_address, lowered, dialect),
    )


def _where(statement: Select[Any], chosen: PhoneFilter, now: datetime, dialect: str) -> Select[Any]:
    """The filters but the fetched-or-not one (``fetched`` reads that key by key)."""
    if chosen.search:
        statement = statement.where(_search(chosen.search, dialect))
    if chosen.site is not None:
        statement = statement.where(PhoneRow.site_serial == chosen.site)
    if chosen.model is not None:  # lower() first: the index on (lower(model), model)
        statement = statement.where(
            func.lower(PhoneRow.model) == chosen.model.lower(), PhoneRow.model == chosen.model
        )
    if chosen.firmware is not None:
        statement = statement.where(
            func.lower(PhoneRow.firmware) == chosen.firmware.lower(),
            PhoneRow.firmware == chosen.firmware,
        )
    if chosen.seen is not None:
        statement = statement.where(seen_condition(chosen.seen, now))
    if chosen.license_id is not None:
        statement = statement.where(_served_license(chosen.license_id))
    if chosen.feature is not None:
        statement = statement.where(_grants(chosen.feature))
    return statement


def _filters(chosen: PhoneFilter, now: datetime, dialect: str) -> fetched.Where:
    return lambda statement: _where(statement, chosen, now, dialect)


def _page_macs(
    session: Session, chosen: PhoneFilter, now: datetime, after: str | None, limit: int
) -> tuple[list[str], int]:
    """The page's MACs, and how many phones match in all.

    Fetched or not, the phones are counted and paged key by key as sets (``fetched.page``).
    Otherwise counted first: a search matching few phones reads its matches through the
    indexes and sorts them (in MAC order with a LIMIT, a planner expecting the matches spread
    out walks the table to where a prefix's matches begin: 460 ms on PostgreSQL for the
    73,000th); anything else walks in MAC order, which soon has its page."""
    dialect = session.get_bind().dialect.name
    if chosen.current is not None:
        where = _filters(chosen, now, dialect)
        return fetched.page(session, where, after, limit, fetched=chosen.current)
    counting = _where(select(func.count()).select_from(PhoneRow), chosen, now, dialect)
    total = int(session.scalar(counting) or 0)
    if not total:  # nothing matches: no walk of every phone to find so
        return [], 0
    wanted = _where(select(PhoneRow.mac), chosen, now, dialect)
    if after is not None:
        wanted = wanted.where(PhoneRow.mac > after)
    if chosen.search and total <= SPARSE_SEARCH:
        return sorted(session.scalars(wanted))[:limit], total
    return list(session.scalars(wanted.order_by(PhoneRow.mac).limit(limit))), total


def phone_page(
    session: Session, chosen: PhoneFilter, now: datetime, *, after: str | None, limit: int
) -> tuple[list[PhoneLine], int]:
    """Up to ``limit`` phones after MAC ``after`` in MAC order, and how many match in all.

    The page's MACs first (``_page_macs``), then their rows and whether each fetched its
    site's posted key (by those MACs: asked per row in the page's query, PostgreSQL hashed
    every phone's state for it, 240 ms)."""
    macs, total = _page_macs(session, chosen, now, after, limit)
    if not macs:
        return [], total
    rows = session.execute(
        select(
            PhoneRow.mac,
            PhoneRow.site_serial,
            PhoneRow.model,
            PhoneRow.firmware,
            PhoneRow.last_address,
            PhoneRow.last_user_agent,
            PhoneRow.last_seen_at,
        )
        .where(PhoneRow.mac.in_(macs))
        .order_by(PhoneRow.mac)
    )
    got = set(session.scalars(fetched.fetched_posted_join(select(PhoneRow.mac)).where(
        PhoneRow.mac.in_(macs))))  # fmt: skip
    posted = set(session.scalars(fetched.posted_site_keys().with_only_columns(LicenseRow.serial)))
    lines = [
        PhoneLine(
            mac,
            site,
            model,
            firmware,
            address,
            agent,
            utc(seen) if seen else None,
            (mac in got) if site in posted else None,
        )
        for mac, site, model, firmware, address, agent, seen in rows
    ]
    return lines, total


def choices(session: Session) -> tuple[list[str], list[str]]:
    """The models and firmware versions in the inventory, for the filters' lists: the
    (lower(…), …) indexes stepped value by value (``pages.distinct``)."""
    model, firmware_of = func.lower(PhoneRow.model), func.lower(PhoneRow.firmware)
    models = pages.distinct(session, model, PhoneRow.model)
    firmware = pages.distinct(
        session, firmware_of, PhoneRow.firmware, where=firmware_of.is_not(None)
    )
    return [m for _, m in models], [f for _, f in firmware if f is not None]
