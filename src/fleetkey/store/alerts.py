"""Alerts in the store: deduplicated by key, resolved when they stop holding, delivered once.

:func:`sync` takes every alert that holds now: a new key is inserted (``fired``), a known open
one only has its last-seen time and message refreshed, and an open one that is no longer
produced gets ``resolved_at`` (``resolved``). Each fired or resolved event is queued once per
delivery channel; :func:`due` hands out queued deliveries whose time has come.

An operator may silence an open alert (:func:`ack`, audited): until a moment, or until it
resolves. While silenced it stays open and listed as such, and nothing is delivered for it
but its resolution; when the moment passes and it still holds, it fires again (delivered as
``fired``, a reminder). A resolved alert forgets its silence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.alerts import Alert
from fleetkey.errors import ConflictError, InputError, NotFoundError
from fleetkey.store import audit
from fleetkey.store.records import utc
from fleetkey.store.schema import AlertRow, DeliveryRow

MAX_ATTEMPTS: Final = 8
KEY_CHARS: Final = 200  # the alerts.key column
FIRST_RETRY_S: Final = 30.0
LONGEST_RETRY_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class StoredAlert:
    key: str
    kind: str
    severity: str
    subject: str
    message: str
    details: dict[str, Any]
    first_at: datetime
    last_at: datetime
    resolved_at: datetime | None
    acked_at: datetime | None = None
    acked_by: str | None = None
    acked_until: datetime | None = None  # None with ``acked_at``: until it resolves

    @property
    def silenced(self) -> bool:
        return self.acked_at is not None and self.resolved_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "details": self.details,
            "first_at": self.first_at.isoformat(),
            "last_at": self.last_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "acked": {
                "at": self.acked_at.isoformat(),
                "by": self.acked_by,
                "until": self.acked_until.isoformat() if self.acked_until else None,
            }
            if self.silenced and self.acked_at is not None
            else None,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    alert: StoredAlert
    event: str  # fired | resolved
    channel: str
    attempts: int


@dataclass(frozen=True, slots=True)
class SyncResult:
    fired: list[str]
    resolved: list[str]


def sync(
    session: Session, clock: Clock, current: Sequence[Alert], channels: Sequence[str] = ()
) -> SyncResult:
    """Record what holds now; queue each new event for every channel."""
    now = utc(clock.now())
    open_rows = {
        row.key: row
        for row in session.scalars(select(AlertRow).where(AlertRow.resolved_at.is_(None)))
    }
    fired, resolved = [], []
    for alert in current:
        row = open_rows.pop(alert.key, None)
        if row is not None and row.acked_until is not None and utc(row.acked_until) <= now:
            row.acked_at = row.acked_by = row.acked_until = None  # the silence is over
            fired.append(alert.key)  # a reminder: it still holds
        if row is None:
            row = session.get(AlertRow, alert.key)
            if row is None:
                row = AlertRow(key=alert.key, first_at=now)
                session.add(row)
            else:  # it held before, stopped, and holds again: a new event
                row.first_at, row.resolved_at = now, None
            fired.append(alert.key)
        row.kind, row.severity, row.subject = alert.kind, alert.severity, alert.subject
        row.message, row.last_at = alert.message, now
        row.details = json.dumps(alert.details, sort_keys=True, default=str)
    for key, row in open_rows.items():
        row.resolved_at = now
        row.acked_at = row.acked_by = row.acked_until = None
        resolved.append(key)
    session.flush()
    for key, event in [(k, "fired") for k in fired] + [(k, "resolved") for k in resolved]:
        for channel in channels:
            session.add(
                DeliveryRow(
                    alert_key=key,
                    event=event,
                    channel=channel,
                    state="pending",
                    attempts=0,
                    next_at=now,
                )
            )
    return SyncResult(fired, resolved)


def ack(session: Session, clock: Clock, actor: str, key: str, until: date | None) -> StoredAlert:
    """Silence the open alert ``key`` to the end of day ``until`` (UTC; None: until it
    resolves); audited."""
    row = session.get(AlertRow, key) if len(key) <= KEY_CHARS else None
    if row is None:
        raise NotFoundError(
            f"no alert has the key {key!r}", hint="`fleetkey alerts --json` shows the keys"
        )
    if row.resolved_at is not None:
        raise ConflictError(
            f"alert {key!r} resolved at {utc(row.resolved_at):%Y-%m-%d %H:%M} UTC: there is "
            "nothing to silence"
        )
    now = utc(clock.now())
    end = None
    if until is not None:
        if until < now.date():
            raise InputError(
                f"silence until {until.isoformat()}: that day has passed (today is "
                f"{now.date().isoformat()}, UTC)",
                field="until",
            )
        if until >= date.max:
            raise InputError(
                f"silence until {until.isoformat()}: that is past the year 9999", field="until"
            )
        end = datetime.combine(until + timedelta(days=1), time(), UTC)
    row.acked_at, row.acked_by, row.acked_until = now, actor[:100], end
    audit.append(
        session,
        clock,
        actor=actor,
        action="alert.ack",
        subject=f"alert {key}"[:200],
        details={"key": key, "until": until.isoformat() if until else None},
    )
    return _alert(row)


def listing(session: Session, *, include_resolved: bool = False) -> list[StoredAlert]:
    query = select(AlertRow).order_by(AlertRow.first_at, AlertRow.key)
    if not include_resolved:
        query = query.where(AlertRow.resolved_at.is_(None))
    return [_alert(row) for row in session.scalars(query)]


def due(session: Session, now: datetime, limit: int = 500) -> list[Delivery]:
    rows = session.execute(
        select(DeliveryRow, AlertRow)
        .join(AlertRow, AlertRow.key == DeliveryRow.alert_key)
        .where(
            DeliveryRow.state == "pending",
            DeliveryRow.next_at <= utc(now),
            or_(DeliveryRow.event != "fired", AlertRow.acked_at.is_(None)),  # not silenced
        )
        .order_by(DeliveryRow.id)
        .limit(limit)
    ).all()
    return [Delivery(d.id, _alert(a), d.event, d.channel, d.attempts) for d, a in rows]


def sent(session: Session, delivery_id: int, now: datetime) -> None:
    session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id == delivery_id)
        .values(state="sent", attempts=DeliveryRow.attempts + 1, sent_at=utc(now), last_error=None)
    )


def not_sent(session: Session, delivery: Delivery, now: datetime, error: str) -> str:
    """Schedule the next try with exponential backoff, or give up; the new state."""
    attempts = delivery.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        state, next_at = "failed", now
    else:
        wait = min(FIRST_RETRY_S * 2 ** (attempts - 1), LONGEST_RETRY_S)
        state, next_at = "pending", now + timedelta(seconds=wait)
    session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id == delivery.id)
        .values(state=state, attempts=attempts, next_at=utc(next_at), last_error=error[:2000])
    )
    return state


def deliveries(session: Session) -> list[tuple[int, str, str, str, str, int, str | None]]:
    """(id, alert key, event, channel, state, attempts, last error) of every delivery."""
    rows = session.execute(
        select(
            DeliveryRow.id,
            DeliveryRow.alert_key,
            DeliveryRow.event,
            DeliveryRow.channel,
            DeliveryRow.state,
            DeliveryRow.attempts,
            DeliveryRow.last_error,
        ).order_by(DeliveryRow.id)
    ).all()
    return [(i, k, e, c, s, a, err) for i, k, e, c, s, a, err in rows]


def _alert(row: AlertRow) -> StoredAlert:
    return StoredAlert(
        row.key,
        row.kind,
        row.severity,
        row.subject,
        row.message,
        json.loads(row.details),
        utc(row.first_at),
        utc(row.last_at),
        utc(row.resolved_at) if row.resolved_at else None,
        utc(row.acked_at) if row.acked_at else None,
        row.acked_by,
        utc(row.acked_until) if row.acked_until else None,
    )
