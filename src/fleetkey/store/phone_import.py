"""Importing phones from a CSV: every row checked, the change worked out against the inventory
(the diff ``phones import --dry-run`` shows), then applied in the caller's transaction, audited.

A re-import changes only the columns the file has: a file of ``mac,site,model`` leaves each
phone's firmware, login and SIP contact as they are (it used to erase them: rollouts need the
contact). An empty cell of a column the file has clears that value. With ``remove_missing``,
the phones of the sites the file names that the file does not list are removed. Passwords are
compared through their Digest HA1 (cheap), so an unchanged password is neither re-hashed nor
reported; the diff never shows one.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.device.models import check_model
from fleetkey.core.naming import free_text, normalize_mac
from fleetkey.core.tabular import read_rows
from fleetkey.errors import InputError
from fleetkey.store import audit
from fleetkey.store.credentials import digest_ha1, hash_passwords
from fleetkey.store.inventory import LOOKUP_CHUNK, MACS_AUDITED, SiteNames, delete_phones
from fleetkey.store.records import utc
from fleetkey.store.schema import PhoneRow

REQUIRED: Final = ("mac", "site", "model")
OPTIONAL: Final = ("firmware", "user", "password", "contact")
# CSV column -> phones column, in the order the diff shows them
COLUMNS: Final = {
    "site": "site_serial",
    "model": "model",
    "firmware": "firmware",
    "user": "prov_user",
    "contact": "sip_contact",
}
HIDDEN: Final = "(hidden)"  # what the diff shows for a password: never the value
_TEXT = re.compile(r"[\x20-\x7e]{1,64}")  # printable ASCII: what phones carry in their config
_SIP_URI = re.compile(r"sips?:[^\s<>\"]{1,250}")


class RowChange(enum.StrEnum):
    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class ColumnChange:
    column: str  # as the CSV names it
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class PhoneDiff:
    mac: str
    change: RowChange
    columns: tuple[ColumnChange, ...]  # added: the values given; removed: the values it had

    def to_json(self) -> dict[str, Any]:
        return {
            "mac": self.mac,
            "change": self.change.value,
            "columns": {c.column: {"old": c.old, "new": c.new} for c in self.columns},
        }


@dataclass(frozen=True, slots=True)
class ImportResult:
    columns: tuple[str, ...]  # the file's columns
    dry_run: bool
    unchanged: int
    diff: tuple[PhoneDiff, ...] = field(default=())

    def count(self, change: RowChange) -> int:
        return sum(1 for d in self.diff if d.change is change)

    @property
    def added(self) -> int:
        return self.count(RowChange.ADDED)

    @property
    def updated(self) -> int:
        """Phones of the file that were already in the inventory, changed or not."""
        return self.count(RowChange.CHANGED) + self.unchanged

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.count(RowChange.ADDED),
            "updated": self.updated,
            "changed": self.count(RowChange.CHANGED),
            "unchanged": self.unchanged,
            "removed": self.count(RowChange.REMOVED),
            "dry_run": self.dry_run,
            "columns": list(self.columns),
            "diff": [d.to_json() for d in self.diff],
        }


@dataclass(frozen=True, slots=True)
class _Row:
    mac: str
    values: dict[str, str | None]  # CSV column -> value, for the columns the file has
    password: str | None
    columns: tuple[str, ...]  # the file's columns


def import_phones(
    session: Session,
    clock: Clock,
    actor: str,
    data: bytes,
    *,
    source: str,
    dry_run: bool = False,
    remove_missing: bool = False,
) -> ImportResult:
    """Add or update every phone of a CSV in ``session``'s transaction; all rows or none.

    ``dry_run`` works out the diff and changes nothing (no audit event either).
    """
    names = SiteNames(session)
    rows = read_rows(
        data,
        source=source,
        required=REQUIRED,
        optional=OPTIONAL,
        parse=lambda values: _parse(values, names),
        key=lambda row: row.mac,
        outcome="nothing was imported",
    )
    existing = _existing(session, [r.mac for r in rows])
    diff: list[PhoneDiff] = []
    unchanged = 0
    for row in rows:
        stored = existing.get(row.mac)
        changes = _changes(stored, row)
        if stored is None:
            diff.append(PhoneDiff(row.mac, RowChange.ADDED, changes))
        elif changes:
            diff.append(PhoneDiff(row.mac, RowChange.CHANGED, changes))
        else:
            unchanged += 1
    if remove_missing:
        diff.extend(_missing(session, {r.values["site"] or "" for r in rows}, rows))
    result = ImportResult(rows[0].columns, dry_run, unchanged, tuple(diff))
    if not dry_run:
        _apply(session, clock, rows, existing, result)
        audit.append(
            session,
            clock,
            actor=actor,
            action="phones.import",
            subject=source,
            details=_details(result),
        )
    return result


def _parse(values: dict[str, str], names: SiteNames) -> _Row:
    mac = normalize_mac(values["mac"])
    site = names.serial(values["site"])
    check_model(values["model"])  # the rule --models takes too (core.device.models)
    for name in ("model", "firmware", "user", "password"):
        value = values.get(name) or ""
        if (name == "model" or value) and not _TEXT.fullmatch(value):
            raise InputError(f"{name} {value!r} must be 1-64 printable ASCII characters")
        if name != "password" and value:  # never shown again: any characters will do
            free_text(value, what=name, limit=64)
    if ("user" in values) != ("password" in values):
        raise InputError("columns user and password go together: the file has only one of them")
    user, password = values.get("user") or None, values.get("password") or None
    if (user is None) != (password is None):
        raise InputError("user and password go together: give both or neither")
    contact = values.get("contact") or None
    if contact is not None and not _SIP_URI.fullmatch(contact):
        raise InputError(f"contact {contact!r} is not a SIP URI (sip:user@host[:port])")
    given: dict[str, str | None] = {"site": site, "model": values["model"]}
    for column in OPTIONAL:
        if column in values and column != "password":
            given[column] = values[column] or None
    columns = tuple(c for c in (*REQUIRED, *OPTIONAL) if c in values)
    return _Row(mac, given, password, columns)


def _existing(session: Session, macs: list[str]) -> dict[str, PhoneRow]:
    found: dict[str, PhoneRow] = {}
    for start in range(0, len(macs), LOOKUP_CHUNK):
        chunk = macs[start : start + LOOKUP_CHUNK]
        found.update(
            (row.mac, row)
            for row in session.scalars(select(PhoneRow).where(PhoneRow.mac.in_(chunk)))
        )
    return found


def _changes(stored: PhoneRow | None, row: _Row) -> tuple[ColumnChange, ...]:
    """The columns ``row`` changes of ``stored`` (of nothing, for a new phone)."""
    changes = []
    for column, value in row.values.items():
        old = getattr(stored, COLUMNS[column]) if stored is not None else None
        if old != value:
            changes.append(ColumnChange(column, old, value))
    if "user" in row.values and _password_changes(stored, row):
        had = stored is not None and stored.password_hash is not None
        changes.append(
            ColumnChange("password", HIDDEN if had else None, HIDDEN if row.password else None)
        )
    return tuple(changes)


def _password_changes(stored: PhoneRow | None, row: _Row) -> bool:
    """Whether the password differs from the stored one (same HA1 under the old user)."""
    if stored is None or stored.password_hash is None:
        return row.password is not None
    if row.password is None:
        return True
    return stored.digest_ha1 != digest_ha1(stored.prov_user or "", row.password)


def _missing(session: Session, sites: set[str], rows: list[_Row]) -> list[PhoneDiff]:
    """The phones of ``sites`` the file does not list, as removals."""
    listed = {r.mac for r in rows}
    found = session.scalars(
        select(PhoneRow).where(PhoneRow.site_serial.in_(sorted(sites))).order_by(PhoneRow.mac)
    )
    return [
        PhoneDiff(
            phone.mac,
            RowChange.REMOVED,
            tuple(
                ColumnChange(column, getattr(phone, attribute), None)
                for column, attribute in COLUMNS.items()
                if getattr(phone, attribute) is not None
            ),
        )
        for phone in found
        if phone.mac not in listed
    ]


def _apply(
    session: Session,
    clock: Clock,
    rows: list[_Row],
    existing: dict[str, PhoneRow],
    result: ImportResult,
) -> None:
    """Write what the diff says; logins are hashed again only where the user or password
    changed."""
    now = utc(clock.now())
    changes = {d.mac: d for d in result.diff if d.change is not RowChange.REMOVED}
    rehash: list[_Row] = []
    for row in rows:
        if row.mac not in changes:
            continue
        stored = existing.get(row.mac)
        if stored is None:
            stored = existing[row.mac] = PhoneRow(mac=row.mac, created_at=now)
            session.add(stored)
        for change in changes[row.mac].columns:
            if change.column in COLUMNS:
                setattr(stored, COLUMNS[change.column], change.new)
        if any(c.column in {"user", "password"} for c in changes[row.mac].columns):
            rehash.append(row)
    hashed = iter(hash_passwords([row.password for row in rehash if row.password is not None]))
    for row in rehash:
        stored = existing[row.mac]
        if row.password is not None and row.values.get("user") is not None:
            stored.password_hash = next(hashed)
            stored.digest_ha1 = digest_ha1(row.values["user"] or "", row.password)
        else:
            stored.password_hash = stored.digest_ha1 = None
    delete_phones(session, [d.mac for d in result.diff if d.change is RowChange.REMOVED])


def _details(result: ImportResult) -> dict[str, Any]:
    document = result.to_json()
    del document["diff"], document["dry_run"]
    removed = [d.mac for d in result.diff if d.change is RowChange.REMOVED]
    if removed and len(removed) <= MACS_AUDITED:
        document["removed_macs"] = removed
    return document
