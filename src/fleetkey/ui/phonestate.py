"""What the dashboard reads about each phone: when it was last seen, and whether it fetched the
site license posted for it.

Last seen is the phones table's ``last_seen_at`` (written by sightings); the license version
is the per-phone state the fetch-record writer keeps (``phone_files``, ``store/phonestate.py``):
the version of ``000000000000-license.cfg`` the phone was last served, one row per phone, so
no page scans the fetch history.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.naming import SITE_LICENSE_FILE
from fleetkey.store.phonestate import SERVED
from fleetkey.store.records import utc
from fleetkey.store.schema import LicenseRow, PhoneFileRow, PhoneRow

RECENT: Final = timedelta(minutes=5)
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

    search: str | None = None  # in the MAC, model, firmware, address or User-Agent
    site: str | None = None
    model: str | None = None
    firmware: str | None = None
    seen: Seen | None = None
    current: bool | None = None  # fetched the site license posted for its site
    feature: int | None = None  # a posted key of the phone or its site grants this slot


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
    """Per site serial, how many phones fall in each bucket of last seen."""
    bucket = case(
        *((seen_condition(s, now), s.value) for s in (Seen.RECENT, Seen.DAY, Seen.OLDER)),
        else_=Seen.NEVER.value,
    )
    found: dict[str, dict[Seen, int]] = defaultdict(lambda: dict.fromkeys(Seen, 0))
    statement = select(PhoneRow.site_serial, bucket, func.count()).group_by(
        PhoneRow.site_serial, bucket
    )
    for site, seen, count in session.execute(statement):
        found[site][Seen(seen)] = int(count)
    return dict(found)


def _posted_site_digest() -> Select[Any]:
    return select(LicenseRow.digest).where(
        LicenseRow.type == LicenseType.SITE.value,
        LicenseRow.state == LicenseState.POSTED.value,
        LicenseRow.serial == PhoneRow.site_serial,
    )


def _fetched_posted() -> ColumnElement[bool]:
    """The version of the site license the phone was last served is the one posted for its
    site: read from the per-phone state the writer keeps (``store/phonestate.py``), one row
    per phone, never the fetch history (which ages out, and was a scan per phone)."""
    return exists(
        select(PhoneFileRow.mac).where(
            PhoneFileRow.mac == PhoneRow.mac,
            PhoneFileRow.file_name == SITE_LICENSE_FILE,
            PhoneFileRow.kind == SERVED,
            PhoneFileRow.digest.in_(_posted_site_digest()),
        )
    )


def _has_posted_site_key() -> ColumnElement[bool]:
    return exists(_posted_site_digest())


def _grants(slot: int) -> ColumnElement[bool]:
    return exists(
        select(LicenseRow.id).where(
            LicenseRow.state == LicenseState.POSTED.value,
            or_(LicenseRow.serial == PhoneRow.mac, LicenseRow.serial == PhoneRow.site_serial),
            LicenseRow.terms.like(f'%"{slot}": %'),
        )
    )


def _where(statement: Select[Any], chosen: PhoneFilter, now: datetime) -> Select[Any]:
    if chosen.search:
        text = "%" + chosen.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = text + "%"
        statement = statement.where(
            or_(
                *(
                    column.ilike(pattern, escape="\\")
                    for column in (
                        PhoneRow.mac,
                        PhoneRow.model,
                        PhoneRow.firmware,
                        PhoneRow.last_address,
                        PhoneRow.last_user_agent,
                    )
                )
            )
        )
    if chosen.site is not None:
        statement = statement.where(PhoneRow.site_serial == chosen.site)
    if chosen.model is not None:
        statement = statement.where(PhoneRow.model == chosen.model)
    if chosen.firmware is not None:
        statement = statement.where(PhoneRow.firmware == chosen.firmware)
    if chosen.seen is not None:
        statement = statement.where(seen_condition(chosen.seen, now))
    if chosen.current is True:
        statement = statement.where(_fetched_posted())
    elif chosen.current is False:
        statement = statement.where(_has_posted_site_key(), ~_fetched_posted())
    if chosen.feature is not None:
        statement = statement.where(_grants(chosen.feature))
    return statement


def phone_page(
    session: Session, chosen: PhoneFilter, now: datetime, *, after: str | None, limit: int
) -> tuple[list[PhoneLine], int]:
    """Up to ``limit`` phones after MAC ``after`` in MAC order, and how many match in all."""
    current = case((_has_posted_site_key(), _fetched_posted()), else_=None)
    columns = select(
        PhoneRow.mac,
        PhoneRow.site_serial,
        PhoneRow.model,
        PhoneRow.firmware,
        PhoneRow.last_address,
        PhoneRow.last_user_agent,
        PhoneRow.last_seen_at,
        current,
    )
    statement = _where(columns, chosen, now).order_by(PhoneRow.mac)
    if after is not None:
        statement = statement.where(PhoneRow.mac > after)
    rows: list[Any] = list(session.execute(statement.limit(limit)))
    lines = [
        PhoneLine(
            mac,
            site,
            model,
            firmware,
            address,
            agent,
            utc(seen) if seen else None,
            None if fetched is None else bool(fetched),
        )
        for mac, site, model, firmware, address, agent, seen, fetched in rows
    ]
    total = session.scalar(_where(select(func.count()).select_from(PhoneRow), chosen, now))
    return lines, int(total or 0)


def fetched_posted_by_site(session: Session) -> dict[str, tuple[int, int]]:
    """Per site with a posted site license: (phones that fetched it, phones in all)."""
    statement = (
        select(PhoneRow.site_serial, func.count(), func.sum(case((_fetched_posted(), 1), else_=0)))
        .where(_has_posted_site_key())
        .group_by(PhoneRow.site_serial)
    )
    return {
        site: (int(fetched or 0), int(total)) for site, total, fetched in session.execute(statement)
    }


def choices(session: Session) -> tuple[list[str], list[str]]:
    """The models and firmware versions in the inventory, for the filters' lists."""
    models = session.scalars(select(PhoneRow.model).distinct().order_by(PhoneRow.model))
    firmware = session.scalars(
        select(PhoneRow.firmware)
        .where(PhoneRow.firmware.is_not(None))
        .distinct()
        .order_by(PhoneRow.firmware)
    )
    return list(models), [f for f in firmware if f is not None]
