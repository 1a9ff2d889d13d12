"""Sites and phones: adding, finding, updating and removing them, each change audited.

A site is named by its serial or by its name wherever a site is an argument (:func:`site`,
:class:`SiteNames`): the serial first, then the name, compared case-insensitively. Names are
unique that way from now on; a name two older sites share is refused as ambiguous, never
guessed. Importing phones from a CSV is store/phone_import.py.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.naming import HEX12, free_text, normalize_mac, normalize_site_serial
from fleetkey.core.rollout.windows import Window
from fleetkey.errors import ConflictError, InputError, NotFoundError
from fleetkey.store import audit, rowstate
from fleetkey.store.records import Phone, Site, site_json, utc
from fleetkey.store.schema import LicenseRow, PhoneRow, SiteRow

TIMEZONE_CHARS: Final = 64  # the column; the longest IANA name has 32
LOOKUP_CHUNK: Final = 1000  # bound parameters per IN (...): SQLite allows 32766, PostgreSQL 65535
MACS_AUDITED: Final = 100  # MACs an event names one by one; beyond, it counts them


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


class SiteNames:
    """Every site's serial and name, to name sites by either (one query, then in memory)."""

    def __init__(self, session: Session) -> None:
        rows = session.execute(select(SiteRow.serial, SiteRow.name))
        self._names = {serial: name for serial, name in rows}  # (a Result has keys())

    def serial(self, ref: str) -> str:
        """The serial of the site ``ref`` names: its serial (any case), else its name."""
        text = ref.strip()
        if not text:
            raise InputError("a site is named by its serial (12 hex digits) or its name")
        if HEX12.fullmatch(text) and text.lower() in self._names:
            return text.lower()
        named = sorted(s for s, name in self._names.items() if name.casefold() == text.casefold())
        if len(named) == 1:
            return named[0]
        shown = repr(text if len(text) <= 40 else text[:40] + "…")
        if named:
            raise InputError(
                f"site name {shown} is ambiguous: sites {', '.join(named)} are all named so",
                hint="name the site by its serial",
            )
        if HEX12.fullmatch(text):
            raise NotFoundError(
                f"site {text.lower()} does not exist",
                hint="`fleetkey sites list` lists the sites; `fleetkey sites add` adds one",
            )
        raise NotFoundError(
            f"site {shown} does not exist: no site has that serial or name",
            hint="`fleetkey sites list` lists the sites; `fleetkey sites add` adds one",
        )

    def check_free(self, name: str, *, keeping: str | None = None) -> None:
        """Refuse ``name`` when a site other than ``keeping`` has it (case-insensitively)."""
        for serial, other in self._names.items():
            if serial != keeping and other.casefold() == name.casefold():
                raise ConflictError(
                    f"site name {name!r} is taken by site {serial}",
                    hint="sites are named by serial or by name, so names are unique",
                )


def site_serial(session: Session, ref: str) -> str:
    return SiteNames(session).serial(ref)


def site(session: Session, ref: str) -> Site:
    """The site named by serial or name ``ref``."""
    return _site(_site_row(session, ref))


def _site_row(session: Session, ref: str, names: SiteNames | None = None) -> SiteRow:
    serial = (names or SiteNames(session)).serial(ref)
    row = session.get(SiteRow, serial)
    if row is None:  # pragma: no cover  # resolved in this very transaction
        raise NotFoundError(f"site {serial} does not exist")
    return row


def add_site(session: Session, clock: Clock, actor: str, site: Site) -> Site:
    serial = normalize_site_serial(site.serial)
    name = _name(site.name)
    contact = free_text(site.contact, what="site contact") if site.contact else None
    if session.get(SiteRow, serial) is not None:
        raise ConflictError(f"site {serial} already exists")
    SiteNames(session).check_free(name)
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


@dataclass(frozen=True, slots=True)
class SiteChanges:
    """What to change of a site; None keeps a value. ``contact=""`` clears the contact."""

    name: str | None = None
    timezone: str | None = None
    window: Window | None = None
    contact: str | None = None


@dataclass(frozen=True, slots=True)
class SiteUpdate:
    site: Site
    changed: dict[str, tuple[str | None, str | None]]  # column -> (old, new); {} when none

    def to_json(self) -> dict[str, Any]:
        """What ``sites update --json`` prints and ``PATCH /api/sites/{site}`` answers."""
        return {
            "site": site_json(self.site),
            "changed": {c: {"old": old, "new": new} for c, (old, new) in self.changed.items()},
        }


def update_site(
    session: Session, clock: Clock, actor: str, ref: str, changes: SiteChanges
) -> SiteUpdate:
    """Change a site's name, time zone, window or contact; audited when anything changed."""
    names = SiteNames(session)
    row = _site_row(session, ref, names)
    wanted: dict[str, str | None] = {}
    if changes.name is not None:
        wanted["name"] = _name(changes.name)
        names.check_free(wanted["name"] or "", keeping=row.serial)
    if changes.timezone is not None:
        wanted["timezone"] = check_timezone(changes.timezone)
    if changes.window is not None:
        wanted["window_start"] = f"{changes.window.start:%H:%M}"
        wanted["window_end"] = f"{changes.window.end:%H:%M}"
    if changes.contact is not None:
        wanted["contact"] = free_text(changes.contact, what="site contact") or None
    changed = {
        column: (getattr(row, column), value)
        for column, value in wanted.items()
        if getattr(row, column) != value
    }
    for column, (_, value) in changed.items():
        setattr(row, column, value)
    if changed:
        audit.append(
            session,
            clock,
            actor=actor,
            action="site.update",
            subject=row.serial,
            details={c: {"old": old, "new": new} for c, (old, new) in changed.items()},
        )
    return SiteUpdate(_site(row), changed)


@dataclass(frozen=True, slots=True)
class SiteRemoval:
    site: Site
    phones: int  # removed with it (only with force)
    posted: tuple[int, ...]  # ids of the posted keys of its serial and its phones; kept

    def to_json(self) -> dict[str, Any]:
        """What ``sites remove --json`` prints and ``DELETE /api/sites/{site}`` answers."""
        return {
            "site": site_json(self.site),
            "phones_removed": self.phones,
            "posted_keys_kept": list(self.posted),
        }


def remove_site(
    session: Session, clock: Clock, actor: str, ref: str, *, force: bool = False
) -> SiteRemoval:
    """Remove a site. While it has phones or posted keys, only with ``force``: then its phones
    go with it; its keys stay recorded (and posted: revoking is the licenses' business)."""
    row = _site_row(session, ref)
    found = _site(row)
    macs = list(session.scalars(select(PhoneRow.mac).where(PhoneRow.site_serial == row.serial)))
    posted = _posted_keys(session, row.serial, macs)
    if (macs or posted) and not force:
        keys = f"{_count(posted, 'posted key')} (license {', '.join(map(str, posted))})"
        held = " and ".join(
            [*([_count(macs, "phone")] if macs else []), *([keys] if posted else [])]
        )
        raise ConflictError(
            f"site {row.serial} ({row.name}) still has {held}: nothing was removed",
            hint=f"remove its phones first (`fleetkey phones remove --site {row.serial}`) and "
            "revoke its keys, or give --force to remove it with its phones (keys stay recorded)",
            field="force",
        )
    delete_phones(session, macs)
    session.delete(row)
    audit.append(
        session,
        clock,
        actor=actor,
        action="site.remove",
        subject=row.serial,
        details={"name": row.name, "phones_removed": len(macs), "posted_keys_kept": posted},
    )
    return SiteRemoval(found, len(macs), tuple(posted))


def sites(session: Session) -> list[Site]:
    return [_site(row) for row in session.scalars(select(SiteRow).order_by(SiteRow.serial))]


def phones(session: Session, site: str | None = None) -> list[Phone]:
    """Every phone, or the phones of the site named by serial or name ``site``."""
    query = select(PhoneRow).order_by(PhoneRow.mac)
    if site is not None:
        query = query.where(PhoneRow.site_serial == site_serial(session, site))
    return [_phone(row) for row in session.scalars(query)]


def macs(session: Session, site: str) -> list[str]:
    """The MACs of a site's phones, sorted: cheap enough for a million."""
    serial = normalize_site_serial(site)
    return list(
        session.scalars(
            select(PhoneRow.mac).where(PhoneRow.site_serial == serial).order_by(PhoneRow.mac)
        )
    )


def phone_sites(session: Session, macs: Collection[str]) -> dict[str, str]:
    """The site serial of each phone of ``macs`` (normalized MACs) in the inventory, read
    ``LOOKUP_CHUNK`` MACs a query: a vendor file's few MACs need not load every phone."""
    wanted = sorted(macs)
    found: dict[str, str] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        query = select(PhoneRow.mac, PhoneRow.site_serial).where(PhoneRow.mac.in_(chunk))
        found.update((mac, site) for mac, site in session.execute(query))
    return found


def phone(session: Session, mac: str) -> Phone:
    row = session.get(PhoneRow, normalize_mac(mac))
    if row is None:
        raise NotFoundError(
            f"phone {normalize_mac(mac)} is not in the inventory",
            hint="add it with `fleetkey phones import CSV`",
        )
    return _phone(row)


@dataclass(frozen=True, slots=True)
class PhoneRemoval:
    macs: tuple[str, ...]
    posted: tuple[int, ...]  # ids of the posted keys of those MACs; kept

    def to_json(self) -> dict[str, Any]:
        """What ``phones remove --json`` prints and ``DELETE /api/phones/{mac}`` answers."""
        return {"removed": list(self.macs), "posted_keys_kept": list(self.posted)}


def remove_phones(
    session: Session, clock: Clock, actor: str, macs: Sequence[str], *, subject: str | None = None
) -> PhoneRemoval:
    """Remove the phones ``macs``, all or none: an unknown MAC removes nothing."""
    wanted = sorted({normalize_mac(mac) for mac in macs})
    if not wanted:
        raise InputError("no phones to remove: name them by MAC (or by site)")
    known: set[str] = set()
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        known.update(session.scalars(select(PhoneRow.mac).where(PhoneRow.mac.in_(chunk))))
    missing = [mac for mac in wanted if mac not in known]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise NotFoundError(
            f"{_count(missing, 'phone')} not in the inventory ({', '.join(missing[:10])}{more}): "
            "nothing was removed",
            hint="`fleetkey phones list` lists the phones",
        )
    posted = _posted_keys(session, None, wanted)
    delete_phones(session, wanted)
    details: dict[str, Any] = {"removed": len(wanted), "posted_keys_kept": posted}
    if len(wanted) <= MACS_AUDITED:
        details["macs"] = wanted
    audit.append(
        session,
        clock,
        actor=actor,
        action="phones.remove",
        subject=subject or (wanted[0] if len(wanted) == 1 else f"{len(wanted)} phones"),
        details=details,
    )
    return PhoneRemoval(tuple(wanted), tuple(posted))


def delete_phones(session: Session, macs: Sequence[str]) -> None:
    """Delete phone rows in bulk, noting them for the audit event the caller appends."""
    for start in range(0, len(macs), LOOKUP_CHUNK):
        chunk = list(macs[start : start + LOOKUP_CHUNK])
        session.execute(delete(PhoneRow).where(PhoneRow.mac.in_(chunk)))
        rowstate.touch(session, "phones", chunk)


def _posted_keys(session: Session, serial: str | None, macs: Sequence[str]) -> list[int]:
    """Ids of the posted Site key of ``serial`` and posted Phone keys of ``macs``."""
    found: set[int] = set()
    posted = LicenseRow.state == LicenseState.POSTED.value
    if serial is not None:
        found.update(
            session.scalars(
                select(LicenseRow.id).where(
                    posted, LicenseRow.type == LicenseType.SITE.value, LicenseRow.serial == serial
                )
            )
        )
    for start in range(0, len(macs), LOOKUP_CHUNK):
        chunk = list(macs[start : start + LOOKUP_CHUNK])
        found.update(
            session.scalars(
                select(LicenseRow.id).where(
                    posted, LicenseRow.type == LicenseType.PHONE.value, LicenseRow.serial.in_(chunk)
                )
            )
        )
    return sorted(found)


def _name(text: str) -> str:
    name = free_text(text, what="site name")
    if not name:
        raise InputError("a site needs a name")
    return name


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


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
