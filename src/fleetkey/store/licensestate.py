"""A phone's license state: which keys it should have, its own and its site's (the keys posted
for its MAC and for its site's serial), and which version of each file it last fetched, when,
and over what, as the per-phone state says (``fleetkey phones show``; store/phonestate.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from fleetkey.core.features import FeatureCatalog
from fleetkey.core.license import LicenseType
from fleetkey.core.naming import SITE_LICENSE_FILE, phone_license_file
from fleetkey.store import phonestate, registry
from fleetkey.store.phonestate import FileFetch
from fleetkey.store.records import Phone, StoredLicense, license_json


@dataclass(frozen=True, slots=True)
class Fetched:
    """One request of the phone for a license file, from the fetch records."""

    at: datetime
    path: str
    protocol: str
    status: int
    digest: str | None
    license: StoredLicense | None  # the stored key whose file the digest is, if any

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "path": self.path,
            "protocol": self.protocol,
            "status": self.status,
            "digest": self.digest,
            "license_id": None if self.license is None else self.license.id,
        }


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key a phone should have (its own or its site's), and what it last fetched of it."""

    type: LicenseType
    serial: str  # the phone's MAC or its site's serial
    file_name: str
    posted: StoredLicense | None
    last_request: Fetched | None  # the newest request for the file, whatever the answer
    last_served: Fetched | None  # the newest answer that served a version of it

    @property
    def current(self) -> bool | None:
        """Whether the version it last got is the posted one (None: nothing to compare)."""
        if self.posted is None or self.last_served is None:
            return None
        return self.last_served.digest == self.posted.digest

    def to_json(
        self, catalog: FeatureCatalog | None = None, today: date | None = None
    ) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "serial": self.serial,
            "file_name": self.file_name,
            "posted": None if self.posted is None else license_json(self.posted, catalog, today),
            "current": self.current,
            "last_request": None if self.last_request is None else self.last_request.to_json(),
            "last_served": None if self.last_served is None else self.last_served.to_json(),
        }


def key_states(session: Session, phone: Phone) -> list[KeyState]:
    """The phone's own key and its site's key, each with what the phone last fetched of it."""
    return [
        _state(session, phone.mac, LicenseType.PHONE, phone.mac, phone_license_file(phone.mac)),
        _state(session, phone.mac, LicenseType.SITE, phone.site, SITE_LICENSE_FILE),
    ]


def _state(session: Session, mac: str, kind: LicenseType, serial: str, file_name: str) -> KeyState:
    posted = registry.posted(session, kind, serial)
    # the file in any directory (the tree's root, a site's directory, a LICENSE_DIRECTORY), as
    # the writer keeps it in the per-phone state: still there when the records aged out
    request, served = phonestate.file_fetches(session, mac, file_name)
    return KeyState(
        kind, serial, file_name, posted, _fetched(session, request), _fetched(session, served)
    )


def _fetched(session: Session, fetch: FileFetch | None) -> Fetched | None:
    if fetch is None:
        return None
    stored = registry.find_by_digest(session, fetch.digest) if fetch.digest else []
    return Fetched(
        fetch.at,
        fetch.path,
        fetch.protocol,
        fetch.status,
        fetch.digest,
        stored[-1] if stored else None,
    )
