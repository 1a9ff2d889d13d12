"""What a phone gets for a path: license files from the store, everything else from the tree.

One resolver for HTTP and TFTP (issues 4 and 5), so a file is the same, and recorded the same,
whatever the protocol:

- ``<mac>-license.cfg``: the key posted for that MAC in the store, else a file of that name in
  the provisioning tree (e.g. one an operator copied in);
- ``000000000000-license.cfg``: the posted site key of the asking phone's site (the site of a
  ``/<site-serial>/`` path prefix, else the inventory site of the phone's MAC), else the default
  site file in the tree;
- anything else: ``<tree>/<site-serial>/<path>`` when there is a site prefix and that file
  exists, else ``<tree>/<path>``. Regular files only, and never outside the tree (symbolic
  links included).
"""

from __future__ import annotations

import enum
import hashlib
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Final, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetkey.core.license import LicenseType
from fleetkey.core.naming import license_file_type
from fleetkey.store import registry
from fleetkey.store.schema import LicenseRow, PhoneRow, SiteRow
from fleetkey.store.store import Store

DIGEST_MAX_BYTES: Final = 1024 * 1024  # files up to this size get a SHA-256 in fetch records
_MAC_NAME = re.compile(r"([0-9A-Fa-f]{12})[-.]")
_SERIAL = re.compile(r"[0-9A-Fa-f]{12}")
# an enum member read from its class costs ~0.3 µs on Python 3.11; read once
_SITE: Final = LicenseType.SITE
_PHONE: Final = LicenseType.PHONE
# and as plain strings for dict keys: an enum member hashes through a Python-level __hash__
_SITE_KEY: Final = str(LicenseType.SITE.value)
_PHONE_KEY: Final = str(LicenseType.PHONE.value)


class ContentKind(enum.StrEnum):
    PHONE_LICENSE = "phone-license"
    SITE_LICENSE = "site-license"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Content:
    """Something to serve: bytes from the store, or a file to stream from the tree."""

    kind: ContentKind
    name: str
    size: int
    etag: str
    modified: datetime
    digest: str | None
    body: bytes | None = None
    path: Path | None = None
    license_id: int | None = None


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks: the MAC when known (User-Agent, credentials, the file name), the site prefix."""

    mac: str | None = None
    site: str | None = None


# names repeat across a fleet's requests: match each once
_file_type = lru_cache(maxsize=65536)(license_file_type)


@lru_cache(maxsize=65536)
def mac_in_name(name: str) -> str | None:
    """The MAC a per-phone file name starts with (``<mac>-license.cfg``, ``<mac>.cfg``...)."""
    match = _MAC_NAME.match(name)
    if match is None or match.group(1) == "000000000000":
        return None
    return match.group(1).lower()


class Posted(Protocol):
    """Where the resolver finds posted keys, sites and phone sites (serve.cache keeps them)."""

    def license(self, license_type: str, serial: str) -> Content | None:
        """The posted file of a ``LicenseType`` value ("Phone", "Site") and serial."""
        ...

    def site_of(self, mac: str) -> str | None: ...

    def is_site(self, serial: str) -> bool: ...

    def is_known(self, mac: str) -> bool: ...

    @property
    def view(self) -> object:
        """What the answers above come from, replaced whole whenever any of them changes."""
        ...


class ContentResolver:
    """Resolves from the store directly, or, given ``posted``, from that in-memory view."""

    def __init__(self, store: Store, tree: Path, posted: Posted | None = None) -> None:
        self.store = store
        self.tree = tree.resolve()
        self.posted = posted

    def split_site(self, segments: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
        """A leading ``<site-serial>`` segment naming a known site, and the rest of the path."""
        if len(segments) > 1 and _SERIAL.fullmatch(segments[0]):
            serial = segments[0].lower()
            if self.posted is not None:
                known = self.posted.is_site(serial)
            else:
                with self.store.transaction() as session:
                    known = session.get(SiteRow, serial) is not None
            if known:
                return serial, segments[1:]
        return None, segments

    def resolve(self, segments: tuple[str, ...], requester: Requester) -> Content | None:
        """What to serve for ``segments`` (already checked by fleetkey.core.requestpath)."""
        name = segments[-1]
        if len(segments) == 1:
            kind = _file_type(name)
            if kind is not None and kind[0] is _SITE:
                return self._site_license(requester) or self._file(segments, requester.site)
            if kind is not None and kind[1] is not None:
                return self._phone_license(kind[1]) or self._file(segments, requester.site)
        return self._file(segments, requester.site)

    def _site_license(self, requester: Requester) -> Content | None:
        if self.posted is not None:
            serial = requester.site
            if serial is None and requester.mac is not None:
                serial = self.posted.site_of(requester.mac)
            return None if serial is None else self.posted.license(_SITE_KEY, serial)
        with self.store.transaction() as session:
            serial = requester.site
            if serial is None and requester.mac is not None:
                serial = session.scalar(
                    select(PhoneRow.site_serial).where(PhoneRow.mac == requester.mac)
                )
            if serial is None:
                return None
            return _from_store(session, LicenseType.SITE, serial, ContentKind.SITE_LICENSE)

    def _phone_license(self, mac: str) -> Content | None:
        if self.posted is not None:
            return self.posted.license(_PHONE_KEY, mac)
        with self.store.transaction() as session:
            return _from_store(session, LicenseType.PHONE, mac, ContentKind.PHONE_LICENSE)

    def _file(self, segments: tuple[str, ...], site: str | None) -> Content | None:
        candidates = [self.tree.joinpath(site, *segments)] if site else []
        candidates.append(self.tree.joinpath(*segments))
        for candidate in candidates:
            content = self._regular_file(candidate)
            if content is not None:
                return content
        return None

    def _regular_file(self, path: Path) -> Content | None:
        try:
            real = path.resolve(strict=True)
            info = real.stat()
        except (FileNotFoundError, NotADirectoryError, PermissionError, RuntimeError):
            return None
        if not stat.S_ISREG(info.st_mode) or not real.is_relative_to(self.tree):
            return None
        kind = _file_type(path.name)
        content_kind = ContentKind.FILE
        if kind is not None:
            content_kind = (
                ContentKind.SITE_LICENSE if kind[0] is _SITE else ContentKind.PHONE_LICENSE
            )
        digest = (
            _file_digest(str(real), info.st_mtime_ns, info.st_size)
            if info.st_size <= DIGEST_MAX_BYTES
            else None
        )
        return Content(
            kind=content_kind,
            name=path.name,
            size=info.st_size,
            etag=f'"{info.st_mtime_ns:x}-{info.st_size:x}"',
            modified=datetime.fromtimestamp(info.st_mtime, UTC),
            digest=digest,
            path=real,
        )


def _from_store(
    session: Session, license_type: LicenseType, serial: str, kind: ContentKind
) -> Content | None:
    posted = registry.posted(session, license_type.value, serial)
    if posted is None:
        return None
    body = session.scalar(select(LicenseRow.content).where(LicenseRow.id == posted.id))
    if body is None:  # pragma: no cover  # the row was just read
        return None
    return Content(
        kind=kind,
        name=posted.file_name,
        size=len(body),
        etag=f'"{posted.digest[:32]}"',
        modified=posted.posted_at or posted.issued_at,
        digest=posted.digest,
        body=body,
        license_id=posted.id,
    )


@lru_cache(maxsize=4096)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of a file, cached by (path, mtime, size): re-read only when the file changes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()
