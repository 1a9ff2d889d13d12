"""Claims: which executor notifies which phone, now, at the rollout's shared pace.

A claim is one ``UPDATE … WHERE state = 'pending'`` over a materialized CTE of the due phones
that PostgreSQL runs ``FOR UPDATE SKIP LOCKED`` (an ``IN (sub-select … LIMIT n)`` may be
re-run there and take more than n). It counts the attempt before the NOTIFY leaves. The pace
lives in the rollout's row (``paced_until``), taken under that row's lock, so any number of
executors together start at most the plan's rate of check-syncs.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleetkey.errors import NotFoundError
from fleetkey.store.records import utc
from fleetkey.store.rollouts import TargetState
from fleetkey.store.schema import PhoneRow, RolloutRow, RolloutTargetRow

SIP_PORT: Final = 5060
_ROUNDING: Final = 1e-3
_claims = count(1)


@dataclass(frozen=True, slots=True)
class Claim:
    """A phone a worker is to notify now."""

    mac: str
    site: str
    contact: str | None
    attempts: int
    notify_at: datetime


def worker_name() -> str:
    """Who claims, as the claims record it: host and process."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def claim_due(
    session: Session,
    rollout_id: int,
    now: datetime,
    limit: int,
    worker: str,
    *,
    ahead_s: float = 0.0,
) -> list[Claim]:
    """Mark up to ``limit`` pending phones due by ``now`` (plus ``ahead_s``, so that a worker
    can send each at its own time) notified, one more attempt, and return them."""
    if limit < 1:
        return []
    token = f"{worker}#{next(_claims)}"[:64]
    due = (
        select(RolloutTargetRow.mac)
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .where(RolloutTargetRow.state == TargetState.PENDING.value)
        .where(RolloutTargetRow.notify_at <= utc(now) + timedelta(seconds=ahead_s))
        .order_by(RolloutTargetRow.notify_at, RolloutTargetRow.mac)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        # a CTE evaluated once: an IN (sub-select ... LIMIT) may be re-run and take more rows
        chosen = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
    else:
        chosen = due.cte("due")
    session.execute(
        update(RolloutTargetRow)
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .where(RolloutTargetRow.mac.in_(select(chosen.c.mac)))
        .where(RolloutTargetRow.state == TargetState.PENDING.value)
        .values(
            state=TargetState.NOTIFIED.value,
            attempts=RolloutTargetRow.attempts + 1,
            notified_at=utc(now),
            worker=token,
            sip_status=None,
        )
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        select(RolloutTargetRow, PhoneRow.sip_contact, PhoneRow.last_address)
        .join(PhoneRow, PhoneRow.mac == RolloutTargetRow.mac, isouter=True)
        .where(RolloutTargetRow.rollout_id == rollout_id, RolloutTargetRow.worker == token)
        .order_by(RolloutTargetRow.notify_at)
    ).all()
    return [
        Claim(
            target.mac,
            target.site_serial,
            contact or _fallback(address),
            target.attempts,
            utc(target.notify_at),
        )
        for target, contact, address in rows
    ]


def claim_paced(
    session: Session,
    rollout_id: int,
    now: datetime,
    *,
    want: int,
    rate: float,
    burst_s: float,
    worker: str,
    ahead_s: float = 0.0,
) -> list[Claim]:
    """:func:`claim_due` under the rollout's pace, shared by every executor: at most ``rate``
    check-syncs a second from all of them together, and ``burst_s`` seconds' worth plus one at
    once."""
    if rate <= 0 or want < 1:
        return []
    session.execute(  # take the rollout's row (its lock) before reading the pace
        update(RolloutRow)
        .where(RolloutRow.id == rollout_id)
        .values(paced_until=RolloutRow.paced_until)
    )
    row = session.get(RolloutRow, rollout_id, populate_existing=True)
    if row is None:
        raise NotFoundError(f"no rollout {rollout_id}")
    # Unused pace is kept for a burst plus one check-sync: paced_until moves only by what was
    # claimed, so the fraction of a check-sync left at one tick is still there at the next.
    # Kept for a burst alone, a pace below one check-sync per burst would never reach a whole
    # one (nothing was ever sent), and any other pace would lose its fractions at every tick.
    earliest = utc(now) - timedelta(seconds=burst_s + 1.0 / rate)
    paced = max(utc(row.paced_until), earliest) if row.paced_until else earliest
    # times are whole microseconds: a thousandth of a check-sync's tolerance keeps 1/rate
    # seconds (rounded) worth one check-sync
    allowed = min(want, int((utc(now) - paced).total_seconds() * rate + _ROUNDING))
    claims = claim_due(session, rollout_id, now, allowed, worker, ahead_s=ahead_s)
    row.paced_until = paced + timedelta(seconds=len(claims) / rate)
    return claims


def release(session: Session, rollout_id: int, macs: list[str]) -> None:
    """Give back claims whose NOTIFY never left (an executor stopping): pending again, at the
    same time, the attempt not counted."""
    if not macs:
        return
    session.execute(
        update(RolloutTargetRow)
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .where(RolloutTargetRow.mac.in_(macs))
        .where(RolloutTargetRow.state == TargetState.NOTIFIED.value)
        .values(
            state=TargetState.PENDING.value,
            attempts=RolloutTargetRow.attempts - 1,
            notified_at=None,
            worker=None,
        )
        .execution_options(synchronize_session=False)
    )


def _fallback(address: str | None) -> str | None:
    """A phone with no SIP contact in the inventory is tried where it last fetched from."""
    return f"sip:{address}:{SIP_PORT}" if address else None
