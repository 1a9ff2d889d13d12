"""Delivery confirmation: which phones of a rollout fetched its license, from fetch records.

A phone is confirmed when the newest version of a license file it was served (the per-phone
state the fetch-record writer keeps, store/phonestate.py) is the license's exact file (its
SHA-256 digest), answered 200, 206 or 304 at or after the license was posted: a look-up by key
per open phone, whatever the size of the fetch history. :func:`confirm_fetched` confirms in
bulk; :func:`fetched` is the same look-up for one phone, made before it is retried or failed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal, or_, select, update
from sqlalchemy.orm import Session

from fleetkey.store import phonestate
from fleetkey.store.records import utc
from fleetkey.store.rollouts import TargetState
from fleetkey.store.schema import RolloutTargetRow

ANSWERED = (200, 206, 304)


def confirm_fetched(
    session: Session, rollout_id: int, digest: str, since: datetime, now: datetime
) -> int:
    """Confirm every open phone of the rollout with a fetch of ``digest`` at or after ``since``."""
    result = session.execute(
        update(RolloutTargetRow)
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .where(RolloutTargetRow.state.in_([TargetState.PENDING.value, TargetState.NOTIFIED.value]))
        .where(phonestate.served_since(RolloutTargetRow.mac, digest, since, ANSWERED))
        .values(state=TargetState.CONFIRMED.value, confirmed_at=utc(now), reason=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def fetched(session: Session, mac: str, digest: str, since: datetime) -> bool:
    """Whether ``mac`` was last served ``digest`` at or after ``since`` (one look-up by key)."""
    served = phonestate.served_since(literal(mac), digest, since, ANSWERED)
    return bool(session.scalar(select(served)))


def confirm(session: Session, rollout_id: int, mac: str, now: datetime) -> None:
    session.execute(
        update(RolloutTargetRow)
        .where(RolloutTargetRow.rollout_id == rollout_id, RolloutTargetRow.mac == mac)
        .values(state=TargetState.CONFIRMED.value, confirmed_at=utc(now), reason=None)
    )


def overdue(
    session: Session,
    rollout_id: int,
    notified_before: datetime,
    *,
    unanswered_before: datetime | None = None,
) -> list[tuple[str, int, int | None]]:
    """Notified phones not confirmed since ``notified_before``: (mac, attempts, SIP status).

    A phone whose NOTIFY has no recorded answer yet counts only once notified before
    ``unanswered_before`` (by then its transaction has ended, by any executor): until then it
    may still be retransmitted, and its outcome, not a missing fetch, is what to report.
    """
    cutoff = notified_before if unanswered_before is None else unanswered_before
    rows = session.execute(
        select(RolloutTargetRow.mac, RolloutTargetRow.attempts, RolloutTargetRow.sip_status)
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .where(RolloutTargetRow.state == TargetState.NOTIFIED.value)
        .where(RolloutTargetRow.notified_at < utc(notified_before))
        .where(
            or_(
                RolloutTargetRow.sip_status.is_not(None),
                RolloutTargetRow.notified_at < utc(cutoff),
            )
        )
    ).all()
    return [(mac, attempts, status) for mac, attempts, status in rows]
