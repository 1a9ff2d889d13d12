"""The posted license files, phone → site and the known sites, held in memory for the servers.

Serving a license must not cost a database round trip: a boot storm is thousands of them per
second. A refresh (at start and then every second, off the event loop) first reads the audit
head: every change to licenses, sites and phones appends an audit event in its own transaction,
so an unchanged head means an unchanged view and the refresh costs one query. Otherwise it reads
the ids of the posted keys, loads only new ones, then swaps the whole view in one assignment, so
readers on the event loop never see a half-built view and never lock. Several servers sharing
one PostgreSQL database see a newly posted key within one refresh interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import select

from fleetkey.core.license import LicenseType
from fleetkey.serve.content import Content, ContentKind
from fleetkey.store import audit
from fleetkey.store.records import LicenseState, utc
from fleetkey.store.schema import LicenseRow, PhoneRow, SiteRow
from fleetkey.store.store import Store

REFRESH_S: Final = 1.0
_CHUNK: Final = 1000  # ids per IN (...) when loading new keys


@dataclass(frozen=True, slots=True)
class Credential:
    """A phone's provisioning login, as stored: scrypt for Basic, HA1 for Digest."""

    mac: str
    password_hash: str | None
    digest_ha1: str | None


@dataclass(frozen=True, slots=True)
class View:
    licenses: dict[tuple[str, str], Content] = field(default_factory=dict)  # (type, serial)
    phone_sites: dict[str, str] = field(default_factory=dict)  # mac → site serial
    sites: frozenset[str] = frozenset()
    # user → the phones with that login (usually one; operators sometimes share one)
    credentials: dict[str, tuple[Credential, ...]] = field(default_factory=dict)


class PostedLicenses:
    """A refreshable, lock-free view of what the store says phones must be served."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.view = View()
        self._by_id: dict[int, tuple[tuple[str, str], Content]] = {}
        self.refreshes = 0  # views built
        self._seq = -1  # the audit head the view was built at

    def license(self, license_type: str, serial: str) -> Content | None:
        """By ``LicenseType`` value; callers on the request path pass plain strings."""
        return self.view.licenses.get((license_type, serial))

    def site_of(self, mac: str) -> str | None:
        return self.view.phone_sites.get(mac)

    def is_site(self, serial: str) -> bool:
        return serial in self.view.sites

    def is_known(self, mac: str) -> bool:
        """The phone is in the inventory."""
        return mac in self.view.phone_sites

    def credentials(self, user: str) -> tuple[Credential, ...]:
        return self.view.credentials.get(user, ())

    def refresh(self) -> None:
        """Re-read the store; blocking, so servers call it off their event loop."""
        with self._store.transaction() as session:
            seq = audit.head_seq(session)
            if seq == self._seq:
                return
            posted = {
                row_id: (kind, serial)
                for row_id, kind, serial in session.execute(
                    select(LicenseRow.id, LicenseRow.type, LicenseRow.serial).where(
                        LicenseRow.state == LicenseState.POSTED.value
                    )
                )
            }
            by_id = {row_id: entry for row_id, entry in self._by_id.items() if row_id in posted}
            new = [row_id for row_id in posted if row_id not in by_id]
            for start in range(0, len(new), _CHUNK):
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
                    ).where(LicenseRow.id.in_(new[start : start + _CHUNK]))
                )
                for row_id, kind, serial, body, digest, name, posted_at, issued_at in rows:
                    by_id[row_id] = (
                        (kind, serial),
                        Content(
                            kind=(
                                ContentKind.SITE_LICENSE
                                if kind == LicenseType.SITE.value
                                else ContentKind.PHONE_LICENSE
                            ),
                            name=name,
                            size=len(body),
                            etag=f'"{digest[:32]}"',
                            modified=utc(posted_at or issued_at),
                            digest=digest,
                            body=body,
                            license_id=row_id,
                        ),
                    )
            phone_sites = dict(session.execute(select(PhoneRow.mac, PhoneRow.site_serial)).all())
            sites = frozenset(session.scalars(select(SiteRow.serial)))
            logins: dict[str, list[Credential]] = {}
            for mac, user, password_hash, ha1 in session.execute(
                select(
                    PhoneRow.mac, PhoneRow.prov_user, PhoneRow.password_hash, PhoneRow.digest_ha1
                ).where(PhoneRow.prov_user.is_not(None))
            ):
                if user is not None:  # the query excludes None; for the type checker
                    logins.setdefault(user, []).append(Credential(mac, password_hash, ha1))
        licenses: dict[tuple[str, str], Content] = {}
        for row_id in sorted(by_id):  # the newest posted key wins, should two be posted
            key, content = by_id[row_id]
            licenses[key] = content
        self._by_id = by_id
        self._seq = seq
        credentials = {user: tuple(found) for user, found in logins.items()}
        self.view = View(licenses, phone_sites, sites, credentials)
        self.refreshes += 1
