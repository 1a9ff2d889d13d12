"""Rollouts in the store: their waves, each phone's progress, and claims that workers share.

A phone goes ``pending`` → ``notified`` (claimed: the attempt is counted *before* the NOTIFY
leaves, so a worker killed mid-send never makes another worker send the same attempt) →
``confirmed`` when a fetch record shows it fetched the rollout's license, or back to ``pending``
for a retry, or ``failed`` with the reason. Claims are one ``UPDATE … WHERE state = 'pending'``
over a sub-select that PostgreSQL runs ``FOR UPDATE SKIP LOCKED``, so several workers share a
rollout without waiting on each other and no phone is claimed twice for one attempt.

A rollout whose every phone is confirmed or failed ends ``done`` (all confirmed), ``partial``
(some failed) or ``failed`` (none confirmed); :func:`requeue_failed` puts the failed phones
back in the queue (the rollout ``paused``, to be run again).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.rollout.windows import Wait
from fleetkey.errors import ConflictError, NotFoundError
from fleetkey.store import audit
from fleetkey.store.database import PARAM_MARKERS
from fleetkey.store.records import sqlite_time, utc
from fleetkey.store.schema import RolloutRow, RolloutTargetRow

INSERT_CHUNK: Final = 50_000


class RolloutState(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"  # every phone confirmed
    PARTIAL = "partial"  # every phone confirmed or failed, some failed
    FAILED = "failed"  # every phone failed


class TargetState(StrEnum):
    PENDING = "pending"
    NOTIFIED = "notified"
    CONFIRMED = "confirmed"
    FAILED = "failed"


FINISHED: Final = frozenset({RolloutState.DONE, RolloutState.PARTIAL, RolloutState.FAILED})
ACTIVE: Final = frozenset({RolloutState.PLANNED, RolloutState.RUNNING, RolloutState.PAUSED})
_MOVES: Final = {  # state → the states an operator or a worker may move it to
    RolloutState.PLANNED: {RolloutState.RUNNING, RolloutState.CANCELLED},
    RolloutState.RUNNING: {RolloutState.PAUSED, RolloutState.CANCELLED, *FINISHED},
    RolloutState.PAUSED: {RolloutState.RUNNING, RolloutState.CANCELLED},
    RolloutState.CANCELLED: set(),
    RolloutState.DONE: set(),
    RolloutState.PARTIAL: {RolloutState.CANCELLED},  # or paused again by requeue_failed
    RolloutState.FAILED: {RolloutState.CANCELLED},
}


@dataclass(frozen=True, slots=True)
class Rollout:
    id: int
    license_id: int
    state: RolloutState
    reboot: bool
    capacity: float
    headroom: float
    slot_s: int
    boot_requests: float
    boot_s: float
    deadline: datetime
    explanation: tuple[str, ...]
    created_at: datetime
    windows_ignored_at: datetime | None = None  # rollout run --now, until a pause; kept at the end

    @property
    def notifies_per_second(self) -> float:
        """The plan's pace: check-syncs per second that keep the load within the budget."""
        return self.capacity * self.headroom / self.boot_requests


@dataclass(frozen=True, slots=True)
class PlannedTarget:
    mac: str
    site: str
    wave: int
    notify_at: datetime


@dataclass(frozen=True, slots=True)
class Progress:
    states: dict[str, int]
    failures: list[tuple[str, str]]  # (mac, reason), by MAC: all, or as many as asked
    next_at: datetime | None  # the next pending phone's time
    next_site: str | None = None  # and its site

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def open(self) -> int:
        return self.states.get(TargetState.PENDING, 0) + self.states.get(TargetState.NOTIFIED, 0)


def create(
    session: Session,
    clock: Clock,
    actor: str,
    *,
    license_id: int,
    reboot: bool,
    capacity: float,
    headroom: float,
    slot_s: int,
    boot_requests: float,
    boot_s: float,
    deadline: datetime,
    explanation: Sequence[str],
    targets: Sequence[PlannedTarget],
) -> Rollout:
    now = utc(clock.now())
    row = RolloutRow(
        license_id=license_id,
        state=RolloutState.PLANNED.value,
        reboot=reboot,
        capacity=capacity,
        headroom=headroom,
        slot_seconds=slot_s,
        boot_requests=boot_requests,
        boot_seconds=boot_s,
        deadline=utc(deadline),
        explanation=json.dumps(list(explanation)),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    _insert_targets(session, row.id, targets)
    details = {
        "license": license_id,
        "phones": len(targets),
        "capacity": capacity,
        "headroom": headroom,
        "deadline": utc(deadline).isoformat(),
    }
    audit.append(
        session,
        clock,
        actor=actor,
        action="rollout.plan",
        subject=f"rollout:{row.id}",
        details=details,
    )
    return rollout_of(row)


def _insert_targets(session: Session, rollout_id: int, targets: Sequence[PlannedTarget]) -> None:
    """One executemany straight to the driver: a million rows in seconds, not minutes."""
    connection = session.connection()
    marker = PARAM_MARKERS[connection.dialect.paramstyle]
    columns = ("rollout_id", "mac", "site_serial", "wave", "notify_at", "state", "attempts")
    placeholders = ", ".join(marker.format(n + 1) for n in range(len(columns)))
    sql = f"INSERT INTO rollout_targets ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608  # constant names, values bound
    stamp = sqlite_time if connection.dialect.name == "sqlite" else utc
    pending = TargetState.PENDING.value
    rows = [(rollout_id, t.mac, t.site, t.wave, stamp(t.notify_at), pending, 0) for t in targets]
    for start in range(0, len(rows), INSERT_CHUNK):
        connection.exec_driver_sql(sql, rows[start : start + INSERT_CHUNK])


def get(session: Session, rollout_id: int) -> Rollout:
    row = session.get(RolloutRow, rollout_id)
    if row is None:
        raise NotFoundError(f"no rollout {rollout_id}")
    return rollout_of(row)


def listing(session: Session) -> list[Rollout]:
    return [rollout_of(row) for row in session.scalars(select(RolloutRow).order_by(RolloutRow.id))]


def move(
    session: Session,
    clock: Clock,
    actor: str,
    rollout_id: int,
    to: RolloutState,
    details: dict[str, Any] | None = None,
) -> Rollout:
    """Change a rollout's state, if that move is allowed; the same state is no change."""
    row = session.get(RolloutRow, rollout_id, with_for_update=True)
    if row is None:
        raise NotFoundError(f"no rollout {rollout_id}")
    current = RolloutState(row.state)
    if to == current:
        return rollout_of(row)
    if to not in _MOVES[current]:
        raise ConflictError(f"rollout {rollout_id} is {current}; it cannot become {to}")
    row.state = to.value
    row.updated_at = utc(clock.now())
    if to is RolloutState.PAUSED:
        # --now lasts until a pause (a resumed run keeps the windows unless told again); a
        # rollout that ended keeps when its windows began to be ignored, as status says
        row.windows_ignored_at = None
    audit.append(
        session,
        clock,
        actor=actor,
        action=f"rollout.{to.value}",
        subject=f"rollout:{rollout_id}",
        details=details,
    )
    return rollout_of(row)


def answered(session: Session, rollout_id: int, mac: str, status: int | None) -> None:
    session.execute(
        update(RolloutTargetRow)
        .where(RolloutTargetRow.rollout_id == rollout_id, RolloutTargetRow.mac == mac)
        .values(sip_status=status)
    )


def retry_or_fail(
    session: Session,
    rollout_id: int,
    mac: str,
    reason: str,
    *,
    retry_at: datetime | None,
    undo_attempt: bool = False,
) -> None:
    """Back to pending at ``retry_at``, or failed (``retry_at`` None) with ``reason``."""
    values: dict[str, object] = {"reason": reason[:255]}
    if retry_at is None:
        values["state"] = TargetState.FAILED.value
    else:
        values |= {"state": TargetState.PENDING.value, "notify_at": utc(retry_at)}
    if undo_attempt:
        values["attempts"] = RolloutTargetRow.attempts - 1
    session.execute(
        update(RolloutTargetRow)
        .where(RolloutTargetRow.rollout_id == rollout_id, RolloutTargetRow.mac == mac)
        .where(RolloutTargetRow.state.in_([TargetState.NOTIFIED.value, TargetState.PENDING.value]))
        .values(**values)
    )


def progress(session: Session, rollout_id: int, failures: int | None = None) -> Progress:
    """Phones by state, the failed ones by MAC (all, or the first ``failures``), and the next
    pending phone's time and site."""
    states = dict(
        session.execute(
            select(RolloutTargetRow.state, func.count())
            .where(RolloutTargetRow.rollout_id == rollout_id)
            .group_by(RolloutTargetRow.state)
        ).all()
    )
    failed = (
        session.execute(
            select(RolloutTargetRow.mac, RolloutTargetRow.reason)
            .where(RolloutTargetRow.rollout_id == rollout_id)
            .where(RolloutTargetRow.state == TargetState.FAILED.value)
            .order_by(RolloutTargetRow.mac)
            .limit(failures)
        ).all()
        if failures != 0
        else []
    )
    following = session.execute(
        select(RolloutTargetRow.notify_at, RolloutTargetRow.site_serial)
        .where(
            and_(
                RolloutTargetRow.rollout_id == rollout_id,
                RolloutTargetRow.state == TargetState.PENDING.value,
            )
        )
        .order_by(RolloutTargetRow.notify_at)
        .limit(1)
    ).first()
    return Progress(
        {str(state): int(n) for state, n in states.items()},
        [(mac, reason or "") for mac, reason in failed],
        utc(following[0]) if following is not None else None,
        following[1] if following is not None else None,
    )


def finish(session: Session, clock: Clock, actor: str, rollout_id: int) -> Rollout:
    """End a running rollout none of whose phones is open: ``done`` when every phone was
    confirmed, ``failed`` when none was, else ``partial``."""
    states = progress(session, rollout_id, failures=0).states
    confirmed = states.get(TargetState.CONFIRMED.value, 0)
    failed = states.get(TargetState.FAILED.value, 0)
    if not failed:
        outcome = RolloutState.DONE
    else:
        outcome = RolloutState.PARTIAL if confirmed else RolloutState.FAILED
    return move(
        session, clock, actor, rollout_id, outcome, {"confirmed": confirmed, "failed": failed}
    )


def sites_of(session: Session, rollout_id: int) -> list[tuple[str, int]]:
    """The sites of the rollout's phones, with how many phones each, by serial."""
    rows = session.execute(
        select(RolloutTargetRow.site_serial, func.count())
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .group_by(RolloutTargetRow.site_serial)
        .order_by(RolloutTargetRow.site_serial)
    ).all()
    return [(site, int(count)) for site, count in rows]


def targets(session: Session, rollout_id: int) -> list[tuple[str, str, int, str, int]]:
    """(mac, site, wave, state, attempts) of every phone, by MAC."""
    rows = session.execute(
        select(
            RolloutTargetRow.mac,
            RolloutTargetRow.site_serial,
            RolloutTargetRow.wave,
            RolloutTargetRow.state,
            RolloutTargetRow.attempts,
        )
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .order_by(RolloutTargetRow.mac)
    ).all()
    return [(m, s, w, st, a) for m, s, w, st, a in rows]


def rollout_json(
    item: Rollout, progress: Progress | None, wait: Wait | None = None
) -> dict[str, Any]:
    """A rollout as JSON: what ``rollout status --json`` prints and the admin API answers."""
    return {
        "id": item.id,
        "license": item.license_id,
        "state": item.state.value,
        "reboot": item.reboot,
        "capacity": item.capacity,
        "headroom": item.headroom,
        "deadline": item.deadline.isoformat(),
        "explanation": list(item.explanation),
        "phones": dict(progress.states) if progress else {},
        "failures": [{"mac": m, "reason": r} for m, r in progress.failures] if progress else [],
        "next_at": progress.next_at.isoformat() if progress and progress.next_at else None,
        "waiting": None if wait is None else wait.to_json(),
        "windows_ignored_at": (
            item.windows_ignored_at.isoformat() if item.windows_ignored_at else None
        ),
    }


def rollout_of(row: RolloutRow) -> Rollout:
    return Rollout(
        row.id,
        row.license_id,
        RolloutState(row.state),
        row.reboot,
        row.capacity,
        row.headroom,
        row.slot_seconds,
        row.boot_requests,
        row.boot_seconds,
        utc(row.deadline),
        tuple(json.loads(row.explanation)),
        utc(row.created_at),
        utc(row.windows_ignored_at) if row.windows_ignored_at else None,
    )
