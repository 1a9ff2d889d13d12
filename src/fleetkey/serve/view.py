"""What the store says phones are served, held in memory: one read path for every protocol.

Serving must not cost a database round trip: a boot storm is thousands of requests a second. A
:class:`View` holds the posted license files, each phone's site, the sites and the phones'
logins; :class:`LiveView` rebuilds it (at start, then every second, off the event loop) and
swaps it in one assignment, so readers never see half a view and never lock. A refresh first
reads the audit head: every change to licenses, sites and phones appends an audit event in its
own transaction, so an unchanged head means an unchanged view, and the refresh is one query.
Only newly posted keys are loaded. Several servers on one PostgreSQL database see a newly posted
key within one refresh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final, Protocol

from fleetkey.core.license import LicenseType
from fleetkey.serve.content import Content, ContentKind
from fleetkey.store import audit, serving
from fleetkey.store.store import Store

REFRESH_S: Final = 1.0
SITE: Final = LicenseType.SITE.value  # the license maps are keyed by these plain strings
PHONE: Final = LicenseType.PHONE.value


@dataclass(frozen=True, slots=True)
class Credential:
    """A phone's provisioning login, as stored: scrypt for Basic, HA1 for Digest."""

    mac: str
    password_hash: str | None
    digest_ha1: str | None


@dataclass(frozen=True, slots=True)
class View:
    """One consistent picture; replaced whole, never changed."""

    licenses: dict[tuple[str, str], Content] = field(default_factory=dict)  # (type, serial)
    phone_sites: dict[str, str] = field(default_factory=dict)  # mac → site serial
    sites: frozenset[str] = frozenset()
    # user → the phones with that login (usually one; operators sometimes share one)
    credentials: dict[str, tuple[Credential, ...]] = field(default_factory=dict)

    def site_license(self, site: str) -> Content | None:
        return self.licenses.get((SITE, site))

    def phone_license(self, mac: str) -> Content | None:
        return self.licenses.get((PHONE, mac))


class ViewSource(Protocol):
    """Where rulings and records read the current :class:`View` from (a port: the server's is
    :class:`LiveView`; ``fleetkey.testing.FixedView`` holds one that never changes)."""

    @property
    def view(self) -> View: ...


def _content(key: serving.PostedKey) -> Content:
    return Content(
        kind=ContentKind.SITE_LICENSE if key.type == SITE else ContentKind.PHONE_LICENSE,
        name=key.file_name,
        size=len(key.content),
        etag=f'"{key.digest[:32]}"',
        modified=key.posted_at,
        digest=key.digest,
        body=key.content,
        license_id=key.id,
    )


class LiveView:
    """The newest :class:`View` (``.view``), refreshed from the store on request: the
    server's :class:`ViewSource`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.view = View()
        self._by_id: dict[int, tuple[tuple[str, str], Content]] = {}
        self.refreshes = 0  # views built
        self.read_at: float | None = None  # time.monotonic() the store was last read
        self._seq = -1  # the audit head the view was built at

    def credentials(self, user: str) -> tuple[Credential, ...]:
        return self.view.credentials.get(user, ())

    def refresh(self) -> bool:
        """Re-read the store (blocking: call it off the event loop); True if the view changed."""
        with self._store.transaction() as session:
            seq = audit.head_seq(session)
            if seq == self._seq:
                self.read_at = time.monotonic()
                return False
            posted = serving.posted_ids(session)
            by_id = {key: entry for key, entry in self._by_id.items() if key in posted}
            new = sorted(posted - by_id.keys())
            for key in serving.posted_keys(session, new):
                by_id[key.id] = ((key.type, key.serial), _content(key))
            phone_sites = serving.phone_sites(session)
            sites = serving.site_serials(session)
            logins: dict[str, list[Credential]] = {}
            for login in serving.logins(session):
                logins.setdefault(login.user, []).append(
                    Credential(login.mac, login.password_hash, login.digest_ha1)
                )
        licenses: dict[tuple[str, str], Content] = {}
        for key_id in sorted(by_id):  # the newest posted key wins, should two be posted
            name, content = by_id[key_id]
            licenses[name] = content
        self._by_id = by_id
        self._seq = seq
        credentials = {user: tuple(found) for user, found in logins.items()}
        self.view = View(licenses, phone_sites, sites, credentials)
        self.refreshes += 1
        self.read_at = time.monotonic()
        return True
