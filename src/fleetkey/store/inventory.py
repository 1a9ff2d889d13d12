"""Sites and phones: adding, listing, importing phones from CSV in one transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.naming import free_text, normalize_mac, normalize_site_serial
from fleetkey.core.rollout.windows import Window
from fleetkey.core.tabular import read_rows
from fleetkey.errors import ConflictError, InputError, NotFoundError
from fleetkey.store import audit
from fleetkey.store.credentials import digest_ha1, hash_passwords
from fleetkey.store.records import Phone, Site, utc
from fleetkey.store.schema import PhoneRow, SiteRow

REQUIRED: Final = ("mac", "site", "model")
OPTIONAL: Final = ("firmware", "user", "password", "contact")
TIMEZONE_CHARS: Final = 64  # the column; the longest IANA name has 32
LOOKUP_CHUNK: Final = 1000  # bound parameters per IN (...): SQLite allows 32766, PostgreSQL 65535
_TEXT = re.compile(r"[\x20-\x7e]{1,64}")  # printable ASCII: what phones carry in their config
_SIP_URI = re.compile(r"sips?:[^\s<>\"]{1,250}")


def check_timezone(name: str) -> str:
    if len(name) <= TIMEZONE_CHARS:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name the OS refuses
            pass
        else:
            return name
    shown = repr(name if len(name) <= TIMEZONE_CHARS else name[:TIMEZONE_CHARS] + "…")
    raise InputError(f"time zone {shown} is not an IANA zone (e.g. Europe/Berlin)")


def add_site(session: Session, clock: Clock, actor: str, site: Site) -> Site:
    serial = normalize_site_serial(site.serial)
    name = free_text(site.name, what="site name")
    if not name:
        raise InputError("a site needs a name")
    contact = free_text(site.contact, what="site contact") if site.contact else None
    if session.get(SiteRow, serial) is not None:
        raise ConflictError(f"site {serial} already exists")
    row = SiteRow(
        serial=serial,
        name=name,
        timezone=check_timezone(site.timezone),
        window_start=f"{site.window.start:%H:%M}",
        window_end=f"{site.window.end:%H:%M}",
        contact=contact or None,
        created_at=utc(clock.now()),
    )
    session.add(row)
    audit.append(
        session,
        clock,
        actor=actor,
        action="site.add",
        subject=serial,
        details={"name": row.name, "timezone": row.timezone, "window": str(site.window)},
    )
    return _site(row)


def sites(session: Session) -> list[Site]:
    return [_site(row) for row in session.scalars(select(SiteRow).order_by(SiteRow.serial))]


def phones(session: Session, site: str | None = None) -> list[Phone]:
    query = select(PhoneRow).order_by(PhoneRow.mac)
    if site is not None:
        query = query.where(PhoneRow.site_serial == normalize_site_serial(site))
    return [_phone(row) for row in session.scalars(query)]


def macs(session: Session, site: str) -> list[str]:
    """The MACs of a site's phones, sorted: cheap enough for a million."""
    serial = normalize_site_serial(site)
    return list(
        session.scalars(
            select(PhoneRow.mac).where(PhoneRow.site_serial == serial).order_by(PhoneRow.mac)
        )
    )


def phone(session: Session, mac: str) -> Phone:
    row = session.get(PhoneRow, normalize_mac(mac))
    if row is None:
        raise NotFoundError(
            f"phone {normalize_mac(mac)} is not in the inventory",
            hint="add it with `fleetkey phones import CSV`",
        )
    return _phone(row)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    added: int
    updated: int


@dataclass(frozen=True, slots=True)
class _PhoneInput:
    mac: str
    site: str
    model: str
    firmware: str | None
    user: str | None
    password: str | None
    contact: str | None


def import_phones(
    session: Session, clock: Clock, actor: str, data: bytes, *, source: str
) -> ImportSummary:
    """Add or update every phone of a CSV in ``session``'s transaction; all rows or none."""
    rows = _parse_phone_csv(session, data, source)
    hashes = hash_passwords([r.password for r in rows if r.password is not None])
    hashed = iter(hashes)
    now = utc(clock.now())
    macs = [r.mac for r in rows]
    existing: dict[str, PhoneRow] = {}
    for start in range(0, len(macs), LOOKUP_CHUNK):
        chunk = macs[start : start + LOOKUP_CHUNK]
        existing.update(
            (row.mac, row)
            for row in session.scalars(select(PhoneRow).where(PhoneRow.mac.in_(chunk)))
        )
    added = 0
    for item in rows:
        row = existing.get(item.mac)
        if row is None:
            row = PhoneRow(mac=item.mac, created_at=now)
            session.add(row)
            added += 1
        row.site_serial, row.model, row.firmware = item.site, item.model, item.firmware
        row.sip_contact, row.prov_user = item.contact, item.user
        if item.password is not None and item.user is not None:
            row.password_hash = next(hashed)
            row.digest_ha1 = digest_ha1(item.user, item.password)
        else:
            row.password_hash = row.digest_ha1 = None
    summary = ImportSummary(added, len(rows) - added)
    audit.append(
        session,
        clock,
        actor=actor,
        action="phones.import",
        subject=source,
        details={"added": summary.added, "updated": summary.updated},
    )
    return summary


def _parse_phone_csv(session: Session, data: bytes, source: str) -> list[_PhoneInput]:
    known_sites = set(session.scalars(select(SiteRow.serial)))
    return read_rows(
        data,
        source=source,
        required=REQUIRED,
        optional=OPTIONAL,
        parse=lambda values: _phone_input(values, known_sites),
        key=lambda row: row.mac,
        outcome="nothing was imported",
    )


def _phone_input(values: dict[str, str], known_sites: set[str]) -> _PhoneInput:
    mac = normalize_mac(values["mac"])
    site = normalize_site_serial(values["site"])
    if site not in known_sites:
        raise InputError(f"site {site} does not exist (add it with `fleetkey sites add`)")
    model = values["model"]
    for name in ("model", "firmware", "user", "password"):
        value = values.get(name) or ""
        if (name == "model" or value) and not _TEXT.fullmatch(value):
            raise InputError(f"{name} {value!r} must be 1-64 printable ASCII characters")
        if name != "password" and value:  # never shown again: any characters will do
            free_text(value, what=name, limit=64)
    user, password = values.get("user") or None, values.get("password") or None
    if (user is None) != (password is None):
        raise InputError("user and password go together: give both or neither")
    contact = values.get("contact") or None
    if contact is not None and not _SIP_URI.fullmatch(contact):
        raise InputError(f"contact {contact!r} is not a SIP URI (sip:user@host[:port])")
    return _PhoneInput(mac, site, model, values.get("firmware") or None, user, password, contact)


def _site(row: SiteRow) -> Site:
    window = Window(time.fromisoformat(row.window_start), time.fromisoformat(row.window_end))
    return Site(row.serial, row.name, row.timezone, window, row.contact)


def _phone(row: PhoneRow) -> Phone:
    return Phone(
        mac=row.mac,
        site=row.site_serial,
        model=row.model,
        firmware=row.firmware,
        prov_user=row.prov_user,
        has_password=row.password_hash is not None,
        sip_contact=row.sip_contact,
        last_address=row.last_address,
        last_user_agent=row.last_user_agent,
        last_seen_at=utc(row.last_seen_at) if row.last_seen_at else None,
    )
