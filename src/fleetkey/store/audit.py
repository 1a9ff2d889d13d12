"""The audit trail: append-only events, each carrying the hash of the one before.

Appends lock the one-row ``audit_head`` table (``UPDATE … RETURNING``: a row lock on PostgreSQL,
the write lock on SQLite), so concurrent writers never fork the chain. An event that changed
rows of licenses, sites or phones carries ``audited_rows: {changed, state}``, the state those
tables are audited in after it (store/rowstate.py). ``verify`` recomputes every hash and finds
the first changed, deleted or inserted event, a deleted tail the head row still counts, a chain
that does not reach or match an :class:`Anchor` kept outside the database, and a row of those
tables that differs from what the chain says.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.errors import InputError
from fleetkey.store import rowstate
from fleetkey.store.records import AuditEvent, utc
from fleetkey.store.schema import AuditHeadRow, AuditRow

GENESIS: Final = "0" * 64
ROWS: Final = "audited_rows"  # the details member of an event that changed audited rows
_HEAD_ID: Final = 1
_HASH: Final = re.compile(r"[0-9a-f]{64}")
_ANCHOR_LINE: Final = re.compile(r"\bseq=(\d{1,18})\b.*?\bhash=([0-9a-f]{64})\b")


def readable_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """An event's details as a reader is shown them: of the audited rows only how many
    changed (their state hash says nothing to a reader)."""
    shown = dict(details)
    rows = shown.pop(ROWS, None)
    if rows:
        shown["rows changed"] = rows["changed"]
    return shown


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
    """Add an event in ``session``'s transaction; it commits or rolls back with the change.

    The licenses, sites and phones rows the transaction changed so far are audited with it:
    their states go into ``audit_rows`` and the event's ``audited_rows`` (store/rowstate.py).
    """
    session.flush()  # every change so far is written, so the rows it touched are noted
    seq, prev_hash = session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == _HEAD_ID)
        .values(seq=AuditHeadRow.seq + 1)
        .returning(AuditHeadRow.seq, AuditHeadRow.hash)
    ).one()
    at = utc(clock.now())
    applied = rowstate.apply(session, seq)
    if applied is not None:
        details = (details or {}) | {ROWS: {"changed": applied.changed, "state": applied.state}}
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


def events(
    session: Session, *, limit: int | None = None, before: int | None = None
) -> list[AuditEvent]:
    """The newest ``limit`` events (all when None) below sequence ``before``, oldest first."""
    query = select(AuditRow).order_by(AuditRow.seq.desc())
    if before is not None:
        query = query.where(AuditRow.seq < before)
    if limit is not None:
        query = query.limit(limit)
    rows = list(session.scalars(query))
    return [_event(row) for row in reversed(rows)]


@dataclass(frozen=True, slots=True)
class Anchor:
    """The head of the chain at a moment, kept outside the database (``audit anchor``)."""

    seq: int
    hash: str
    at: datetime | None = None

    def line(self) -> str:
        """The anchor as one log line; :meth:`parse` reads it back."""
        at = f" at={self.at.isoformat(timespec='seconds')}" if self.at else ""
        return f"fleetkey audit anchor: seq={self.seq} hash={self.hash}{at}"

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "at": self.at.isoformat() if self.at else None}

    @classmethod
    def parse(cls, text: str, source: str) -> Anchor:
        """An anchor from :meth:`to_json`'s document or :meth:`line`'s line (the last one)."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            found = _ANCHOR_LINE.findall(text)
            if not found:
                raise InputError(
                    f"{source}: holds no anchor (a JSON document with seq and hash, or a line "
                    "with seq=N hash=H)"
                ) from exc
            return cls(int(found[-1][0]), found[-1][1])
        if not isinstance(document, dict):
            document = {}
        seq, digest = document.get("seq"), str(document.get("hash"))
        if type(seq) is not int or seq < 0 or not _HASH.fullmatch(digest):  # not a bool either
            raise InputError(f"{source}: an anchor needs seq (0 or more) and a 64-hex-digit hash")
        return cls(seq, digest)


def anchor(session: Session, clock: Clock) -> Anchor:
    """The head of the chain now (verify it first: an anchor vouches for what it names)."""
    head = session.get(AuditHeadRow, _HEAD_ID)
    seq, digest = (head.seq, head.hash) if head is not None else (0, GENESIS)
    return Anchor(seq, digest, utc(clock.now()))


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    ok: bool
    checked: int
    broken_at: int | None = None
    reason: str = "every event verifies"
    rows: int = 0  # rows of licenses, sites and phones found as the chain says


def verify(session: Session, anchor: Anchor | None = None) -> ChainVerdict:
    """Walk the chain from the genesis (and past ``anchor``), then check every row of
    licenses, sites and phones against it; the first broken link, or ok."""
    rows = session.scalars(
        select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=1000)
    )
    try:
        walked = _verify_rows(session, rows, anchor)
    finally:
        rows.close()  # a server-side cursor on PostgreSQL: release it even when we stop early
    if isinstance(walked, ChainVerdict):
        return walked
    return _verify_tables(session, *walked)


def _verify_rows(
    session: Session, rows: Iterable[AuditRow], anchor: Anchor | None
) -> ChainVerdict | tuple[int, str]:
    """The verdict on a broken chain, else (events checked, the rows' state it records)."""
    expected_prev, expected_seq, checked = GENESIS, 1, 0
    state = rowstate.EMPTY_STATE
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
        if anchor is not None and row.seq == anchor.seq and row.hash != anchor.hash:
            return ChainVerdict(
                False,
                checked,
                row.seq,
                f"event {row.seq} is not the one anchored (hash {row.hash[:12]}…, the anchor "
                f"says {anchor.hash[:12]}…): the chain was rewritten up to it",
            )
        if f'"{ROWS}"' in row.details:
            state = json.loads(row.details).get(ROWS, {}).get("state", state)
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
    if anchor is not None and anchor.seq > checked:
        return ChainVerdict(
            False,
            checked,
            checked + 1,
            f"the chain ends at event {checked} but the anchor records event {anchor.seq}: "
            "events were removed (and the head row rewritten)",
        )
    return checked, state


def _verify_tables(session: Session, checked: int, state: str) -> ChainVerdict:
    """Every row of licenses, sites and phones against its audited entry, then the entries
    against the state the chain records."""
    seen = 0
    for table, noun in rowstate.NOUNS.items():
        matched = 0
        with closing(rowstate.audited(session, table)) as rows:
            for key, digest, audited, seq in rows:
                if audited is None:
                    why = (
                        f"{noun} {key} was never audited: added outside fleetkey's store functions"
                    )
                    return ChainVerdict(False, checked, None, why, seen)
                if audited != digest:
                    why = (
                        f"{noun} {key} differs from its state audited by event {seq}: changed since"
                    )
                    return ChainVerdict(False, checked, seq, why, seen)
                matched, seen = matched + 1, seen + 1
        if rowstate.entry_count(session, table) != matched:
            for key, seq in rowstate.orphans(session, table):
                why = f"{noun} {key} (audited by event {seq}) was deleted outside fleetkey"
                return ChainVerdict(False, checked, seq, why, seen)
    if rowstate.entries_state(session) != state:
        why = (
            "the audited row states (table audit_rows) are not those the chain records: "
            "they were changed outside fleetkey"
        )
        return ChainVerdict(False, checked, None, why, seen)
    return ChainVerdict(True, checked, rows=seen)


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
