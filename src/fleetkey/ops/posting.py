"""Posting keys where phones fetch them, the dry run, rollback, revocation and trust: the store
change and the provisioning tree's files in one step, shared by the CLI and the admin API.

The files are written inside the transaction that records the change, all or none
(``ops/placement.py``): a failed write rolls the record back, so the store never lists a posted
key that is not on disk. What a post may do is judged against the store's posted key of the
same type and serial (``store/posting.py``): a key that takes something from phones is posted
only when forced, one whose signature is not valid only with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from fleetkey.authority.datadir import DataDir
from fleetkey.clock import Clock
from fleetkey.core.features import FeatureCatalog
from fleetkey.core.license import LicenseType
from fleetkey.core.naming import HEX12, normalize_mac, normalize_site_serial
from fleetkey.core.terms import format_term
from fleetkey.errors import InputError, NotFoundError
from fleetkey.ops import placement
from fleetkey.store import inventory, posting, registry
from fleetkey.store.posting import Judgement
from fleetkey.store.records import StoredLicense, license_json
from fleetkey.store.store import Store


@dataclass(frozen=True, slots=True)
class Posted:
    """A post or rollback done (or, for a dry run, what it would do): the judgement and the
    files written (would be written)."""

    judgement: Judgement
    files: list[Path]

    @property
    def license(self) -> StoredLicense:
        return self.judgement.license

    def to_json(self, catalog: FeatureCatalog, *, dry_run: bool = False) -> dict[str, Any]:
        """What ``licenses post|rollback --json`` print and the admin API answers: the key, the
        one it replaces, the files, each feature's change (named by ``catalog``), what phones
        would lose and notes; a dry run also says what the post would need."""
        judgement = self.judgement
        document: dict[str, Any] = {
            "license": license_json(judgement.license),
            "replaces": judgement.replaced.id if judgement.replaced else None,
            "files": [str(path) for path in self.files],
            "changes": [
                {
                    "slot": item.slot,
                    "name": catalog.name_of(item.slot),
                    "before": format_term(item.before),
                    "after": format_term(item.after),
                    "change": item.change.value,
                }
                for item in judgement.succession.features
            ],
            "losses": judgement.losses,
            "notes": judgement.notes,
        }
        if dry_run:
            document |= {
                "dry_run": True,
                "needs_force": bool(judgement.losses),
                "needs_accept_unverified": judgement.needs_reason,
            }
        return document


def post_license(
    data: DataDir,
    store: Store,
    clock: Clock,
    actor: str,
    license_id: int,
    *,
    accept_unverified: str | None = None,
    force: bool = False,
    default_site: bool = False,
) -> Posted:
    """Serve a key: mark it posted (superseding the one before) and write its file to its
    place in the tree (and the default file, ``default_site`` or when its site is the
    default), in one transaction."""
    label = data.catalog().label
    with store.transaction() as session:
        stored = registry.get(session, license_id)
        files = placement.targets(
            data.provisioning, stored.type, stored.serial, make_default=default_site
        )
        judgement = posting.post(
            session,
            clock,
            actor,
            license_id,
            accept_unverified=accept_unverified,
            force=force,
            label=label,
            details=_file_details(data, files, default_site),
        )
        content = registry.content(session, license_id)
        placement.publish([(path, content) for path in files])
    return Posted(judgement, files)


def preview_post(
    data: DataDir, store: Store, clock: Clock, license_id: int, *, default_site: bool = False
) -> Posted:
    """What posting ``license_id`` would do, changing nothing (``licenses post --dry-run``)."""
    with store.transaction() as session:
        stored = registry.get(session, license_id)
        files = placement.targets(
            data.provisioning, stored.type, stored.serial, make_default=default_site
        )
        judgement = posting.judge(session, clock, license_id, data.catalog().label)
    return Posted(judgement, files)


def _site_by_name(session: Session, name: str) -> str:
    """The serial of the site called ``name``; else: neither a serial, a MAC nor a site."""
    try:
        return inventory.site_serial(session, name)
    except (InputError, NotFoundError) as exc:
        shown = repr(name if len(name) <= 40 else name[:40] + "…")
        raise InputError(
            f"{shown} is neither a site serial, a site's name nor a MAC",
            hint="`fleetkey sites list` lists the sites with their serials",
        ) from exc


def rollback_license(
    data: DataDir,
    store: Store,
    clock: Clock,
    actor: str,
    serial: str,
    *,
    key_type: LicenseType | None = None,
    accept_unverified: str | None = None,
    force: bool = False,
) -> Posted:
    """Post again the key the posted key of ``serial`` succeeds, file and all. ``key_type``
    may be left out unless keys of both types are posted for ``serial``."""
    with store.transaction() as session:
        if key_type is None and not HEX12.fullmatch(serial.strip()):
            try:
                serial = normalize_mac(serial)  # a MAC written with separators
                key_type = LicenseType.PHONE
            except InputError:
                serial = _site_by_name(session, serial)
                key_type = LicenseType.SITE
        elif key_type is None:
            serial = serial.strip().lower()
            posted = [kind for kind in LicenseType if registry.posted(session, kind, serial)]
            if len(posted) > 1:
                raise InputError(
                    f"{serial} has a posted Site key and a posted Phone key: say which",
                    field="key_type",
                )
            key_type = posted[0] if posted else LicenseType.SITE
        if key_type is LicenseType.PHONE:
            serial = normalize_mac(serial)
        else:
            serial = normalize_site_serial(serial)
        files = placement.targets(data.provisioning, key_type, serial)
        judgement = posting.rollback(
            session,
            clock,
            actor,
            key_type,
            serial,
            accept_unverified=accept_unverified,
            force=force,
            label=data.catalog().label,
            details=_file_details(data, files, default_site=False),
        )
        content = registry.content(session, judgement.license.id)
        placement.publish([(path, content) for path in files])
    return Posted(judgement, files)


def revoke_license(
    data: DataDir, store: Store, clock: Clock, actor: str, license_id: int
) -> tuple[StoredLicense, list[Path]]:
    """Stop serving a key; its files leave the tree where they hold exactly this key (another
    site's file never does). (key, files removed)"""
    with store.transaction() as session:
        stored = registry.revoke(session, clock, actor, license_id)
    return stored, placement.withdraw(data.provisioning, stored)


def trust_license(
    store: Store, clock: Clock, actor: str, license_id: int, reason: str
) -> StoredLicense:
    """Vouch for an unverifiable key's signature (a vendor's), with a reason; audited."""
    with store.transaction() as session:
        return posting.trust(session, clock, actor, license_id, reason)


def _file_details(data: DataDir, files: list[Path], default_site: bool) -> dict[str, object]:
    details: dict[str, object] = {"files": placement.relative(data.provisioning, files)}
    if default_site:
        details["default_site"] = True
    return details
