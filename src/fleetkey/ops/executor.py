"""Running a rollout: check-syncs at the plan's pace, confirmed from the fetch records.

Each tick the executor (1) confirms every open phone that fetched the rollout's license since it
was posted, (2) retries or fails phones notified longer ago than the confirmation timeout, after
one exact look-up per phone, (3) reads the servers' health from the last seconds of fetch
records and adjusts its pace — halved while more than 1 % of answers are 503 or the p95 latency
is over its limit, held at zero above 10 %, regained step by step when healthy — and (4) claims
due phones from the store, as many as the pace allows, and notifies them. A phone whose site
window is closed when its turn comes is moved to the window's next opening. State lives in the
store only, so a killed executor resumes where it stopped and several share one rollout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from fleetkey.clock import Clock
from fleetkey.core.rollout.windows import Window, open_intervals
from fleetkey.core.sip import Contact
from fleetkey.errors import ConflictError, SipFormatError
from fleetkey.ops.notifier import Notifier, NotifyResult
from fleetkey.store import claims as claiming
from fleetkey.store import confirmation, fetches, inventory, registry, rollouts
from fleetkey.store.claims import Claim
from fleetkey.store.rollouts import Progress, RolloutState
from fleetkey.store.store import Store

log = logging.getLogger(__name__)
ACTOR: Final = "rollout-executor"
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


@dataclass
class Report:
    notified: int = 0
    answered: dict[int, int] = field(default_factory=dict)
    unanswered: int = 0
    moved_to_window: int = 0
    retried: int = 0
    paces: list[tuple[datetime, float, str]] = field(default_factory=list)  # changes of pace
    progress: Progress | None = None


class Executor:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        rollout_id: int,
        settings: ExecutorSettings | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self._store, self._clock, self._id = store, clock, rollout_id
        self._settings = settings or ExecutorSettings()
        self._on_progress = on_progress
        self._worker = claiming.worker_name()
        self._pace = 1.0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._windows: dict[str, tuple[str, Window]] = {}
        self.report = Report()

    async def run(self) -> Report:
        """Until every phone is confirmed or failed, or the rollout is paused or cancelled."""
        with self._store.transaction() as session:
            rollout = rollouts.get(session, self._id)
            if rollout.state is RolloutState.PLANNED:
                rollout = rollouts.move(session, self._clock, ACTOR, self._id, RolloutState.RUNNING)
            if rollout.state is not RolloutState.RUNNING:
                raise ConflictError(f"rollout {self._id} is {rollout.state}; it does not run")
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
                while True:
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
                            task.add_done_callback(self._in_flight.discard)
                    await asyncio.sleep(self._settings.tick)
            finally:
                if self._in_flight:
                    await asyncio.gather(*self._in_flight, return_exceptions=True)
        state, progress = await asyncio.to_thread(self._check)
        self.report.progress = progress
        if progress.open == 0 and state is RolloutState.RUNNING:
            with self._store.transaction() as session:
                rollouts.move(session, self._clock, ACTOR, self._id, RolloutState.DONE)
        return self.report

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
            state = rollouts.get(session, self._id).state
            return state, rollouts.progress(session, self._id)

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
        self.report.notified += 1
        wait = (claim.notify_at - self._clock.now()).total_seconds()
        if wait > 0:  # claimed a tick ahead: sent at its own time, as the plan spaced it
            await asyncio.sleep(wait)
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
