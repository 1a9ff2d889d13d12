"""The load on the provisioning servers over time: planned by rollouts, measured by fetches.

One store is one provisioning service: every rollout in it is carried by the same servers, so
the load a new plan must leave room for is that of every other rollout still planned, running
or paused. :func:`planned_loads` counts their pending and notified phones in the slots of each
rollout's own grid (multiples of its ``slot_s`` since the epoch, as the planner lays them out)
and turns each slot into a :class:`Load`: ``n x requests-per-boot / slot_s`` over the slot.
:func:`measured_rate` counts fetch records per bucket: the requests per second the servers
answered (every request, the rollout's and any other).

Both group in SQL on whole seconds since the epoch, so a million rows leave the database as a
few thousand buckets.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, cast, func, select, type_coerce
from sqlalchemy.orm import Session

from fleetkey.core.rollout.sharing import EPOCH, Load
from fleetkey.store.records import utc
from fleetkey.store.rollouts import ACTIVE, TargetState
from fleetkey.store.schema import FetchRow, RolloutRow, RolloutTargetRow

_OPEN = (TargetState.PENDING.value, TargetState.NOTIFIED.value)


def planned_loads(
    session: Session, since: datetime, until: datetime, *, exclude: int | None = None
) -> list[Load]:
    """The load the active rollouts (but ``exclude``) plan between ``since`` and ``until``.

    A slot in progress at ``since`` counts whole: phones are read back to the start of the
    longest active slot before ``since`` (a 2-hour slot that began 90 minutes ago is still
    load). A phone whose time is further past (a paused rollout's overdue phones) counts for
    nothing: it is sent when its rollout runs again, planned around then.
    """
    dialect = session.get_bind().dialect.name
    longest = session.scalar(
        select(func.max(RolloutRow.slot_seconds)).where(
            RolloutRow.state.in_([state.value for state in ACTIVE])
        )
    )
    lookback = timedelta(seconds=int(longest or 0))
    bucket = _seconds(RolloutTargetRow.notify_at, dialect, micros=False) // RolloutRow.slot_seconds
    statement = (
        select(
            RolloutRow.id,
            RolloutRow.slot_seconds,
            RolloutRow.boot_requests,
            bucket.label("bucket"),
            func.count(),
        )
        .join(RolloutTargetRow, RolloutTargetRow.rollout_id == RolloutRow.id)
        .where(RolloutRow.state.in_([state.value for state in ACTIVE]))
        .where(RolloutTargetRow.state.in_(_OPEN))
        .where(RolloutTargetRow.notify_at < utc(until))
        .where(RolloutTargetRow.notify_at >= utc(since) - lookback)
        .group_by(RolloutRow.id, RolloutRow.slot_seconds, RolloutRow.boot_requests, "bucket")
    )
    if exclude is not None:
        statement = statement.where(RolloutRow.id != exclude)
    loads = []
    for rollout_id, slot_s, requests, index, count in session.execute(statement).all():
        start = EPOCH + timedelta(seconds=int(index) * slot_s)
        end = start + timedelta(seconds=slot_s)
        if end > since:
            loads.append(Load(start, end, count * requests / slot_s, rollout_id))
    return loads


def scheduled(session: Session, rollout_id: int) -> list[tuple[datetime, float]]:
    """The rollout's own load as it stands: every phone at its time, per slot of its grid,
    as (slot start, requests per second), in order."""
    dialect = session.get_bind().dialect.name
    row = session.get(RolloutRow, rollout_id)
    if row is None:
        return []
    slot_s, requests = row.slot_seconds, row.boot_requests
    bucket = _seconds(RolloutTargetRow.notify_at, dialect, micros=False) // slot_s
    rows = session.execute(
        select(bucket.label("bucket"), func.count())
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .group_by("bucket")
        .order_by("bucket")
    ).all()
    return [
        (EPOCH + timedelta(seconds=int(index) * slot_s), count * requests / slot_s)
        for index, count in rows
    ]


def run_span(session: Session, rollout_id: int) -> tuple[datetime, datetime] | None:
    """From the rollout's first check-sync to its last check-sync or confirmation; None
    before any was sent."""
    first, sent, confirmed = session.execute(
        select(
            func.min(RolloutTargetRow.notified_at),
            func.max(RolloutTargetRow.notified_at),
            func.max(RolloutTargetRow.confirmed_at),
        ).where(RolloutTargetRow.rollout_id == rollout_id)
    ).one()
    if first is None:
        return None
    return utc(first), max(utc(moment) for moment in (first, sent, confirmed) if moment)


def measured_rate(
    session: Session, since: datetime, until: datetime, bucket_s: int
) -> list[tuple[datetime, float]]:
    """Requests per second the servers answered, per ``bucket_s`` from ``since``, in order
    (buckets without a request are left out)."""
    dialect = session.get_bind().dialect.name
    bucket = _seconds(FetchRow.at, dialect, micros=True) // bucket_s
    rows = session.execute(
        select(bucket.label("bucket"), func.count())
        .where(FetchRow.at >= utc(since), FetchRow.at < utc(until))
        .group_by("bucket")
        .order_by("bucket")
    ).all()
    return [
        (EPOCH + timedelta(seconds=int(index) * bucket_s), count / bucket_s)
        for index, count in rows
    ]


def _seconds(column: Any, dialect: str, *, micros: bool) -> Any:
    """Whole seconds since the epoch of a time column, as an integer expression."""
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", column)), BigInteger)
    if micros:  # the fetch table keeps integer microseconds on SQLite (schema.Micros)
        return type_coerce(column, BigInteger) // 1_000_000
    return cast(func.strftime("%s", column), Integer)
