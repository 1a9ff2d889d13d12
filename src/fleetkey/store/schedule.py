"""When a rollout's phones are notified: what it waits for, and changes after planning (failed
phones re-queued, the pending ones re-timed by ``rollout run --now``).

Both are operators' decisions and audited. Re-queued phones start again with no attempts
counted, so each gets the executor's full ``--max-attempts``; their times are spread from
``now`` at the rollout's pace, and the executor still holds each to its site's window.
Re-timing writes a new time (and wave) for each pending phone in one executemany.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.rollout.windows import Wait, Window, wait_for
from fleetkey.errors import ConflictError, InputError, NotFoundError
from fleetkey.store import audit
from fleetkey.store.database import PARAM_MARKERS
from fleetkey.store.records import sqlite_time, utc
from fleetkey.store.rollouts import FINISHED, Progress, Rollout, RolloutState, TargetState, get
from fleetkey.store.schema import RolloutRow, RolloutTargetRow, SiteRow

SHOWN_REASONS: Final = 20  # distinct failure reasons an audit event names


def requeue_failed(session: Session, clock: Clock, actor: str, rollout_id: int) -> int:
    """Put every failed phone of the rollout back in the queue; the number re-queued.

    A finished rollout becomes ``paused`` (``rollout run`` runs it again); a running or paused
    one keeps its state and its executors take the phones as they come due.
    """
    row = session.get(RolloutRow, rollout_id, with_for_update=True)
    if row is None:
        raise NotFoundError(f"no rollout {rollout_id}")
    rollout = get(session, rollout_id)
    if rollout.state in (RolloutState.CANCELLED, RolloutState.PLANNED):
        raise ConflictError(
            f"rollout {rollout_id} is {rollout.state}; it has no failed phones to retry"
        )
    failed = session.execute(
        select(RolloutTargetRow.mac, RolloutTargetRow.reason)
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .where(RolloutTargetRow.state == TargetState.FAILED.value)
        .order_by(RolloutTargetRow.mac)
    ).all()
    if not failed:
        raise InputError(f"rollout {rollout_id} has no failed phones to retry")
    now = utc(clock.now())
    step = 1.0 / rollout.notifies_per_second
    session.execute(
        update(RolloutTargetRow)
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .where(RolloutTargetRow.state == TargetState.FAILED.value)
        .values(state=TargetState.PENDING.value, attempts=0, reason=None, sip_status=None)
        .execution_options(synchronize_session=False)
    )
    _write_times(
        session,
        rollout_id,
        [(mac, None, now + timedelta(seconds=step * i)) for i, (mac, _) in enumerate(failed)],
    )
    details: dict[str, object] = {
        "phones": len(failed),
        "reasons": dict(Counter(reason or "" for _, reason in failed).most_common(SHOWN_REASONS)),
        "from": rollout.state.value,
    }
    if rollout.state in FINISHED:
        row.state = RolloutState.PAUSED.value
        row.windows_ignored_at = None  # paused: the windows hold again unless run --now
        details["to"] = RolloutState.PAUSED.value
    row.updated_at = now
    audit.append(
        session, clock, actor=actor, action="rollout.retry", subject=f"rollout:{rollout_id}",
        details=details,
    )  # fmt: skip
    return len(failed)


def ignore_windows(session: Session, clock: Clock, rollout_id: int) -> None:
    """Every executor of the rollout ignores the sites' windows from now until the rollout is
    paused or ends (:func:`fleetkey.store.rollouts.move` clears it)."""
    session.execute(
        update(RolloutRow)
        .where(RolloutRow.id == rollout_id)
        .values(windows_ignored_at=utc(clock.now()))
    )


def pending(session: Session, rollout_id: int) -> list[tuple[str, str]]:
    """(mac, site) of the rollout's pending phones, in the order they come due."""
    rows = session.execute(
        select(RolloutTargetRow.mac, RolloutTargetRow.site_serial)
        .where(RolloutTargetRow.rollout_id == rollout_id)
        .where(RolloutTargetRow.state == TargetState.PENDING.value)
        .order_by(RolloutTargetRow.notify_at, RolloutTargetRow.mac)
    ).all()
    return [(mac, site) for mac, site in rows]


def retime(
    session: Session,
    clock: Clock,
    actor: str,
    rollout: Rollout,
    times: Sequence[tuple[str, int, datetime]],
    details: dict[str, object],
) -> None:
    """New (wave, time) for pending phones, ``(mac, wave, notify_at)``; audited as
    ``rollout.now`` with ``details``."""
    _write_times(session, rollout.id, times)
    audit.append(
        session, clock, actor=actor, action="rollout.now", subject=f"rollout:{rollout.id}",
        details={"phones": len(times), **details},
    )  # fmt: skip


def _write_times(
    session: Session, rollout_id: int, times: Sequence[tuple[str, int | None, datetime]]
) -> None:
    """One executemany: each phone's time, and its wave unless that is None."""
    if not times:
        return
    connection = session.connection()
    marker = PARAM_MARKERS[connection.dialect.paramstyle]
    stamp = sqlite_time if connection.dialect.name == "sqlite" else utc
    waves = times[0][1] is not None
    assignments = "notify_at = {0}, wave = {1}" if waves else "notify_at = {0}"
    where = "rollout_id = {2} AND mac = {3}" if waves else "rollout_id = {1} AND mac = {2}"
    sql = f"UPDATE rollout_targets SET {assignments} WHERE {where}"  # noqa: S608  # constant names, values bound
    sql = sql.format(*(marker.format(n + 1) for n in range(4 if waves else 3)))
    rows = [
        (stamp(at), wave, rollout_id, mac) if waves else (stamp(at), rollout_id, mac)
        for mac, wave, at in times
    ]
    connection.exec_driver_sql(sql, rows)


def waiting(session: Session, rollout: Rollout, progress: Progress, now: datetime) -> Wait | None:
    """What the rollout waits for: its next pending phone, in its site's time and window (no
    window while ``rollout run --now`` overrides them)."""
    if progress.next_site is None:
        return None
    site = session.get(SiteRow, progress.next_site)
    zone, window = ("UTC", None) if site is None else (site.timezone, _window(site))
    if rollout.windows_ignored_at is not None:
        window = None
    return wait_for(progress.next_site, zone, window, progress.next_at, utc(now))


def _window(site: SiteRow) -> Window:
    return Window(time.fromisoformat(site.window_start), time.fromisoformat(site.window_end))
