"""Lists read one page at a time, with how many rows are left after the page.

Keyset queries: a page starts after the last key the one before showed (``mac > :after``), so
the thousandth page of phones costs what the first does, where an OFFSET would read and throw
away every row before it. Inventory lists go in key order (MAC, site serial); licenses, audit
events and rollouts newest first. Rows are read as plain tuples, not ORM objects: for a list of
100,000 phones the identity map cost more than the query (docs/store.md, "Lists").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Final, Generic, TypeVar, TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from fleetkey.core.license import LicenseState
from fleetkey.core.naming import normalize_mac, normalize_site_serial
from fleetkey.core.terms import expiry_horizon
from fleetkey.store import audit, registry
from fleetkey.store.inventory import sites as all_sites
from fleetkey.store.records import AuditEvent, Phone, Site, StoredLicense, utc
from fleetkey.store.rollouts import Rollout, rollout_of
from fleetkey.store.schema import AuditRow, LicenseRow, PhoneRow, PhoneSeenRow, RolloutRow

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
DISTINCT_STEPS: Final = 200  # pairs :func:`distinct` finds one probe each
Column = ColumnElement[Any] | InstrumentedAttribute[Any]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    left: int  # rows after this page that match the same filter

    @property
    def last(self) -> T | None:
        return self.items[-1] if self.items else None


_PHONE_COLUMNS = (
    PhoneRow.mac,
    PhoneRow.site_serial,
    PhoneRow.model,
    PhoneRow.firmware,
    PhoneRow.prov_user,
    PhoneRow.password_hash.is_not(None),
    PhoneRow.sip_contact,
    PhoneRow.last_address,
    PhoneRow.last_user_agent,
    PhoneRow.last_seen_at,
    PhoneSeenRow.at,  # the newest fetch record, kept by the writer (store/phonestate.py)
    PhoneSeenRow.address,
    PhoneSeenRow.user_agent,
)


def phones(
    session: Session,
    *,
    site: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> Page[Phone]:
    """Phones by MAC, of one site or all, from the first MAC after ``after``."""
    query = select(*_PHONE_COLUMNS).outerjoin(PhoneSeenRow, PhoneSeenRow.mac == PhoneRow.mac)
    if site is not None:
        query = query.where(PhoneRow.site_serial == normalize_site_serial(site))
    if after is not None:
        query = query.where(PhoneRow.mac > normalize_mac(after))
    found = [
        newest_sighting(
            Phone(mac, site_serial, model, firmware, user, bool(has), contact, address, agent,
                  utc(seen) if seen else None),
            (utc(fetched), fetched_from, fetched_agent) if fetched else None,
        )
        for mac, site_serial, model, firmware, user, has, contact, address, agent, seen, fetched,
        fetched_from, fetched_agent
        in session.execute(_limited(query.order_by(PhoneRow.mac), limit))
    ]  # fmt: skip
    left = 0
    if limit is not None and len(found) == limit:
        rest = query.where(PhoneRow.mac > found[-1].mac)
        left = _count(session, rest)
    return Page(found, left)


def newest_sighting(phone: Phone, fetched: tuple[datetime, str | None, str | None] | None) -> Phone:
    """``phone`` with its last time, address and User-Agent seen taken from its newest fetch
    record (``fetched``: the per-phone state's time, address, User-Agent) when that is newer
    than what the phones table holds (sightings, written apart from the records)."""
    if fetched is None:
        return phone
    at, address, agent = fetched
    if phone.last_seen_at is not None and phone.last_seen_at >= at:
        return phone
    return replace(phone, last_seen_at=at, last_address=address, last_user_agent=agent)


def sites(session: Session, *, after: str | None = None, limit: int | None = None) -> Page[Site]:
    """Sites by serial from the first after ``after`` (a few hundred at most: read whole)."""
    found = all_sites(session)
    if after is not None:
        start = normalize_site_serial(after)
        found = [site for site in found if site.serial > start]
    if limit is None:
        return Page(found, 0)
    return Page(found[:limit], max(0, len(found) - limit))


def licenses(
    session: Session,
    *,
    today: date,
    expiring_within: int | None = None,
    states: Sequence[LicenseState] | None = None,
    before: int | None = None,
    limit: int | None = None,
) -> Page[StoredLicense]:
    """Keys newest first (by id), from the first below ``before``; filters as
    :func:`registry.listing`."""
    query = select(LicenseRow)
    if expiring_within is not None:
        horizon = expiry_horizon(today, expiring_within)
        query = query.where(LicenseRow.expires_on.is_not(None), LicenseRow.expires_on <= horizon)
    if states:
        query = query.where(LicenseRow.state.in_([s.value for s in states]))
    if before is not None:
        query = query.where(LicenseRow.id < before)
    rows = session.scalars(_limited(query.order_by(LicenseRow.id.desc()), limit)).all()
    found = [registry.stored_license(row) for row in rows]
    left = 0
    if limit is not None and len(found) == limit:
        left = _count(session, query.where(LicenseRow.id < found[-1].id))
    return Page(found, left)


def successors(session: Session, license_id: int) -> list[int]:
    """The ids of the keys posted in place of license ``license_id``."""
    query = select(LicenseRow.id).where(LicenseRow.succeeds_id == license_id)
    return list(session.scalars(query.order_by(LicenseRow.id)))


def events(
    session: Session, *, before: int | None = None, limit: int | None = None
) -> Page[AuditEvent]:
    """Audit events newest first, from the first below sequence number ``before``."""
    found = list(reversed(audit.events(session, limit=limit, before=before)))
    left = 0
    if limit is not None and len(found) == limit:
        left = _count(session, select(AuditRow.seq).where(AuditRow.seq < found[-1].seq))
    return Page(found, left)


def rollouts(
    session: Session, *, before: int | None = None, limit: int | None = None
) -> Page[Rollout]:
    """Rollouts newest first (by id), from the first below ``before``."""
    query = select(RolloutRow)
    if before is not None:
        query = query.where(RolloutRow.id < before)
    rows = session.scalars(_limited(query.order_by(RolloutRow.id.desc()), limit)).all()
    found = [rollout_of(row) for row in rows]
    left = 0
    if limit is not None and len(found) == limit:
        left = _count(session, query.where(RolloutRow.id < found[-1].id))
    return Page(found, left)


def distinct(
    session: Session,
    first: Column,
    then: Column,
    *,
    where: ColumnElement[bool] | None = None,
    steps: int = DISTINCT_STEPS,
) -> list[tuple[Any, Any]]:
    """The distinct pairs (``first``, ``then``) in that order, the leading columns of an index
    stepped through value by value as a skip scan would: the next ``then`` of the same
    ``first``, else the next ``first``, each a range of the index (a row-value comparison is
    one on PostgreSQL but a scan on SQLite). Both databases read every entry for a
    ``DISTINCT`` (the phones page's filter lists: ~14 ms of PostgreSQL's CPU each for 100,000
    phones); past ``steps`` pairs the rest is read by one ``DISTINCT``."""

    def one(query: Select[Any, Any]) -> tuple[Any, Any] | None:
        row = session.execute(query.where(where) if where is not None else query).first()
        return None if row is None else (row[0], row[1])

    pairs = select(first, then)
    found: list[tuple[Any, Any]] = []
    step = one(pairs.order_by(first, then).limit(1))
    while step is not None:
        found.append(step)
        if len(found) >= steps:
            after = or_(first > step[0], and_(first == step[0], then > step[1]))
            rest = pairs.where(after).distinct().order_by(first, then)
            found.extend(
                (a, b) for a, b in session.execute(rest.where(where) if where is not None else rest)
            )
            return found
        step = one(pairs.where(first == step[0], then > step[1]).order_by(then).limit(1)) or one(
            pairs.where(first > step[0]).order_by(first, then).limit(1)
        )
    return found


def _limited(query: Select[*Ts], limit: int | None) -> Select[*Ts]:
    return query if limit is None else query.limit(limit)


def _count(session: Session, query: Select[*Ts]) -> int:
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
