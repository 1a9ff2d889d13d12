"""The audit trail: append-only events, each carrying the hash of the one before.

Appends lock the one-row ``audit_head`` table (``UPDATE … RETURNING``: a row lock on PostgreSQL,
the write lock on SQLite), so concurrent writers never fork the chain. ``verify`` recomputes
every hash and finds the first changed, deleted or inserted event, including a deleted tail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.store.records import AuditEvent, utc
from fleetkey.store.schema import AuditHeadRow, AuditRow

GENESIS: Final = "0" * 64
_HEAD_ID: Final = 1


def event_hash(
    prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str, details: str
) -> str:
    """SHA-256 over the previous hash and the event's canonical fields."""
    body = json.dumps([seq, at, actor, action, subject, details], ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def canonical(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def append(
    session: Session,
    clock: Clock,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event in ``session``'s transaction; it commits or rolls back with the change."""
    seq, prev_hash = session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == _HEAD_ID)
        .values(seq=AuditHeadRow.seq + 1)
        .returning(AuditHeadRow.seq, AuditHeadRow.hash)
    ).one()
    at = utc(clock.now())
    text = canonical(details or {})
    digest = event_hash(prev_hash, seq, _iso(at), actor, action, subject, text)
    session.add(
        AuditRow(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            details=text,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    session.execute(update(AuditHeadRow).where(AuditHeadRow.id == _HEAD_ID).values(hash=digest))
    return AuditEvent(seq, at, actor, action, subject, details or {}, prev_hash, digest)


def head_seq(session: Session) -> int:
    """The sequence number of the newest event: it changes whenever the store changes."""
    return session.scalar(select(AuditHeadRow.seq).where(AuditHeadRow.id == _HEAD_ID)) or 0


def events(session: Session, *, limit: int | None = None) -> list[AuditEvent]:
    """The newest ``limit`` events (all when None), oldest first."""
    query = select(AuditRow).order_by(AuditRow.seq.desc())
    if limit is not None:
        query = query.limit(limit)
    rows = list(session.scalars(query))
    return [_event(row) for row in reversed(rows)]


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    ok: bool
    checked: int
    broken_at: int | None = None
    reason: str = "every event verifies"


def verify(session: Session) -> ChainVerdict:
    """Walk the chain from the genesis; the first broken link, or ok."""
    rows = session.scalars(
        select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=1000)
    )
    try:
        return _verify_rows(session, rows)
    finally:
        rows.close()  # a server-side cursor on PostgreSQL: release it even when we stop early


def _verify_rows(session: Session, rows: Iterable[AuditRow]) -> ChainVerdict:
    expected_prev, expected_seq, checked = GENESIS, 1, 0
    for row in rows:
        if row.seq != expected_seq:
            return ChainVerdict(
                False, checked, expected_seq, f"event {expected_seq} is missing (next is {row.seq})"
            )
        if row.prev_hash != expected_prev:
            return ChainVerdict(
                False, checked, row.seq, f"event {row.seq} does not follow event {row.seq - 1}"
            )
        recomputed = event_hash(
            row.prev_hash,
            row.seq,
            _iso(utc(row.at)),
            row.actor,
            row.action,
            row.subject,
            row.details,
        )
        if recomputed != row.hash:
            return ChainVerdict(
                False, checked, row.seq, f"event {row.seq} was changed after it was written"
            )
        expected_prev, expected_seq, checked = row.hash, row.seq + 1, checked + 1
    head = session.get(AuditHeadRow, _HEAD_ID)
    if head is None:
        return ChainVerdict(False, checked, None, "the audit head row is missing")
    if head.seq != checked or head.hash != expected_prev:
        return ChainVerdict(
            False,
            checked,
            checked + 1,
            f"events after {checked} are missing (the head records {head.seq})",
        )
    return ChainVerdict(True, checked)


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        row.seq,
        utc(row.at),
        row.actor,
        row.action,
        row.subject,
        json.loads(row.details),
        row.prev_hash,
        row.hash,
    )


def _iso(at: Any) -> str:
    return str(at.isoformat(timespec="microseconds"))
