"""The pre-flight of one uploaded license file (the dashboard's): what posting it would do,
changing nothing, and then posting it exactly as ``fleetkey licenses import --post`` does.

The verdict says of every key what an import reports (type, serial, the site it is tied to,
its latest term, its signature, a file name that says otherwise), then judges it against the
posted key it would replace, as ``licenses post --dry-run`` does: each feature's change, what
phones would lose (R7: a shorter key is ignored by phones), notes. What the dashboard will
not post is listed as refusals: anything ``--post`` would refuse without ``--force`` (the
dashboard never forces), a key already in the store (post it by id), a key of no inventory
site or phone (its phones are not the dashboard's to see), a signature that does not verify
against a key fleetkey holds. A signature fleetkey cannot check (a vendor's) needs the
operator's reason, as ``--accept-unverified`` does.

Posting writes the checked bytes to a private temporary folder under the uploaded name and
calls :func:`fleetkey.ops.importing.import_licenses` with ``post``: recorded, judged again,
posted and written into the tree in one transaction, audited with the caller's actor.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fleetkey.authority.checking import FileCheck
from fleetkey.authority.datadir import DataDir
from fleetkey.clock import Clock
from fleetkey.clock import today as clock_today
from fleetkey.core.codec import MAX_FILE_BYTES, parse_license_file
from fleetkey.core.license import LicenseType
from fleetkey.core.naming import free_text, key_misfit
from fleetkey.core.signing import TrustedKeys
from fleetkey.core.succession import FeatureChange, Succession
from fleetkey.core.verdicts import SignatureStatus
from fleetkey.errors import ConflictError, FleetkeyError, InputError
from fleetkey.ops import importing
from fleetkey.ops.importing import ImportResult, KeyReport
from fleetkey.store import inventory, registry
from fleetkey.store.posting import REASON_CHARS
from fleetkey.store.records import StoredLicense
from fleetkey.store.store import Store

MAX_UPLOAD_BYTES: Final = MAX_FILE_BYTES  # the parser's own cap
NAME_CHARS: Final = importing.FILE_NAME_CHARS


@dataclass(frozen=True, slots=True)
class KeyVerdict:
    """One key of the file: what an import reports, and what posting it would change."""

    report: KeyReport
    known: StoredLicense | None  # the store already holds this very key
    replaces: StoredLicense | None  # the posted key of its type and serial
    changes: list[FeatureChange]
    losses: list[str]  # what phones would lose: each refuses the post here
    notes: list[str]


@dataclass(frozen=True, slots=True)
class Preflight:
    name: str
    size: int
    keys: list[KeyVerdict]
    refusals: list[str] = field(default_factory=list)  # each stops the dashboard's post
    unverified: list[str] = field(default_factory=list)  # keys whose post needs a reason

    @property
    def postable(self) -> bool:
        return not self.refusals


def check_name(name: str) -> str:
    """An uploaded file's name, if fleetkey may keep it (a name, not a path)."""
    if any(c in name for c in "/\\") or name.startswith("."):
        raise InputError(
            f"file name {name[:40]!r}: expected a file's name, not a path", field="file"
        )
    try:
        return free_text(name, what="file name", limit=NAME_CHARS)
    except InputError as exc:
        raise InputError(exc.message, field="file") from exc


def preflight(
    data: DataDir, store: Store, clock: Clock, name: str, content: bytes, trusted: TrustedKeys
) -> Preflight:
    """The verdict on posting the file ``name`` holding ``content`` (nothing changes).
    InputError when the name is not one, or the bytes are not a license file."""
    name = check_name(name)
    if len(content) > MAX_UPLOAD_BYTES:
        raise InputError(
            f"{name} is {len(content)} bytes, larger than a license file may be "
            f"({MAX_UPLOAD_BYTES})",
            field="file",
        )
    try:
        parsed = parse_license_file(content, source=name)
    except FleetkeyError as exc:
        raise InputError(f"{name} is not a license file: {exc.message}", field="file") from exc
    checks = tuple(trusted.check(key) for key in parsed.keys)
    item = FileCheck(Path(name), parsed, checks, data=content)
    today, label = clock_today(clock), data.catalog().label
    verdicts, refusals, unverified = [], [], []
    if not parsed.keys:
        refusals.append(f"{name} holds no license key: there is nothing to post")
    seen: dict[tuple[LicenseType, str], int] = {}
    with store.transaction() as session:
        sites = {site.serial: site.name for site in inventory.sites(session)}
        known = registry.stored_keys(session, parsed.keys)
        placed = importing.phone_sites(session, parsed.keys)
        for index, (key, check) in enumerate(zip(parsed.keys, checks, strict=True), 1):
            where = f"key {index} ({key.type.value} {key.serial})"
            site = key.serial if key.type is LicenseType.SITE else placed.get(key.serial)
            report = importing.key_report(item, index, key, check, site, sites, today)
            replaces = registry.posted(session, key.type, key.serial)
            named = f"license {replaces.id}" if replaces else "the posted key"
            succession = Succession(today, key.terms(), replaces.terms if replaces else None)
            verdict = KeyVerdict(
                report,
                known.get(key),
                replaces,
                succession.features,
                succession.losses(label, named),
                succession.notes(named),
            )
            verdicts.append(verdict)
            refusals += _refusals(where, verdict, key_misfit(key.type, key.serial, name))
            if check.status is SignatureStatus.INVALID:
                refusals.append(f"{where}: its signature does not verify: {check.reason}")
            elif not check.valid:
                unverified.append(f"{where}: signature {check.status}: {check.reason}")
            other = seen.setdefault((key.type, key.serial), index)
            if other != index:
                refusals.append(
                    f"{where}: key {other} is for the same {key.type.value.lower()}: only one "
                    "can be posted"
                )
    return Preflight(name, len(content), verdicts, refusals, unverified)


def _refusals(where: str, verdict: KeyVerdict, misfit: str | None) -> list[str]:
    report, found = verdict.report, []
    if verdict.known is not None:
        found.append(
            f"{where}: already in the store as license {verdict.known.id} "
            f"({verdict.known.state.value}): post that one (fleetkey licenses post "
            f"{verdict.known.id})"
        )
    if misfit is not None:
        found.append(f"{where}: {misfit}: phones asking for that name would ignore it (R5)")
    if report.site is None:
        what = "site" if report.type is LicenseType.SITE else "phone"
        found.append(f"{where}: no {what} {report.serial} in the inventory")
    found += [f"{where}: {loss}" for loss in verdict.losses]
    return found


def post_upload(
    data: DataDir,
    store: Store,
    clock: Clock,
    actor: str,
    name: str,
    content: bytes,
    trusted: TrustedKeys,
    reason: str | None,
) -> ImportResult:
    """Post the uploaded file as ``licenses import --post`` does, after its pre-flight:
    ConflictError naming every refusal (nothing changes), InputError when a signature
    fleetkey cannot check comes without a reason."""
    verdict = preflight(data, store, clock, name, content, trusted)
    if verdict.refusals:
        raise ConflictError(
            f"nothing posted: {'; '.join(verdict.refusals)}",
            hint="fix the file, or post it from the CLI (fleetkey licenses import --post)",
        )
    reason = (reason or "").strip() or None
    if verdict.unverified and reason is None:
        raise InputError(
            f"reason: nothing posted: {'; '.join(verdict.unverified)}: say why phones should "
            "get it anyway",
            field="reason",
        )
    if reason is not None and len(reason) > REASON_CHARS:
        raise InputError(f"reason: longer than {REASON_CHARS} characters", field="reason")
    with tempfile.TemporaryDirectory(prefix="fleetkey-upload-") as folder:
        path = Path(folder) / verdict.name
        path.write_bytes(content)
        return importing.import_licenses(
            data,
            store,
            clock,
            actor,
            [path],
            trusted,
            post=True,
            accept_unverified=reason if verdict.unverified else None,
        )
