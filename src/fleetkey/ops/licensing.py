"""Issuing one license: sign with the active key, record it, write it where phones fetch it.

Shared by ``fleetkey issue phone|site`` and the admin API. The file is written inside the
transaction that records it: a failed write rolls the record back, so the store never lists a
posted key that is not on disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetkey.authority.datadir import DataDir
from fleetkey.authority.files import atomic_write, read_license
from fleetkey.authority.keyring import Keyring
from fleetkey.clock import Clock
from fleetkey.core.codec import serialize_keys
from fleetkey.core.issuing import issue_key, resolve_terms
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.naming import (
    SITE_LICENSE_FILE,
    normalize_mac,
    normalize_site_serial,
    phone_license_file,
)
from fleetkey.core.signing import SignatureCheck, SignatureStatus
from fleetkey.core.terms import Term, format_term, parse_term
from fleetkey.errors import FleetkeyError, InputError
from fleetkey.store import registry
from fleetkey.store.records import StoredLicense
from fleetkey.store.store import Store


@dataclass(frozen=True, slots=True)
class LicenseOrder:
    """What to issue: a phone (MAC) or site (serial) license with its features' terms."""

    license_type: LicenseType
    serial: str
    features: Sequence[str]
    expires: str | None = None  # YYYY-MM-DD or never, for every feature in ``features``
    per_feature: Sequence[str] = ()  # NAME=DATE, a feature with its own expiry

    def normalized_serial(self) -> str:
        if self.license_type is LicenseType.PHONE:
            return normalize_mac(self.serial)
        return normalize_site_serial(self.serial)

    def file_name(self) -> str:
        if self.license_type is LicenseType.SITE:
            return SITE_LICENSE_FILE
        return phone_license_file(self.normalized_serial())


@dataclass(frozen=True, slots=True)
class Issued:
    key: LicenseKey
    check: SignatureCheck
    stored: StoredLicense
    data: bytes
    target: Path | None  # where the file was written (None: not written)
    warnings: list[str]


def issue_license(
    data: DataDir,
    store: Store,
    clock: Clock,
    actor: str,
    order: LicenseOrder,
    *,
    passphrase: bytes | None,
    target: Path | None,
    write: bool = True,
) -> Issued:
    """Sign ``order`` and record it; written to ``target`` (the tree when None) if ``write``.

    The key is posted (served to phones) exactly when it lands in the provisioning tree under
    its own name.
    """
    overrides: dict[str, Term] = {}
    for item in order.per_feature:
        name, sep, day = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"per-feature expiry {item!r} is not NAME=DATE", field="per_feature")
        overrides[name.strip()] = parse_term(day)
    wanted = [f for f in order.features if f.strip()]
    terms = resolve_terms(
        data.catalog(), wanted, parse_term(order.expires) if order.expires else None, overrides
    )
    serial, file_name = order.normalized_serial(), order.file_name()
    key_name, signer = Keyring(data.keys).signer(passphrase)
    key = issue_key(serial, order.license_type, terms, signer)
    content = serialize_keys([key])
    check = SignatureCheck(SignatureStatus.VALID, key_name, f"signed by trusted key {key_name!r}")
    destination = (target or data.provisioning / file_name) if write else None
    posted = (
        destination is not None
        and destination.resolve() == (data.provisioning / file_name).resolve()
    )
    warnings = shorter_warnings(destination, [key]) if destination is not None else []
    with store.transaction() as session:
        stored = registry.record(
            session, clock, actor, key, check, content=content, file_name=file_name, post=posted
        )
        if destination is not None:
            destination.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(destination, content)
    return Issued(key, check, stored, content, destination, warnings)


def shorter_warnings(target: Path, keys: Iterable[LicenseKey]) -> list[str]:
    """R7: phones keep the longer key; what to tell the operator before replacing ``target``."""
    if not target.is_file():
        return []
    try:
        previous = read_license(target).keys
    except FleetkeyError as exc:
        return [f"replacing {target}, which does not parse: {exc.message}"]
    found = []
    for key in keys:
        for old in previous:
            if old.type is not key.type or old.serial != key.serial:
                continue
            if key.duration_rank < old.duration_rank:
                found.append(
                    f"the new key lasts until {format_term(key.expiry())}, the one it replaces "
                    f"until {format_term(old.expiry())}: phones that installed the old key "
                    "will ignore the new one (rule R7)"
                )
            elif key.duration_rank == old.duration_rank:
                found.append(
                    f"the new key lasts exactly as long as the one it replaces "
                    f"({format_term(key.expiry())}): phones adopt it (R7 tie) but gain no time"
                )
    return found


def post_license(
    data: DataDir, store: Store, clock: Clock, actor: str, license_id: int
) -> StoredLicense:
    """Serve an issued key: mark it posted (superseding the one before) and put its file in
    the provisioning tree, in one transaction."""
    with store.transaction() as session:
        stored = registry.post(session, clock, actor, license_id)
        atomic_write(data.provisioning / stored.file_name, registry.content(session, license_id))
    return stored


def revoke_license(
    data: DataDir, store: Store, clock: Clock, actor: str, license_id: int
) -> tuple[StoredLicense, Path | None]:
    """Stop serving a key; its file leaves the tree if it is the one there. (key, removed)"""
    with store.transaction() as session:
        stored = registry.revoke(session, clock, actor, license_id)
    posted_file = data.provisioning / stored.file_name
    if posted_file.is_file() and registry.file_digest(posted_file.read_bytes()) == stored.digest:
        posted_file.unlink()
        return stored, posted_file
    return stored, None
