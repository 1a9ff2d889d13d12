"""Issuing one license (sign with the active key, record it, write it where phones fetch it),
importing license files, posting and revoking keys.

Shared by ``fleetkey issue phone|site``, ``fleetkey licenses`` and the admin API. The file is
written inside the transaction that records it: a failed write rolls the record back, so the
store never lists a posted key that is not on disk. A key whose signature is not valid is
posted only with an operator's reason to accept it unverified (store/registry.py).
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fleetkey.authority.checking import FileCheck, check_files
from fleetkey.authority.datadir import DataDir
from fleetkey.authority.files import atomic_write, read_license
from fleetkey.authority.keyring import Keyring
from fleetkey.clock import Clock
from fleetkey.core.codec import serialize_keys
from fleetkey.core.issuing import issue_key, resolve_terms
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.naming import (
    LICENSE_FILE_SUFFIX,
    SITE_LICENSE_FILE,
    free_text,
    key_misfit,
    license_file_type,
    normalize_mac,
    normalize_site_serial,
    phone_license_file,
)
from fleetkey.core.signing import SignatureCheck, SignatureStatus, TrustedKeys
from fleetkey.core.terms import Term, format_term, parse_term
from fleetkey.errors import CommandFailedError, FleetkeyError, InputError
from fleetkey.store import registry
from fleetkey.store.records import LicenseOrigin, StoredLicense
from fleetkey.store.store import Store

FILE_NAME_CHARS: Final = 64  # the licenses.file_name column
_KINDS: Final = (  # what a path that is not a regular file is, for the message
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


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
    data: DataDir,
    store: Store,
    clock: Clock,
    actor: str,
    license_id: int,
    *,
    accept_unverified: str | None = None,
) -> StoredLicense:
    """Serve an issued key: mark it posted (superseding the one before) and put its file in
    the provisioning tree, in one transaction. A key whose signature is not valid needs
    ``accept_unverified``, the operator's reason (kept in the audit trail)."""
    with store.transaction() as session:
        stored = registry.post(
            session, clock, actor, license_id, accept_unverified=accept_unverified
        )
        atomic_write(data.provisioning / stored.file_name, registry.content(session, license_id))
    return stored


@dataclass(frozen=True, slots=True)
class SkippedKey:
    """A key of an imported file that was not recorded again: the store or the import already
    holds the same key (serial, type, options, duration, validation)."""

    file: str
    key_index: int  # 1-based, in its file
    license_id: int | None  # the stored key it repeats; None: one earlier in this import
    reason: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    imported: list[StoredLicense] = field(default_factory=list)
    skipped: list[SkippedKey] = field(default_factory=list)
    posted_unverified: list[StoredLicense] = field(default_factory=list)


def license_files(directory: Path) -> list[Path]:
    """The ``*-license.cfg`` files of ``directory``, sorted; InputError naming every path that
    is not a regular file (a FIFO would block the import for ever) or whose name the store
    cannot keep (over 64 characters, control characters)."""
    paths = sorted(directory.glob(f"*{LICENSE_FILE_SUFFIX}"))
    if not paths:
        raise InputError(f"{directory} holds no *{LICENSE_FILE_SUFFIX} file")
    problems = []
    for path in paths:
        try:
            mode = path.stat().st_mode
            free_text(path.name, what="file name", limit=FILE_NAME_CHARS)
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
            continue
        except InputError as exc:
            problems.append(f"{path}: {exc.message}")
            continue
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            problems.append(f"{path}: {kind}, not a regular file")
    if problems:
        raise InputError("nothing imported:\n  " + "\n  ".join(problems))
    return paths


def import_licenses(
    store: Store,
    clock: Clock,
    actor: str,
    paths: Sequence[Path],
    trusted: TrustedKeys,
    *,
    post: bool = False,
    accept_unverified: str | None = None,
) -> ImportResult:
    """Record the keys of ``paths`` (vendor files as unverifiable), all or none.

    A key the store already holds, or that an earlier file of the import holds, is skipped.
    With ``post``, each key whose file name says it belongs there is posted; a key whose
    signature is not valid only with ``accept_unverified``, else nothing is imported.
    """
    results = list(check_files(paths, trusted))
    broken = [result.error for result in results if result.license_file is None]
    if broken:
        raise CommandFailedError(
            "nothing imported, these files do not parse:\n  " + "\n  ".join(str(b) for b in broken)
        )
    result = ImportResult()
    with store.transaction() as session:
        every = [key for item in results for key in _keys(item)]
        known, seen = registry.stored_keys(session, every), set[LicenseKey]()
        wanted = []
        for item in results:
            for index, (key, check) in enumerate(zip(_keys(item), item.checks, strict=True), 1):
                name = str(item.path)
                if key in known:
                    earlier = known[key]
                    why = f"already in the store as license {earlier.id} ({earlier.state})"
                    result.skipped.append(SkippedKey(name, index, earlier.id, why))
                elif key in seen:
                    why = "the same key as an earlier file of this import"
                    result.skipped.append(SkippedKey(name, index, None, why))
                else:
                    seen.add(key)
                    wanted.append((item, key, check, post and _belongs(key, item.path.name)))
        unverified = [(i, k, c) for i, k, c, p in wanted if p and not c.valid]
        if unverified and accept_unverified is None:
            named = ", ".join(f"{i.path} key {k.serial} ({c.status})" for i, k, c in unverified)
            raise registry.unverified_refusal(
                f"nothing imported: posting would serve keys whose signature is not valid: {named}"
            )
        for item, key, check, posting in wanted:
            stored = registry.record(
                session,
                clock,
                actor,
                key,
                check,
                content=item.data,  # the bytes that were checked, not a second read
                file_name=item.path.name,
                origin=LicenseOrigin.IMPORTED,
                post=posting,
                accept_unverified=accept_unverified,
            )
            result.imported.append(stored)
            if posting and not check.valid:
                result.posted_unverified.append(stored)
    return result


def _keys(item: FileCheck) -> tuple[LicenseKey, ...]:
    return item.license_file.keys if item.license_file is not None else ()


def _belongs(key: LicenseKey, file_name: str) -> bool:
    """Whether the file's name says ``key`` is the one phones get from it (R5)."""
    return license_file_type(file_name) is not None and not key_misfit(
        key.type, key.serial, file_name
    )


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
