"""License keys in the store: issued and imported keys, posting, succession, revocation.

A key is posted (served to phones) only when its recorded signature verdict is ``valid``, or
when an operator accepts it unverified with a reason: the reason, the verdict and the actor go
into the ``license.post`` audit event. Imports find keys already stored by the key itself
(serial, type, options, duration and validation), whatever bytes its file had around it.
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
from fleetkey.core.naming import free_text
from fleetkey.core.signing import SignatureCheck, SignatureStatus
from fleetkey.core.terms import EPOCH, NEVER, Term, expiry_horizon, format_term, parse_term
from fleetkey.errors import ConflictError, FleetkeyError, InputError, NotFoundError
from fleetkey.store import audit, rowstate
from fleetkey.store.records import LicenseOrigin, StoredLicense, utc
from fleetkey.store.schema import LicenseRow

MAX_ID: Final = 2**63 - 1  # ids are 64-bit integers: a larger one names no key (and no crash)
REASON_CHARS: Final = 500  # an operator's reason to accept a key unverified
LOOKUP_CHUNK: Final = 1000  # serials per IN (...)
_OVERRIDE: Final = "accept_unverified"  # the input that accepts a key unverified


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
    post: bool = False,
    accept_unverified: str | None = None,
) -> StoredLicense:
    """Store one key of the file ``content``; ``post`` also posts it (see :func:`post`)."""
    expiry = key.expiry()
    row = LicenseRow(
        serial=key.serial,
        type=key.type.value,
        options=key.options_hex,
        terms=_terms_json(key),
        expires_on=_expires_on(key),
        signing_key=check.key_name,
        signature=check.status.value,
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
        },
    )
    if post:
        _post(session, clock, actor, row, accept_unverified)
    return _stored(row)


def record_many(
    session: Session,
    clock: Clock,
    actor: str,
    keys: Sequence[tuple[LicenseKey, bytes, str]],
    *,
    signing_key: str,
    post: bool,
) -> int:
    """Store a batch of freshly issued keys (key, file content, file name) in bulk.

    One audit event covers the batch; posting supersedes every posted key of the same serials.
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
        },
    )
    return len(values)


def post(
    session: Session,
    clock: Clock,
    actor: str,
    license_id: int,
    *,
    accept_unverified: str | None = None,
) -> StoredLicense:
    """Mark a key posted (served to phones); the key it replaces becomes superseded.

    A key whose signature is not ``valid`` is refused (ConflictError) unless
    ``accept_unverified`` gives the operator's reason, which the audit event keeps.
    """
    row = _row(session, license_id)
    if row.state != LicenseState.ISSUED.value:
        raise ConflictError(
            f"license {license_id} is {row.state}; only an issued key can be posted"
        )
    _post(session, clock, actor, row, accept_unverified)
    return _stored(row)


def unverified_refusal(subject: str) -> ConflictError:
    """Why keys whose signature is not valid (``subject`` names them) are not posted."""
    return ConflictError(
        f"{subject}: phones may refuse such a key, and posting it would supersede the key "
        "they are served now",
        hint="check where it comes from (fleetkey inspect); to serve it anyway, give the reason "
        "to accept it unverified: it is recorded in the audit trail with who gave it",
        field=_OVERRIDE,
    )


def check_reason(reason: str) -> str:
    """An operator's reason to accept a key unverified: some text, at most 500 characters."""
    text = free_text(reason, what="the reason to accept it unverified", limit=REASON_CHARS)
    if not text:
        raise InputError("the reason to accept a key unverified is empty", field=_OVERRIDE)
    return text


def _post(session: Session, clock: Clock, actor: str, row: LicenseRow, reason: str | None) -> None:
    accepted: dict[str, str] = {}
    if row.signature != SignatureStatus.VALID.value:
        if reason is None:
            subject = f"license {row.id} ({row.type} {row.serial}) has an {row.signature} signature"
            raise unverified_refusal(subject)
        accepted = {"signature": row.signature, "reason": check_reason(reason)}
    previous = session.scalars(
        select(LicenseRow)
        .where(
            LicenseRow.type == row.type,
            LicenseRow.serial == row.serial,
            LicenseRow.state == LicenseState.POSTED.value,
            LicenseRow.id != row.id,
        )
        .with_for_update()
    ).all()
    for old in previous:
        old.state = LicenseState.SUPERSEDED.value
        row.succeeds_id = old.id
    row.state, row.posted_at = LicenseState.POSTED.value, utc(clock.now())
    audit.append(
        session,
        clock,
        actor=actor,
        action="license.post",
        subject=f"license {row.id}",
        details={
            "serial": row.serial,
            "type": row.type,
            "supersedes": [old.id for old in previous],
        }
        | ({"accepted_unverified": accepted} if accepted else {}),
    )


def revoke(session: Session, clock: Clock, actor: str, license_id: int) -> StoredLicense:
    row = _row(session, license_id)
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
    return _stored(row)


def get(session: Session, license_id: int) -> StoredLicense:
    return _stored(_row(session, license_id))


def content(session: Session, license_id: int) -> bytes:
    return _row(session, license_id).content


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
                    found[key] = _stored(row)
    return found


def _keys_of(row: LicenseRow) -> tuple[LicenseKey, ...]:
    try:
        return parse_license_file(row.content, source=f"license {row.id}").keys
    except FleetkeyError:  # a stored file that no longer parses repeats no key
        return ()


def find_by_digest(session: Session, digest: str) -> list[StoredLicense]:
    rows = session.scalars(select(LicenseRow).where(LicenseRow.digest == digest))
    return [_stored(row) for row in rows]


def posted(session: Session, license_type: str, serial: str) -> StoredLicense | None:
    """The key phones are served for (type, serial), if one is posted."""
    row = session.scalars(
        select(LicenseRow)
        .where(
            LicenseRow.type == license_type,
            LicenseRow.serial == serial,
            LicenseRow.state == LicenseState.POSTED.value,
        )
        .order_by(LicenseRow.id.desc())
        .limit(1)
    ).first()
    return _stored(row) if row else None


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
    return [_stored(row) for row in session.scalars(query)]


def _terms_json(key: LicenseKey) -> str:
    return json.dumps({str(slot): format_term(t) for slot, t in sorted(key.terms().items())})


def _expires_on(key: LicenseKey) -> date | None:
    """The key's latest term as a date; None for never; the epoch for a key granting nothing."""
    expiry = key.expiry()
    return None if expiry is NEVER else (expiry or EPOCH)


def _row(session: Session, license_id: int) -> LicenseRow:
    row = session.get(LicenseRow, license_id) if 0 < license_id <= MAX_ID else None
    if row is None:
        raise NotFoundError(
            f"license {license_id} is not in the store",
            hint="`fleetkey licenses list` shows the ids",
        )
    return row


def _stored(row: LicenseRow) -> StoredLicense:
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
        signature=SignatureStatus(row.signature),
        digest=row.digest,
        file_name=row.file_name,
        origin=LicenseOrigin(row.origin),
        state=LicenseState(row.state),
        issued_at=utc(row.issued_at),
        posted_at=utc(row.posted_at) if row.posted_at else None,
        succeeds_id=row.succeeds_id,
    )


stored = _stored  # public: store/pages.py selects rows itself
