"""What provisioning servers read from the store to answer phones (``serve.view`` holds it).

Queries only: the posted license keys, each phone's site, the sites, the phones' provisioning
logins. A server reads them at start and again whenever the audit head moves (every change to
licenses, sites and phones appends an audit event in its own transaction).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetkey.core.license import LicenseState
from fleetkey.store.records import utc
from fleetkey.store.schema import LicenseRow, PhoneRow, SiteRow

CHUNK: Final = 1000  # ids per IN (...) when loading keys


@dataclass(frozen=True, slots=True)
class PostedKey:
    """A posted license file as servers answer it."""

    id: int
    type: str  # a LicenseType value: "Phone" or "Site"
    serial: str
    content: bytes
    digest: str
    file_name: str
    posted_at: datetime


@dataclass(frozen=True, slots=True)
class Login:
    """A phone's provisioning login, as stored: scrypt for Basic, HA1 for Digest."""

    mac: str
    user: str
    password_hash: str | None
    digest_ha1: str | None


def posted_ids(session: Session) -> set[int]:
    """The ids of every posted key."""
    return set(
        session.scalars(select(LicenseRow.id).where(LicenseRow.state == LicenseState.POSTED.value))
    )


def posted_keys(session: Session, ids: Sequence[int]) -> Iterator[PostedKey]:
    """The posted keys of ``ids``, with their bytes, read ``CHUNK`` at a time."""
    for start in range(0, len(ids), CHUNK):
        rows = session.execute(
            select(
                LicenseRow.id,
                LicenseRow.type,
                LicenseRow.serial,
                LicenseRow.content,
                LicenseRow.digest,
                LicenseRow.file_name,
                LicenseRow.posted_at,
                LicenseRow.issued_at,
            ).where(LicenseRow.id.in_(ids[start : start + CHUNK]))
        )
        for row_id, kind, serial, body, digest, name, posted_at, issued_at in rows:
            yield PostedKey(row_id, kind, serial, body, digest, name, utc(posted_at or issued_at))


def phone_sites(session: Session) -> dict[str, str]:
    """MAC → site serial, for every phone in the inventory."""
    return {mac: site for mac, site in session.execute(select(PhoneRow.mac, PhoneRow.site_serial))}


def site_serials(session: Session) -> frozenset[str]:
    return frozenset(session.scalars(select(SiteRow.serial)))


def logins(session: Session) -> list[Login]:
    """Every phone that has a provisioning login."""
    rows = session.execute(
        select(PhoneRow.mac, PhoneRow.prov_user, PhoneRow.password_hash, PhoneRow.digest_ha1).where(
            PhoneRow.prov_user.is_not(None)
        )
    )
    return [Login(mac, user, password_hash, ha1) for mac, user, password_hash, ha1 in rows if user]
