"""License keys in the store: issued and imported keys, batches, revocation, queries.

Posting, rolling back and trusting keys are in ``store/posting.py``. Imports find keys already
stored by the key itself (serial, type, options, duration and validation), whatever bytes its
file had around it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import date
from typing import Final

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.codec import parse_license_file
from fleetkey.core.license import LicenseKey, LicenseState, LicenseType
from fleetkey.core.terms import EPOCH, NEVER, Term, expiry_horizon, format_term, parse_term
from fleetkey.core.verdicts import SignatureCheck, SignatureStatus
from fleetkey.errors import ConflictError, FleetkeyError, NotFoundError
from fleetkey.store import audit, rowstate
from fleetkey.store.records import LicenseOrigin, StoredLicense, utc
from fleetkey.store.schema import LicenseRow

# the signature column holds 12 characters: a verdict an operator gave is kept by a short name
_STORED_AS: Final = {SignatureStatus.TRUSTED_BY_OPERATOR: "operator"}
_READ_AS: Final = {text: status for status, text in _STORED_AS.items()}
MAX_ID: Final = 2**63 - 1  # ids are 64-bit integers: a larger one names no key (and no crash)
LOOKUP_CHUNK: Final = 1000  # serials per IN (...)


def stored_signature(status: SignatureStatus) -> str:
    """How the signature column holds a verdict."""
    return _STORED_AS.get(status, status.value)


def signature_of(text: str) -> SignatureStatus:
    """The verdict the signature column holds."""
    return _READ_AS.get(text) or SignatureStatus(text)


def file_digest(content: bytes) -> str:
    """The digest that identifies a license file version, in the store and in fetch records."""
    return hashlib.sha256(content).hexdigest()


def record(
    session: Session,
    clock: Clock,
    actor: str,
    key: LicenseKey,
    check: SignatureCheck,
    *,
    content: bytes,
    file_name: str,
    origin: LicenseOrigin = LicenseOrigin.ISSUED,
    details: dict[str, str] | None = None,
) -> StoredLicense:
    """Store one key of the file ``content``, issued (``store.posting`` posts it).

    ``details`` adds to the audit event (an import names the file the key came from).
    """
    expiry = key.expiry()
    row = LicenseRow(
        serial=key.serial,
        type=key.type.value,
        options=key.options_hex,
        terms=_terms_json(key),
        expires_on=_expires_on(key),
        signing_key=check.key_name,
        signature=stored_signature(check.status),
        digest=file_digest(content),
        content=content,
        file_name=file_name,
        origin=origin.value,
        state=LicenseState.ISSUED.value,
        issued_at=utc(clock.now()),
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        clock,
        actor=actor,
        action=f"license.{origin.value}",
        subject=f"license {row.id}",
        details={
            "serial": row.serial,
            "type": row.type,
            "digest": row.digest,
            "expires": format_term(expiry),
            "signature": row.signature,
        }
        | (details or {}),
    )
    return stored_license(row)


def record_many(
    session: Session,
    clock: Clock,
    actor: str,
    keys: Sequence[tuple[LicenseKey, bytes, str]],
    *,
    signing_key: str,
    post: bool,
    forced: Sequence[str] = (),
) -> int:
    """Store a batch of freshly issued keys (key, file content, file name) in bulk.

    One audit event covers the batch; posting supersedes every posted key of the same serials.
    ``forced``: what the operator forced (store/posting.py judged the batch), for the event.
    """
    now = utc(clock.now())
    state = LicenseState.POSTED if post else LicenseState.ISSUED
    previous: dict[tuple[str, str], int] = {}
    if post:
        for start in range(0, len(keys), 1000):
            part = keys[start : start + 1000]
            rows = session.execute(
                select(LicenseRow.id, LicenseRow.type, LicenseRow.serial)
                .where(
                    LicenseRow.state == LicenseState.POSTED.value,
                    LicenseRow.serial.in_([key.serial for key, _, _ in part]),
                )
                .with_for_update()
            ).all()
            previous.update({(kind, serial): row_id for row_id, kind, serial in rows})
            ids = [row[0] for row in rows]
            session.execute(
                update(LicenseRow)
                .where(LicenseRow.id.in_(ids))
                .values(state=LicenseState.SUPERSEDED.value)
            )
            rowstate.touch(session, "licenses", ids)
    shapes: dict[tuple[int, ...], tuple[str, date | None]] = {}  # a batch shares its terms
    values = []
    for key, data, name in keys:
        shape = shapes.get(key.words)
        if shape is None:
            shape = shapes[key.words] = _terms_json(key), _expires_on(key)
        values.append(
            {
                "serial": key.serial,
                "type": key.type.value,
                "options": key.options_hex,
                "terms": shape[0],
                "expires_on": shape[1],
                "signing_key": signing_key,
                "signature": SignatureStatus.VALID.value,
                "digest": file_digest(data),
                "content": data,
                "file_name": name,
                "origin": LicenseOrigin.ISSUED.value,
                "state": state.value,
                "issued_at": now,
                "posted_at": now if post else None,
                "succeeds_id": previous.get((key.type.value, key.serial)),
            }
        )
    if values:  # bulk statements: the audit is told which rows they changed
        added = insert(LicenseRow).returning(LicenseRow.id)  # ids in any order
        rowstate.touch(session, "licenses", session.scalars(added, values).all())
    audit.append(
        session,
        clock,
        actor=actor,
        action="license.batch",
        subject=f"{len(keys)} keys",
        details={
            "count": len(keys),
            "posted": post,
            "signing_key": signing_key,
            "superseded": len(previous),
        }
        | ({"forced": list(forced)} if forced else {}),
    )
    return len(values)


def revoke(session: Session, clock: Clock, actor: str, license_id: int) -> StoredLicense:
    row = license_row(session, license_id)
    if row.state == LicenseState.REVOKED.value:
        raise ConflictError(f"license {license_id} is already revoked")
    was = row.state
    row.state = LicenseState.REVOKED.value
    audit.append(
        session,
        clock,
        actor=actor,
        action="license.revoke",
        subject=f"license {row.id}",
        details={"was": was, "serial": row.serial},
    )
    return stored_license(row)


def get(session: Session, license_id: int) -> StoredLicense:
    return stored_license(license_row(session, license_id))


def content(session: Session, license_id: int) -> bytes:
    return license_row(session, license_id).content


def stored_keys(session: Session, keys: Sequence[LicenseKey]) -> dict[LicenseKey, StoredLicense]:
    """The keys of ``keys`` already in the store (the first row of each), found by the key
    itself: serial, type, options, duration and validation, not by the bytes of its file."""
    found: dict[LicenseKey, StoredLicense] = {}
    wanted = set(keys)
    serials = sorted({key.serial for key in wanted})
    for start in range(0, len(serials), LOOKUP_CHUNK):
        rows = session.scalars(
            select(LicenseRow)
            .where(LicenseRow.serial.in_(serials[start : start + LOOKUP_CHUNK]))
            .order_by(LicenseRow.id)
        )
        parsed: dict[str, tuple[LicenseKey, ...]] = {}  # by digest: a file parsed once
        for row in rows:
            if row.digest not in parsed:
                parsed[row.digest] = _keys_of(row)
            described = (row.serial, row.type, row.options)  # which key of its file the row is
            for key in parsed[row.digest]:
                same = (key.serial, key.type.value, key.options_hex) == described
                if same and key in wanted and key not in found:
                    found[key] = stored_license(row)
    return found


def _keys_of(row: LicenseRow) -> tuple[LicenseKey, ...]:
    try:
        return parse_license_file(row.content, source=f"license {row.id}").keys
    except FleetkeyError:  # a stored file that no longer parses repeats no key
        return ()


def find_by_digest(session: Session, digest: str) -> list[StoredLicense]:
    rows = session.scalars(select(LicenseRow).where(LicenseRow.digest == digest))
    return [stored_license(row) for row in rows]


def posted(session: Session, license_type: LicenseType, serial: str) -> StoredLicense | None:
    """The key phones are served for (type, serial), if one is posted."""
    row = session.scalars(
        select(LicenseRow)
        .where(
            LicenseRow.type == license_type.value,
            LicenseRow.serial == serial,
            LicenseRow.state == LicenseState.POSTED.value,
        )
        .order_by(LicenseRow.id.desc())
        .limit(1)
    ).first()
    return stored_license(row) if row else None


def listing(
    session: Session,
    *,
    today: date,
    expiring_within: int | None = None,
    states: tuple[LicenseState, ...] | None = None,
) -> list[StoredLicense]:
    """Keys by id; ``expiring_within`` days keeps those whose term ends by then (not never)."""
    query = select(LicenseRow).order_by(LicenseRow.id)
    if expiring_within is not None:
        last = expiry_horizon(today, expiring_within)
        query = query.where(LicenseRow.expires_on.is_not(None), LicenseRow.expires_on <= last)
    if states:
        query = query.where(LicenseRow.state.in_([s.value for s in states]))
    return [stored_license(row) for row in session.scalars(query)]


def _terms_json(key: LicenseKey) -> str:
    return json.dumps({str(slot): format_term(t) for slot, t in sorted(key.terms().items())})


def _expires_on(key: LicenseKey) -> date | None:
    """The key's latest term as a date; None for never; the epoch for a key granting nothing."""
    expiry = key.expiry()
    return None if expiry is NEVER else (expiry or EPOCH)


def license_row(session: Session, license_id: int) -> LicenseRow:
    row = session.get(LicenseRow, license_id) if 0 < license_id <= MAX_ID else None
    if row is None:
        raise NotFoundError(
            f"license {license_id} is not in the store",
            hint="`fleetkey licenses list` shows the ids",
        )
    return row


def stored_license(row: LicenseRow) -> StoredLicense:
    terms: dict[int, Term] = {
        int(slot): parse_term(text) for slot, text in json.loads(row.terms).items()
    }
    return StoredLicense(
        id=row.id,
        serial=row.serial,
        type=LicenseType(row.type),
        options=row.options,
        terms=terms,
        expires_on=row.expires_on,
        signing_key=row.signing_key,
        signature=signature_of(row.signature),
        digest=row.digest,
        file_name=row.file_name,
        origin=LicenseOrigin(row.origin),
        state=LicenseState(row.state),
        issued_at=utc(row.issued_at),
        posted_at=utc(row.posted_at) if row.posted_at else None,
        succeeds_id=row.succeeds_id,
    )
