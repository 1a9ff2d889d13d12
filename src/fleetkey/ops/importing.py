"""Importing license files (vendor files first of all): a file or a folder, every key reported.

Every key of every file is reported, imported or not: its type and serial, the site it is tied
to (a site key by its serial; a phone key by its phone's inventory site), its latest term and
whether it has passed, its signature verdict, and what is wrong with it (expired, a signature
fleetkey cannot check, no such site, a file whose name says it holds another key).

Keys are recorded all or none: every path a regular file that parses. A key the store already
holds, or an earlier file of the import, is skipped (the same serial, type, options, duration
and validation, whatever bytes surround them). With ``post``, each new key is posted under the
name phones ask for, in its place (``ops/placement.py``), never under the vendor's file name;
judged as every post is: a signature that is not valid needs a reason, a key that takes
something from phones (an expired vendor file) needs force; any refusal imports nothing.
"""

from __future__ import annotations

import enum
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Final

from sqlalchemy.orm import Session

from fleetkey.authority.checking import FileCheck, check_files
from fleetkey.authority.datadir import DataDir
from fleetkey.clock import Clock
from fleetkey.clock import today as clock_today
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.naming import (
    LICENSE_FILE_SUFFIX,
    SITE_LICENSE_FILE,
    free_text,
    key_misfit,
    phone_license_file,
)
from fleetkey.core.signing import TrustedKeys
from fleetkey.core.terms import Term, format_term, term_covers
from fleetkey.core.verdicts import SignatureCheck, SignatureStatus
from fleetkey.errors import CommandFailedError, ConflictError, InputError
from fleetkey.ops import placement
from fleetkey.store import inventory, posting, registry
from fleetkey.store.records import LicenseOrigin, StoredLicense
from fleetkey.store.store import Store

FILE_NAME_CHARS: Final = 64  # file names fleetkey keeps and shows
_KINDS: Final = (  # what a path that is not a regular file is, for the message
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class KeyOutcome(enum.StrEnum):
    """What an import did with one key."""

    IMPORTED = "imported"
    POSTED = "posted"
    SKIPPED = "skipped"  # the store or the import already holds it


@dataclass(frozen=True, slots=True)
class KeyReport:
    """One key of an imported file, imported or skipped, and what the operator should know."""

    file: str
    key_index: int  # 1-based, in its file
    type: LicenseType
    serial: str
    site: str | None  # the serial of the site it is tied to; None: no inventory site
    site_name: str | None
    expires: Term | None  # its latest term; None: it grants nothing
    expired: bool
    signature: SignatureStatus
    license_id: int | None  # None: repeated within this import
    outcome: KeyOutcome
    findings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SkippedKey:
    """A key that was not recorded again: the store or the import already holds it."""

    file: str
    key_index: int  # 1-based, in its file
    license_id: int | None  # the stored key it repeats; None: one earlier in this import
    reason: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    imported: list[StoredLicense] = field(default_factory=list)
    skipped: list[SkippedKey] = field(default_factory=list)
    posted_unverified: list[StoredLicense] = field(default_factory=list)
    reports: list[KeyReport] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # written into the tree
    warnings: list[str] = field(default_factory=list)  # what posting forced, and notes


def license_files(path: Path) -> list[Path]:
    """The files to import: ``path`` itself, or the ``*-license.cfg`` files of a folder,
    sorted; InputError naming every path that is not a regular file (a FIFO would block the
    import for ever) or whose name fleetkey cannot keep (over 64 characters, control
    characters)."""
    if path.is_dir():
        paths = sorted(path.glob(f"*{LICENSE_FILE_SUFFIX}"))
        if not paths:
            raise InputError(f"{path} holds no *{LICENSE_FILE_SUFFIX} file")
    else:
        paths = [path]
    problems = []
    for item in paths:
        try:
            mode = item.stat().st_mode
            free_text(item.name, what="file name", limit=FILE_NAME_CHARS)
        except OSError as exc:
            problems.append(f"{item}: {exc.strerror or exc}")
            continue
        except InputError as exc:
            problems.append(f"{item}: {exc.message}")
            continue
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            problems.append(f"{item}: {kind}, not a regular file")
    if problems:
        raise InputError("nothing imported:\n  " + "\n  ".join(problems))
    return paths


def import_licenses(
    data: DataDir,
    store: Store,
    clock: Clock,
    actor: str,
    paths: Sequence[Path],
    trusted: TrustedKeys,
    *,
    post: bool = False,
    accept_unverified: str | None = None,
    force: bool = False,
) -> ImportResult:
    """Record the keys of ``paths`` (vendor files as unverifiable), all or none, and report
    each; with ``post``, post each new key in its place (see the module)."""
    results = list(check_files(paths, trusted))
    broken = [result.error for result in results if result.license_file is None]
    if broken:
        raise CommandFailedError(
            "nothing imported, these files do not parse:\n  " + "\n  ".join(str(b) for b in broken)
        )
    today, label = clock_today(clock), data.catalog().label
    result = ImportResult()
    with store.transaction() as session:
        sites = {site.serial: site.name for site in inventory.sites(session)}
        every = [key for item in results for key in _keys(item)]
        known, seen = registry.stored_keys(session, every), set[LicenseKey]()
        placed = phone_sites(session, every)
        wanted: list[tuple[FileCheck, int, LicenseKey, SignatureCheck]] = []
        for item in results:
            for index, (key, check) in enumerate(zip(_keys(item), item.checks, strict=True), 1):
                site = key.serial if key.type is LicenseType.SITE else placed.get(key.serial)
                report = key_report(item, index, key, check, site, sites, today)
                if key in known:
                    earlier = known[key]
                    why = f"already in the store as license {earlier.id} ({earlier.state})"
                    result.skipped.append(SkippedKey(str(item.path), index, earlier.id, why))
                    result.reports.append(
                        replace(report, license_id=earlier.id, outcome=KeyOutcome.SKIPPED)
                    )
                elif key in seen:
                    why = "the same key as an earlier file of this import"
                    result.skipped.append(SkippedKey(str(item.path), index, None, why))
                    result.reports.append(
                        replace(report, license_id=None, outcome=KeyOutcome.SKIPPED)
                    )
                else:
                    seen.add(key)
                    wanted.append((item, index, key, check))
                    result.reports.append(report)
        if post:
            _check_postable(session, clock, wanted, label, accept_unverified, force)
        writes: list[tuple[Path, bytes]] = []
        for item, index, key, check in wanted:
            stored = registry.record(
                session,
                clock,
                actor,
                key,
                check,
                content=item.data,  # the bytes that were checked, not a second read
                file_name=_served_name(key),
                origin=LicenseOrigin.IMPORTED,
                details={"source": item.path.name, "key_index": str(index)},
            )
            outcome = KeyOutcome.IMPORTED
            if post:
                files = placement.targets(data.provisioning, key.type, key.serial)
                judgement = posting.post(
                    session,
                    clock,
                    actor,
                    stored.id,
                    accept_unverified=accept_unverified,
                    force=force,
                    label=label,
                    details={"files": placement.relative(data.provisioning, files)},
                )
                stored, outcome = judgement.license, KeyOutcome.POSTED
                writes += [(path, item.data) for path in files]
                result.files.extend(files)
                result.warnings.extend(
                    f"license {stored.id}: forced: {x}" for x in judgement.losses
                )
                result.warnings.extend(f"license {stored.id}: {note}" for note in judgement.notes)
                if not check.valid:
                    result.posted_unverified.append(stored)
            result.imported.append(stored)
            position = next(n for n, r in enumerate(result.reports) if r.file == str(item.path)
                            and r.key_index == index)  # fmt: skip
            result.reports[position] = replace(
                result.reports[position], license_id=stored.id, outcome=outcome
            )
        placement.publish(writes)
    return result


def _keys(item: FileCheck) -> tuple[LicenseKey, ...]:
    return item.license_file.keys if item.license_file is not None else ()


def _served_name(key: LicenseKey) -> str:
    """The name phones ask for the key by (R2), whatever the vendor called its file."""
    return SITE_LICENSE_FILE if key.type is LicenseType.SITE else phone_license_file(key.serial)


def phone_sites(session: Session, keys: Sequence[LicenseKey]) -> dict[str, str]:
    """The inventory site of each phone key's MAC (phones not in the inventory left out)."""
    macs = {key.serial for key in keys if key.type is LicenseType.PHONE}
    if not macs:
        return {}
    return inventory.phone_sites(session, macs)


def key_report(
    item: FileCheck,
    index: int,
    key: LicenseKey,
    check: SignatureCheck,
    site: str | None,
    sites: dict[str, str],
    today: date,
) -> KeyReport:
    """What an import says of one key (the dashboard's pre-flight says the same)."""
    latest = key.expiry()
    expired = latest is None or not term_covers(latest, today)
    findings = []
    if expired:
        findings.append(f"expired on {format_term(latest)}" if latest else "grants no feature")
    if not check.valid:
        findings.append(f"signature {check.status}: {check.reason}")
    misfit = key_misfit(key.type, key.serial, item.path.name)
    if misfit is not None:
        findings.append(f"its file's name says otherwise: {misfit}")
    if key.type is LicenseType.SITE and site not in sites:
        findings.append(
            f"no site {key.serial} in the inventory: phones get it only at "
            f"/{key.serial}/{SITE_LICENSE_FILE} (fleetkey sites add {key.serial} places them)"
        )
    return KeyReport(
        str(item.path),
        index,
        key.type,
        key.serial,
        site if site in sites else None,
        sites.get(site) if site is not None else None,
        latest,
        expired,
        check.status,
        None,
        KeyOutcome.IMPORTED,
        findings,
    )


def _check_postable(
    session: Session,
    clock: Clock,
    wanted: Sequence[tuple[FileCheck, int, LicenseKey, SignatureCheck]],
    label: Callable[[int], str],
    accept_unverified: str | None,
    force: bool,
) -> None:
    """Refuse, before anything is recorded, what ``--post`` cannot do: two keys for one
    serial, a key whose file's name says another key belongs there, keys whose signature is
    not valid without a reason, keys that take something from phones without force."""
    places: dict[tuple[LicenseType, str], str] = {}
    unverified = []
    for item, index, key, check in wanted:
        where = f"{item.path} key {index}"
        misfit = key_misfit(key.type, key.serial, item.path.name)
        if misfit is not None:
            raise ConflictError(
                f"nothing imported: {where} is {misfit}: phones asking for that name would "
                "ignore it (R5)",
                hint="import it without --post, then post it by id (fleetkey licenses post ID)",
            )
        other = places.setdefault((key.type, key.serial), where)
        if other != where:
            raise ConflictError(
                f"nothing imported: {other} and {where} are both {key.type.value} keys for "
                f"{key.serial}: only one can be posted",
                hint="import without --post, then post the one phones should get by id",
            )
        if not check.valid:
            unverified.append(f"{item.path} key {key.serial} ({check.status})")
    if unverified and accept_unverified is None:
        raise posting.unverified_refusal(
            "nothing imported: posting would serve keys whose signature is not valid: "
            + ", ".join(unverified)
        )
    if force:
        return
    losses_of: dict[tuple[LicenseType, str], list[str]] = {}
    for key_type in LicenseType:
        batch = [(key.serial, key.terms()) for _, _, key, _ in wanted if key.type is key_type]
        found = posting.judge_terms_batch(session, clock, key_type, batch, label)
        losses_of.update(((key_type, serial), losses) for serial, losses in found.items())
    for item, index, key, _ in wanted:
        losses = losses_of.get((key.type, key.serial))
        if losses:
            raise posting.unsafe(
                f"nothing imported: posting {item.path} key {index} ({key.type.value} "
                f"{key.serial})",
                losses,
            )
