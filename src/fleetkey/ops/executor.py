"""Running a rollout: check-syncs at the plan's pace, confirmed from the fetch records.

Each tick the executor (1) confirms every open phone that fetched the rollout's license since it
was posted, (2) retries or fails phones notified longer ago than the confirmation timeout, after
one exact look-up per phone, (3) reads the servers' health from the last seconds of fetch
records and adjusts its pace — halved while more than 1 % of answers are 503 or the p95 latency
is over its limit, held at zero above 10 %, regained step by step when healthy — and (4) claims
due phones from the store, as many as the pace allows, and notifies them. A phone whose site
window is closed when its turn comes is moved to the window's next opening (unless windows are
overridden: ``rollout run --now`` marks the rollout, and every executor reads the mark). State
lives in the store only, so a killed executor resumes where it stopped and several share one
rollout.

:meth:`Executor.stop` (the CLI calls it on SIGINT and SIGTERM) ends a run cleanly: claims whose
NOTIFY has not left are given back, NOTIFYs in flight get ``stop_grace_s`` seconds to be
answered, and the rollout is ``paused``, never left ``running``. A run that leaves no phone open
ends the rollout ``done``, ``partial`` or ``failed`` (``store/rollouts.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.rollout.windows import Window, open_intervals
from fleetkey.core.sip import Contact
from fleetkey.errors import ConflictError, SipFormatError
from fleetkey.ops.notifier import Notifier, NotifyResult
from fleetkey.ops.rollout import served_license
from fleetkey.store import claims as claiming
from fleetkey.store import confirmation, fetches, inventory, registry, rollouts
from fleetkey.store.claims import Claim
from fleetkey.store.rollouts import ACTIVE, Progress, Rollout, RolloutState
from fleetkey.store.store import Store

log = logging.getLogger(__name__)
ACTOR: Final = "rollout-executor"
STOP_GRACE_S: Final = 5.0  # seconds NOTIFYs in flight may take to be answered at a stop
RESCAN: Final = timedelta(seconds=30)  # fetch records reach the store up to ~1 s late; margin


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    confirm_timeout: float = 300.0  # seconds from NOTIFY to the license fetch
    max_attempts: int = 3
    retry_after: float = 60.0
    concurrency: int = 256  # NOTIFY transactions in flight
    tick: float = 0.1
    health_every: float = 1.0
    health_window: float = 10.0
    slow_share: float = 0.01  # 503 share that halves the pace
    hold_share: float = 0.10  # 503 share that holds it at zero
    max_p95_ms: float = 1000.0
    local_host: str = "127.0.0.1"
    credentials: tuple[str, str] | None = None
    t1: float = 0.5
    stop_grace_s: float = STOP_GRACE_S


@dataclass
class Report:
    notified: int = 0
    answered: dict[int, int] = field(default_factory=dict)
    unanswered: int = 0
    moved_to_window: int = 0
    retried: int = 0
    paces: list[tuple[datetime, float, str]] = field(default_factory=list)  # changes of pace
    progress: Progress | None = None
    released: int = 0  # claims given back at a stop, their NOTIFY never sent
    stopped_by: signal.Signals | None = None  # the signal that stopped the run early
    halted: str | None = None  # why the run paused the rollout itself (its key is not posted)


class Executor:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        rollout_id: int,
        settings: ExecutorSettings | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        actor: str = ACTOR,
    ) -> None:
        self._store, self._clock, self._id = store, clock, rollout_id
        self._settings = settings or ExecutorSettings()
        self._on_progress = on_progress
        self._actor = actor
        self._worker = claiming.worker_name()
        self._pace = 1.0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._unsent: dict[asyncio.Task[None], Claim] = {}
        self._stopping: asyncio.Event | None = None
        self._windows: dict[str, tuple[str, Window]] = {}
        self._ignore_windows = False
        self.report = Report()

    def stop(self, why: signal.Signals) -> None:
        """End the run soon (``why``: the signal that asked); a second call ends it now,
        without waiting for the NOTIFYs in flight. Call it from the run's event loop."""
        if self.report.stopped_by is not None:
            for task in self._in_flight:
                task.cancel()
        self.report.stopped_by = self.report.stopped_by or why
        if self._stopping is not None:
            self._stopping.set()

    async def run(self) -> Report:
        """Until every phone is confirmed or failed, the rollout is paused or cancelled, or
        :meth:`stop` is called (the rollout is then paused)."""
        self._stopping = asyncio.Event()
        if self.report.stopped_by is not None:
            self._stopping.set()
        with self._store.transaction() as session:
            rollout = rollouts.get(session, self._id)
            if rollout.state in ACTIVE:
                served_license(session, rollout)
            if rollout.state in (RolloutState.PLANNED, RolloutState.PAUSED):
                rollout = rollouts.move(
                    session, self._clock, self._actor, self._id, RolloutState.RUNNING
                )
            if rollout.state is not RolloutState.RUNNING:
                hint = None
                if rollout.state in (RolloutState.PARTIAL, RolloutState.FAILED):
                    hint = f"queue its failed phones again with `fleetkey rollout retry {self._id}`"
                raise ConflictError(
                    f"rollout {self._id} is {rollout.state}; it does not run", hint=hint
                )
            license_ = registry.get(session, rollout.license_id)
            self._windows = {
                site.serial: (site.timezone, site.window) for site in inventory.sites(session)
            }
        self._rollout, self._digest = rollout, license_.digest
        self._posted = license_.posted_at or license_.issued_at
        self._scanned: datetime | None = None  # fetch records are read from here on
        loop = asyncio.get_running_loop()
        last_health = last_check = float("-inf")
        async with Notifier(
            local_host=self._settings.local_host,
            credentials=self._settings.credentials,
            t1=self._settings.t1,
        ) as notifier:
            try:
                while not self._stopping.is_set():
                    now_mono = loop.time()
                    if now_mono - last_check >= self._settings.health_every:
                        last_check = now_mono
                        state, progress = await asyncio.to_thread(self._check)
                        self.report.progress = progress
                        if self._on_progress:
                            self._on_progress(progress)
                        if state is not RolloutState.RUNNING or progress.open == 0:
                            break
                    if now_mono - last_health >= self._settings.health_every:
                        last_health = now_mono
                        await asyncio.to_thread(self._adjust_pace)
                    room = self._settings.concurrency - len(self._in_flight)
                    if self._pace > 0 and room > 0:
                        claims = await asyncio.to_thread(self._claim, room)
                        for claim in claims:
                            task = loop.create_task(self._notify(notifier, claim))
                            self._in_flight.add(task)
                            self._unsent[task] = claim
                            task.add_done_callback(self._in_flight.discard)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._settings.tick):
                            await self._stopping.wait()
            finally:
                await self._settle()
        state, progress = await asyncio.to_thread(self._check)
        self.report.progress = progress
        if state is RolloutState.RUNNING:
            await asyncio.to_thread(self._leave, progress)
        return self.report

    async def _settle(self) -> None:
        """Wait for the NOTIFYs in flight; at a stop, first give back those not yet sent and
        allow the others ``stop_grace_s`` seconds."""
        if self.report.stopped_by is not None and self._unsent:
            unsent = list(self._unsent.items())
            for task, _ in unsent:
                task.cancel()
            await asyncio.gather(*(task for task, _ in unsent), return_exceptions=True)
            macs = [claim.mac for _, claim in unsent]
            await asyncio.to_thread(self._release, macs)
            self.report.released += len(macs)
        if not self._in_flight:
            return
        pending = set(self._in_flight)
        if self.report.stopped_by is not None:
            _, pending = await asyncio.wait(pending, timeout=self._settings.stop_grace_s)
            for task in pending:
                task.cancel()  # it stays notified; a later run judges it (confirm timeout)
        await asyncio.gather(*pending, return_exceptions=True)

    def _release(self, macs: list[str]) -> None:
        with self._store.transaction() as session:
            claiming.release(session, self._id, macs)

    def _leave(self, progress: Progress) -> None:
        """The state a run leaves: finished when no phone is open, paused when stopped."""
        with self._store.transaction() as session:
            if progress.open == 0:
                rollouts.finish(session, self._clock, self._actor, self._id)
            elif self.report.stopped_by is not None:
                details = {"stopped_by": self.report.stopped_by.name, "open": progress.open}
                rollouts.move(
                    session, self._clock, self._actor, self._id, RolloutState.PAUSED, details
                )

    def _check(self) -> tuple[RolloutState, Progress]:
        """Confirm, then retry or fail the overdue; the rollout's state and progress."""
        now = self._clock.now().astimezone(UTC)
        settings = self._settings
        since = self._posted if self._scanned is None else self._scanned - RESCAN
        with self._store.transaction() as session:
            confirmation.confirm_fetched(
                session, self._id, self._digest, max(since, self._posted), now
            )
            self._scanned = now
            late = now - timedelta(seconds=settings.confirm_timeout)
            # a NOTIFY may wait up to two ticks for its moment, then retransmit until Timer F
            ended = late - timedelta(seconds=64 * settings.t1 + 2 * settings.tick)
            for mac, attempts, status in confirmation.overdue(
                session, self._id, late, unanswered_before=ended
            ):
                if confirmation.fetched(session, mac, self._digest, self._posted):
                    confirmation.confirm(session, self._id, mac, now)
                    continue
                why = (
                    f"no fetch of the license {settings.confirm_timeout:g} s after check-sync "
                    f"#{attempts} (SIP {status if status is not None else 'no answer'})"
                )
                retry = now + timedelta(seconds=settings.retry_after)
                self.report.retried += attempts < settings.max_attempts
                rollouts.retry_or_fail(
                    session,
                    self._id,
                    mac,
                    why,
                    retry_at=retry if attempts < settings.max_attempts else None,
                )
            rollout = rollouts.get(session, self._id)
            self._ignore_windows = rollout.windows_ignored_at is not None
            if rollout.state is RolloutState.RUNNING:
                rollout = self._halt_unless_served(session, rollout)
            return rollout.state, rollouts.progress(session, self._id, failures=0)

    def _halt_unless_served(self, session: Session, rollout: Rollout) -> Rollout:
        """Pause the rollout when its key was rolled back or replaced while it ran: every
        check-sync after that would send phones for a key the server no longer serves."""
        try:
            served_license(session, rollout)
        except ConflictError as exc:
            self.report.halted = exc.message
            return rollouts.move(
                session, self._clock, self._actor, self._id, RolloutState.PAUSED,
                {"halted": exc.message},
            )  # fmt: skip
        return rollout

    def _adjust_pace(self) -> None:
        settings = self._settings
        since = self._clock.now().astimezone(UTC) - timedelta(seconds=settings.health_window)
        with self._store.transaction() as session:
            health = fetches.health(session, since)
        before = self._pace
        if health.rejected_share > settings.hold_share:
            self._pace, why = 0.0, f"{health.rejected_share:.0%} of answers were 503: holding"
        elif health.rejected_share > settings.slow_share:
            self._pace, why = before / 2, f"{health.rejected_share:.1%} answers were 503"
        elif health.p95_ms > settings.max_p95_ms:
            self._pace, why = before / 2, f"p95 latency {health.p95_ms:.0f} ms"
        else:
            self._pace, why = min(1.0, max(before, 0.05) * 1.25), "healthy"
        if self._pace != before and (why != "healthy" or self._pace == 1.0):
            self.report.paces.append((self._clock.now(), self._pace, why))
            log.info("rollout %d: pace %.2f (%s)", self._id, self._pace, why)

    def _claim(self, room: int) -> list[Claim]:
        now = self._clock.now().astimezone(UTC)
        rate = self._rollout.notifies_per_second * self._pace
        with self._store.transaction() as session:
            claims = claiming.claim_paced(
                session,
                self._id,
                now,
                want=room,
                rate=rate,
                burst_s=2 * self._settings.tick,
                worker=self._worker,
                ahead_s=2 * self._settings.tick,
            )
            if self._ignore_windows:
                return claims
            ready = []
            for claim in claims:
                opens = self._next_opening(claim.site, now)
                if opens is None:
                    ready.append(claim)
                    continue
                self.report.moved_to_window += 1
                rollouts.retry_or_fail(
                    session,
                    self._id,
                    claim.mac,
                    "moved to the next opening of its site's window",
                    retry_at=opens,
                    undo_attempt=True,
                )
            return ready

    def _next_opening(self, site: str, now: datetime) -> datetime | None:
        """None when ``site``'s window holds a boot started now; else its next opening."""
        if site not in self._windows:
            return None
        zone, window = self._windows[site]
        boot = timedelta(seconds=self._rollout.boot_s)
        spans = open_intervals(window, zone, now, now + timedelta(days=3))
        for lo, hi in spans:
            if lo <= now and now + boot <= hi:
                return None
            if lo > now and lo + boot <= hi:
                return lo
        return None

    async def _notify(self, notifier: Notifier, claim: Claim) -> None:
        wait = (claim.notify_at - self._clock.now()).total_seconds()
        if wait > 0:  # claimed a tick ahead: sent at its own time, as the plan spaced it
            await asyncio.sleep(wait)
        task = asyncio.current_task()
        if task is not None:
            self._unsent.pop(task, None)
        self.report.notified += 1
        if claim.contact is None:
            result = NotifyResult(None, "no SIP contact and no address seen for the phone", 0, 0)
        else:
            try:
                contact = Contact.parse(claim.contact)
            except SipFormatError as exc:
                result = NotifyResult(None, str(exc), 0, 0)
            else:
                result = await notifier.notify(contact, reboot=self._rollout.reboot)
        if result.status is None:
            self.report.unanswered += 1
        else:
            self.report.answered[result.status] = self.report.answered.get(result.status, 0) + 1
        await asyncio.to_thread(self._answered, claim, result)

    def _answered(self, claim: Claim, result: NotifyResult) -> None:
        with self._store.transaction() as session:
            if result.ok:
                rollouts.answered(session, self._id, claim.mac, result.status)
                return
            retry = None
            if claim.attempts < self._settings.max_attempts:
                now = self._clock.now().astimezone(UTC)
                retry = now + timedelta(seconds=self._settings.retry_after)
                self.report.retried += 1
            rollouts.retry_or_fail(
                session,
                self._id,
                claim.mac,
                f"check-sync #{claim.attempts}: {result.reason}",
                retry_at=retry,
            )
