"""Issuing one license: sign it with the active key, record it, and post it to its place in
the provisioning tree (or write it where the operator says).

Shared by ``fleetkey issue phone|site`` and the admin API. Posting is judged as every post is
(``store/posting.py``): against the store's posted key of that type and serial, a key that
takes something from phones (R7, a feature dropped or ended earlier) needs force; issuing a key
that is already expired needs force wherever it goes. The files are written inside the
transaction that records the key, so the store never lists a posted key that is not on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetkey.authority.datadir import DataDir
from fleetkey.authority.files import atomic_write
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
from fleetkey.core.terms import Term, parse_term
from fleetkey.core.verdicts import SignatureCheck, SignatureStatus
from fleetkey.errors import InputError
from fleetkey.ops import placement
from fleetkey.store import posting, registry
from fleetkey.store.posting import Judgement
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
    files: list[Path]  # where the file was written ([] : not written)
    judgement: Judgement | None  # the post's, when it was posted
    warnings: list[str]

    @property
    def target(self) -> Path | None:
        """Where the file was written first: its place in the tree, or ``--out``."""
        return self.files[0] if self.files else None


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
    force: bool = False,
    default_site: bool = False,
) -> Issued:
    """Sign ``order`` and record it; posted to its place in the tree when ``write`` and no
    ``target``, else written to ``target`` (issued, not posted) if ``write``.

    An expired key, and a post that takes something from phones, need ``force``.
    """
    catalog = data.catalog()
    overrides: dict[str, Term] = {}
    for item in order.per_feature:
        name, sep, day = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"per-feature expiry {item!r} is not NAME=DATE", field="per_feature")
        overrides[name.strip()] = parse_term(day)
    wanted = [f for f in order.features if f.strip()]
    terms = resolve_terms(
        catalog, wanted, parse_term(order.expires) if order.expires else None, overrides
    )
    serial, file_name = order.normalized_serial(), order.file_name()
    tree = data.provisioning
    place = placement.place(tree, order.license_type, serial)
    posted = write and (target is None or target.resolve() == place.resolve())
    files = (
        placement.targets(tree, order.license_type, serial, make_default=default_site)
        if posted
        else [target]
        if write and target is not None
        else []
    )
    if default_site and not posted:
        raise InputError(
            "a key written elsewhere (--out) is not posted, so it cannot be the tree's default",
            field="default_site",
        )
    judgement = None
    with store.transaction() as session:
        losses = posting.judge_terms(
            session, clock, order.license_type, serial, terms, catalog.label, posting=posted
        )
        if losses and not force:
            doing = "issuing and posting" if posted else "issuing"
            raise posting.unsafe(
                f"{doing} the {order.license_type.value} key for {serial}",
                losses,
                hint="`fleetkey licenses list --state posted` shows the posted key; forcing it "
                "is recorded in the audit trail with what was lost",
            )
        key_name, signer = Keyring(data.keys).signer(passphrase)
        key = issue_key(serial, order.license_type, terms, signer)
        content = serialize_keys([key])
        check = SignatureCheck(
            SignatureStatus.VALID, key_name, f"signed by trusted key {key_name!r}"
        )
        stored = registry.record(
            session, clock, actor, key, check, content=content, file_name=file_name
        )
        if posted:
            judgement = posting.post(
                session,
                clock,
                actor,
                stored.id,
                force=force,
                label=catalog.label,
                details={"files": placement.relative(tree, files)}
                | ({"default_site": True} if default_site else {}),
            )
            stored = judgement.license
            placement.publish([(path, content) for path in files])
        elif files:
            files[0].parent.mkdir(parents=True, exist_ok=True)
            atomic_write(files[0], content)
    warnings = _warnings(judgement, losses)
    return Issued(key, check, stored, content, files, judgement, warnings)


def _warnings(judgement: Judgement | None, forced: list[str]) -> list[str]:
    """What the operator is told after the fact: what was forced, and the notes."""
    if judgement is not None:
        forced = judgement.losses
    found = [f"forced: {loss}" for loss in forced]
    return found + (judgement.notes if judgement is not None else [])
