"""Posting keys (serving them to phones), rolling back to the key posted before, and trusting a
vendor key's signature: each audited, each judged against the store's posted key of that type
and serial (``core/succession.py``), never against a file.

A key is posted only when its recorded signature is ``valid`` or ``trusted-by-operator``, or
when an operator accepts it unverified with a reason; and only when it takes nothing from
phones (expired, shorter, a feature ended earlier or dropped), or the operator forces it. The
reason, what was forced and the actor go into the audit event.

Posting an issued key makes it the successor of the key posted before (``succeeds_id``); the
previous key becomes ``superseded``. A rollback posts again the key the posted one succeeds,
and supersedes the posted one, without touching the chain of successors: a second rollback
goes one key further back. A superseded key can be posted again (a roll forward).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.clock import today as clock_today
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.naming import free_text
from fleetkey.core.succession import Succession
from fleetkey.core.terms import Term
from fleetkey.core.verdicts import SignatureStatus
from fleetkey.errors import ConflictError, InputError, NotFoundError, UnsafePostError
from fleetkey.store import audit
from fleetkey.store.records import StoredLicense, utc
from fleetkey.store.registry import (
    LOOKUP_CHUNK,
    license_row,
    signature_of,
    stored_license,
    stored_signature,
)
from fleetkey.store.schema import LicenseRow

REASON_CHARS: Final = 500  # an operator's reason to accept or trust a key unverified
_OVERRIDE: Final = "accept_unverified"  # the input that accepts a key unverified
_SERVABLE: Final = frozenset({SignatureStatus.VALID, SignatureStatus.TRUSTED_BY_OPERATOR})
_POSTABLE: Final = (LicenseState.ISSUED.value, LicenseState.SUPERSEDED.value)
Label = Callable[[int], str]


def slot_label(slot: int) -> str:
    return f"slot-{slot}"


@dataclass(frozen=True, slots=True)
class Judgement:
    """What posting ``license`` would do: the key it replaces, what phones would lose (each
    needs force), notes, and whether the signature needs an operator's reason."""

    license: StoredLicense
    replaced: StoredLicense | None
    succession: Succession
    losses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    needs_reason: bool = False


def judge(session: Session, clock: Clock, license_id: int, label: Label = slot_label) -> Judgement:
    """The judgement on posting ``license_id`` now (nothing changes): for a dry run."""
    row = license_row(session, license_id)
    _check_state(row)
    return _judge(row, _posted_rows(session, row), clock, label)


def post(
    session: Session,
    clock: Clock,
    actor: str,
    license_id: int,
    *,
    accept_unverified: str | None = None,
    force: bool = False,
    label: Label = slot_label,
    details: dict[str, object] | None = None,
) -> Judgement:
    """Serve a key: it becomes the posted key of its type and serial, the one before is
    superseded. Refused (ConflictError) for a revoked or posted key, for a signature that is
    not valid without ``accept_unverified``, and (UnsafePostError) for a key that would take
    something from phones without ``force``. ``details`` adds to the audit event."""
    row = license_row(session, license_id)
    _check_state(row)
    previous = _posted_rows(session, row)
    verdict = _judge(row, previous, clock, label)
    accepted = _acceptance(row, verdict, accept_unverified)
    _refuse_losses(row, verdict, force, "posting")
    for old in previous:
        old.state = LicenseState.SUPERSEDED.value
        if row.state == LicenseState.ISSUED.value:
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
        | ({"accepted_unverified": accepted} if accepted else {})
        | ({"forced": verdict.losses} if verdict.losses else {})
        | (details or {}),
    )
    return replace(verdict, license=stored_license(row))


def rollback(
    session: Session,
    clock: Clock,
    actor: str,
    key_type: LicenseType,
    serial: str,
    *,
    accept_unverified: str | None = None,
    force: bool = False,
    label: Label = slot_label,
    details: dict[str, object] | None = None,
) -> Judgement:
    """Post again the key the posted key of (``key_type``, ``serial``) succeeds; the posted one
    is superseded. Judged like any post: a restored key that is expired or takes something from
    phones needs ``force``."""
    current = session.scalars(
        select(LicenseRow)
        .where(
            LicenseRow.type == key_type.value,
            LicenseRow.serial == serial,
            LicenseRow.state == LicenseState.POSTED.value,
        )
        .order_by(LicenseRow.id.desc())
        .with_for_update()
    ).first()
    if current is None:
        raise NotFoundError(
            f"no {key_type.value} key for {serial} is posted: there is nothing to roll back",
            hint="`fleetkey licenses list --state posted` shows what is posted",
        )
    if current.succeeds_id is None:
        raise ConflictError(
            f"license {current.id} ({key_type.value} {serial}) is the first key posted for "
            f"{serial}: there is no previous key to post again",
            hint="revoke it (fleetkey licenses revoke) to stop serving it",
        )
    row = license_row(session, current.succeeds_id)
    if row.state == LicenseState.REVOKED.value:
        raise ConflictError(
            f"license {row.id}, which license {current.id} replaced, is revoked: it is never "
            "served again",
            hint="post another key (fleetkey licenses list shows them)",
        )
    verdict = _judge(row, [current], clock, label)
    accepted = _acceptance(row, verdict, accept_unverified)
    _refuse_losses(row, verdict, force, "rolling back to")
    current.state = LicenseState.SUPERSEDED.value
    row.state, row.posted_at = LicenseState.POSTED.value, utc(clock.now())
    audit.append(
        session,
        clock,
        actor=actor,
        action="license.rollback",
        subject=f"license {row.id}",
        details={"serial": serial, "type": key_type.value, "replaces": current.id}
        | ({"accepted_unverified": accepted} if accepted else {})
        | ({"forced": verdict.losses} if verdict.losses else {})
        | (details or {}),
    )
    return replace(verdict, license=stored_license(row))


def judge_terms(
    session: Session,
    clock: Clock,
    key_type: LicenseType,
    serial: str,
    terms: Mapping[int, Term],
    label: Label = slot_label,
    *,
    posting: bool = True,
) -> list[str]:
    """What a new key of ``key_type`` for ``serial`` with ``terms`` would take from phones,
    judged against the posted key of its serial when ``posting`` (else only whether it is
    expired): one line per loss; empty when it takes nothing."""
    found = judge_terms_batch(session, clock, key_type, [(serial, terms)], label, posting=posting)
    return found.get(serial, [])


def judge_terms_batch(
    session: Session,
    clock: Clock,
    key_type: LicenseType,
    wanted: Sequence[tuple[str, Mapping[int, Term]]],
    label: Label = slot_label,
    *,
    posting: bool = True,
) -> dict[str, list[str]]:
    """:func:`judge_terms` for a batch of new keys (serial, terms), the posted keys read
    ``LOOKUP_CHUNK`` serials a query: only the serials with losses."""
    today = clock_today(clock)
    before: dict[str, StoredLicense] = {}
    serials = sorted({serial for serial, _ in wanted}) if posting else []
    for start in range(0, len(serials), LOOKUP_CHUNK):
        rows = session.scalars(
            select(LicenseRow).where(
                LicenseRow.type == key_type.value,
                LicenseRow.serial.in_(serials[start : start + LOOKUP_CHUNK]),
                LicenseRow.state == LicenseState.POSTED.value,
            )
        )
        before.update((row.serial, stored_license(row)) for row in rows)
    found = {}
    for serial, terms in wanted:
        old = before.get(serial)
        losses = Succession(today, terms, old.terms if old else None).losses(label, _named(old))
        if losses:
            found[serial] = losses
    return found


def _named(replaced: StoredLicense | None) -> str:
    """How a loss names the key it is judged against."""
    return f"license {replaced.id}" if replaced else "the posted key"


def trust(
    session: Session, clock: Clock, actor: str, license_id: int, reason: str
) -> StoredLicense:
    """Record that the operator vouches for an unverifiable key's signature (a vendor's key):
    its verdict becomes ``trusted-by-operator``, posting it needs no further reason, and alerts
    no longer call it unverifiable. The reason and the actor go into the audit event."""
    row = license_row(session, license_id)
    status = signature_of(row.signature)
    if status is not SignatureStatus.UNVERIFIABLE:
        why = {
            SignatureStatus.VALID: "it verifies against a trusted key already",
            SignatureStatus.INVALID: "it was altered, or claims a trusted key that did not make "
            "it: only a signature fleetkey cannot check (a vendor's) can be vouched for",
            SignatureStatus.TRUSTED_BY_OPERATOR: "it is trusted by an operator already",
        }[status]
        raise ConflictError(f"license {license_id} has a {status} signature: {why}")
    text = check_reason(reason, what="the reason to trust it")
    row.signature = stored_signature(SignatureStatus.TRUSTED_BY_OPERATOR)
    audit.append(
        session,
        clock,
        actor=actor,
        action="license.trust",
        subject=f"license {row.id}",
        details={"serial": row.serial, "type": row.type, "was": status.value, "reason": text},
    )
    return stored_license(row)


def unverified_refusal(subject: str) -> ConflictError:
    """Why keys whose signature is not valid (``subject`` names them) are not posted."""
    return ConflictError(
        f"{subject}: phones may refuse such a key, and posting it would supersede the key "
        "they are served now",
        hint="check where it comes from (fleetkey inspect); to serve it anyway, give the reason "
        "to accept it unverified: it is recorded in the audit trail with who gave it; a "
        "vendor's key you trust can be marked so once (fleetkey licenses trust)",
        field=_OVERRIDE,
    )


def check_reason(reason: str, *, what: str = "the reason to accept it unverified") -> str:
    """An operator's reason: some text, at most 500 characters."""
    text = free_text(reason, what=what, limit=REASON_CHARS)
    if not text:
        raise InputError(f"{what} is empty", field=_OVERRIDE)
    return text


def _check_state(row: LicenseRow) -> None:
    if row.state not in _POSTABLE:
        raise ConflictError(
            f"license {row.id} is {row.state}; only an issued or superseded key can be posted"
        )


def _posted_rows(session: Session, row: LicenseRow) -> list[LicenseRow]:
    return list(
        session.scalars(
            select(LicenseRow)
            .where(
                LicenseRow.type == row.type,
                LicenseRow.serial == row.serial,
                LicenseRow.state == LicenseState.POSTED.value,
                LicenseRow.id != row.id,
            )
            .order_by(LicenseRow.id)
            .with_for_update()
        )
    )


def _judge(row: LicenseRow, previous: list[LicenseRow], clock: Clock, label: Label) -> Judgement:
    stored = stored_license(row)
    replaced = stored_license(previous[-1]) if previous else None
    succession = Succession(clock_today(clock), stored.terms, replaced.terms if replaced else None)
    name = _named(replaced)
    return Judgement(
        stored,
        replaced,
        succession,
        succession.losses(label, name),
        succession.notes(name),
        signature_of(row.signature) not in _SERVABLE,
    )


def _acceptance(row: LicenseRow, verdict: Judgement, reason: str | None) -> dict[str, str]:
    if not verdict.needs_reason:
        return {}
    if reason is None:
        subject = f"license {row.id} ({row.type} {row.serial}) has an {row.signature} signature"
        raise unverified_refusal(subject)
    return {"signature": row.signature, "reason": check_reason(reason)}


def _refuse_losses(row: LicenseRow, verdict: Judgement, force: bool, doing: str) -> None:
    if verdict.losses and not force:
        raise unsafe(f"{doing} license {row.id} ({row.type} {row.serial})", verdict.losses)


def unsafe(subject: str, losses: list[str], *, hint: str | None = None) -> UnsafePostError:
    """Why ``subject`` (what would be done) is refused unless forced: ``losses``, each."""
    lines = "\n  ".join(losses)
    return UnsafePostError(
        f"{subject} would take from phones what they have:\n  {lines}\nit needs force",
        losses,
        hint=hint
        or "`fleetkey licenses post ID --dry-run` shows the change feature by feature; "
        "forcing it is recorded in the audit trail with what was lost",
    )
