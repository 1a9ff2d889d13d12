"""The simulation: phones follow R1-R9 in batches, the server queue times their boots.

Steps go in time order. Each takes, for every phone with something due in the next hour (or
until the next scenario event), its earliest timer: a daily license check that finds a
feature lapsed (R3/R4), a configuration poll after a change (R8), a check-sync of a rollout
(R9), or a reboot that waited for calls to end. A reboot asked for during a call waits for the
phone's calls to end (calls.py); the server queue (server.py) says when each boot is done; at
the end of the boot the phone takes what the server offers then (licenses.py). A phone's later
timers are set from the end of its boot, as the engine sets them in ``boot_completed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from fleetkey.core.device.engine import check_sync_absorbed, check_sync_reboots, lapse_reboots
from fleetkey.core.device.schedule import lapse_check_day
from fleetkey.simulate.calls import idle_from, mix
from fleetkey.simulate.fleet import Fleet, build_fleet
from fleetkey.simulate.licenses import (
    Licenses,
    Posted,
    boot_downloads,
    held_at_start,
    license_table,
    posted_table,
)
from fleetkey.simulate.phones import INF, Cause, Phones, next_config_poll
from fleetkey.simulate.rollouts import Notices, plan_notices
from fleetkey.simulate.scenario import ConfigChange, Rollout, Scenario, ServerDown
from fleetkey.simulate.server import ServerQueue
from fleetkey.simulate.tally import Tally

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
STEP_S: Final = 3600.0
R4, CONFIG, NOTIFY, PENDING = range(1, 5)  # what a phone's earliest timer is (_due)


@dataclass
class Run:
    scenario: Scenario
    fleet: Fleet
    licenses: Licenses
    posted: Posted
    phones: Phones
    queue: ServerQueue
    tally: Tally
    notices: list[Notices] = field(default_factory=list)
    site_config: I64 = field(init=False)
    horizon_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.site_config = np.zeros(len(self.fleet.sites.serials), dtype=np.int64)
        self.horizon_s = self.scenario.days * 86400.0


def simulate(scenario: Scenario, seed: int = 0, record: bool = False) -> Run:
    """Run ``scenario``; ``record`` keeps every reboot (phone, time, cause) for the agreement
    test and ``--phones``."""
    fleet = build_fleet(scenario, seed)
    licenses = license_table(scenario)
    queue = ServerQueue(scenario.server, scenario.days * 1440 + 1, scenario.days * 86400.0)
    origin = scenario.start
    for event in scenario.events:
        if isinstance(event, ServerDown):
            queue.take_down(
                (event.at - origin).total_seconds(), (event.until - origin).total_seconds()
            )
    run = Run(
        scenario, fleet, licenses, posted_table(scenario, licenses, fleet.sites.serials),
        Phones(fleet.size), queue, Tally(scenario, fleet, licenses, record),
    )  # fmt: skip
    everyone = np.arange(fleet.size, dtype=np.int64)
    at_start = np.zeros(fleet.size)
    offered = held_at_start(
        scenario, licenses, fleet.sites.first, run.posted.at(fleet.site, at_start)
    )
    _complete(run, everyone, at_start, np.ones(fleet.size, dtype=np.bool_), offered)
    run.tally.start(run.phones)
    pending_events = [e for e in scenario.events if not isinstance(e, ServerDown)]
    events = [((e.at - origin).total_seconds(), e) for e in pending_events]
    while True:
        upcoming = events[0][0] if events else INF
        due, kind = _due(run)
        t = float(due.min()) if due.shape[0] else INF
        if min(t, upcoming) >= run.horizon_s:
            break
        if upcoming <= t:
            _apply(run, *events.pop(0))
            continue
        end = min(t + STEP_S, upcoming, run.horizon_s)
        chosen = np.nonzero(due < end)[0]
        _step(run, chosen, due[chosen], kind[chosen], end)
    run.tally.finish(run.phones)
    return run


def _due(run: Run) -> tuple[F64, I64]:
    p = run.phones
    notify = run.notices[-1].at_s if run.notices else np.full(p.size, INF)
    stack = np.vstack([p.next_r4_s, p.next_config_s, notify, p.pending_s])
    kind = np.argmin(stack, axis=0)
    return stack[kind, np.arange(p.size)], kind + 1


def _apply(run: Run, at: float, event: object) -> None:
    if isinstance(event, ConfigChange):
        chosen = _site_mask(run, event.sites)
        run.site_config[chosen] += 1
        phones = np.nonzero(chosen[run.fleet.site])[0]
        after = np.maximum(run.phones.boot_end_s[phones], at)
        run.phones.next_config_s[phones] = next_config_poll(run.fleet, run.phones, phones, after)
    elif isinstance(event, Rollout):
        notices = plan_notices(run.scenario, run.fleet, event, _site_mask(run, event.sites))
        if run.notices:  # one rollout at a time per phone: the later plan replaces what is left
            left = np.isfinite(run.notices[-1].at_s) & ~np.isfinite(notices.at_s)
            notices.at_s[left] = run.notices[-1].at_s[left]
        run.notices.append(notices)
        run.tally.rollout(event, notices, run.posted, run.fleet)


def _site_mask(run: Run, serials: tuple[str, ...] | None) -> npt.NDArray[np.bool_]:
    names = run.fleet.sites.serials
    if serials is None:
        return np.ones(len(names), dtype=np.bool_)
    wanted = set(serials)
    return np.array([s in wanted for s in names], dtype=np.bool_)


def _step(run: Run, phones: I64, due: F64, kind: I64, end: float) -> None:
    p, fleet = run.phones, run.fleet
    site = fleet.site[phones]
    asks = np.zeros(phones.shape[0], dtype=np.bool_)
    cause = np.zeros(phones.shape[0], dtype=np.int64)
    # R4: the daily check found a lapsed feature (only set when it will)
    r4 = kind == R4
    p.next_r4_s[phones[r4]] = INF
    asks |= r4 & ~np.isfinite(p.pending_s[phones])
    cause[r4] = Cause.LICENSE_EXPIRED
    # a configuration poll after a change: reboots when it has not seen the change
    cfg = kind == CONFIG
    p.next_config_s[phones[cfg]] = INF
    changed = run.site_config[site] > p.seen_config[phones]
    asks |= cfg & changed & ~np.isfinite(p.pending_s[phones])
    cause[cfg] = Cause.CONFIG_CHANGED
    # check-sync (R9)
    note = kind == NOTIFY
    if note.any():
        notices = run.notices[-1]
        notices.at_s[phones[note]] = INF
        booting = (p.requested_s[phones] <= due) & (due < p.boot_end_s[phones])
        busy = check_sync_absorbed(booting, np.isfinite(p.pending_s[phones]))
        always = fleet.sites.always_reboot[site]
        go = note & check_sync_reboots(busy, notices.reboot, always, changed)
        asked = check_sync_reboots(busy, notices.reboot, always, False)
        run.tally.check_syncs(note & busy, go & ~asked)
        asks |= go
        cause[note] = Cause.CHECK_SYNC
    # a reboot that waited for calls goes now; an ask goes when the phone is idle (R4: never
    # during a call), in this step or as a pending reboot later
    waited = kind == PENDING
    starts = np.where(waited, due, INF)
    if asks.any():
        ask = np.nonzero(asks)[0]
        key = fleet.key[phones[ask]]
        chance = fleet.sites.call_chance[site[ask]]
        mean = fleet.sites.call_mean_s[site[ask]]
        idle = idle_from(key, due[ask], chance, mean)
        starts[ask] = idle
        p.requested_s[phones[ask]] = due[ask]
        p.pending_cause[phones[ask]] = cause[ask]
        p.pending_s[phones[ask]] = idle
        run.tally.deferred(int(np.count_nonzero(idle > due[ask])))
    go_now = starts < end
    chosen = phones[go_now]
    if chosen.shape[0] == 0:
        return
    begin = starts[go_now]
    # phones that ask in the same instant (a storm at 02:00:00) reach the server in no
    # particular order: a hash breaks the tie, so one site is not served wholly before another
    shuffle = mix(fleet.key[chosen] + p.boots[chosen].astype(np.uint64))
    order = np.lexsort((shuffle, begin))
    chosen, begin = chosen[order], begin[order]
    p.pending_s[chosen] = INF
    p.next_r4_s[chosen] = INF
    p.next_config_s[chosen] = INF
    p.boot_start_s[chosen] = begin
    p.seen_config[chosen] = run.site_config[fleet.site[chosen]]
    run.tally.reboots(chosen, begin, p.pending_cause[chosen], p.requested_s[chosen])
    admission = run.queue.admit(begin)
    _complete(run, chosen, admission.ends, admission.served)


def _complete(
    run: Run, chosen: I64, ends: F64, reached: npt.NDArray[np.bool_], offered: I64 | None = None
) -> None:
    """The end of each boot: the downloads (R2, R5-R7), what is valid (R1), R8, the timers;
    ``offered``: the license each boot downloads (default: what its site's server offers)."""
    p, fleet, cal = run.phones, run.fleet, run.fleet.calendar
    site = fleet.site[chosen]
    zone = fleet.sites.tz[site]
    finite = np.isfinite(ends)
    at = np.where(finite, ends, run.horizon_s)
    today = cal.base + cal.day_of(zone, at)
    before = p.held_at(chosen, at)
    run.tally.cancel_drops(chosen, p, at)
    phone_mask = fleet.sites.phone_mask[site]
    offered = run.posted.at(site, at) if offered is None else offered
    outcome = boot_downloads(
        run.licenses, p.installed[chosen], offered, phone_mask, today, reached & finite
    )
    p.boot_end_s[chosen] = at
    p.boots[chosen] += 1
    p.installed_at_s[chosen] = np.where(outcome.changed, at, p.installed_at_s[chosen])
    p.installed[chosen] = outcome.installed
    p.valid_at_boot[chosen] = outcome.valid
    p.expired_boot[chosen] = outcome.booted_with_expired
    p.held[chosen] = outcome.valid
    run.tally.change(chosen, at, before, outcome.valid)
    # the next feature to lapse: local midnight after the site key's last day
    lapsing = run.licenses.site_mask(outcome.installed) & ~phone_mask & outcome.valid
    last = run.licenses.last(outcome.installed)
    drop_day = last + 1 - cal.base
    drop_at = np.where(lapsing != 0, _midnight(run, zone, drop_day), INF)
    p.drop_at_s[chosen] = drop_at
    p.drop_mask[chosen] = lapsing
    run.tally.schedule_drops(chosen, drop_at, outcome.valid, lapsing)
    # R3/R4: the first daily check on or after that day, unless it booted expired (R8)
    reboots = lapse_reboots(outcome.valid, outcome.valid & ~lapsing, outcome.booted_with_expired)
    watch = reboots & np.isfinite(drop_at)
    _, day = cal.next_at(fleet.sites.license_time[site], zone, at)
    r4 = cal.local_at(fleet.sites.license_time[site], lapse_check_day(day, drop_day))
    p.next_r4_s[chosen] = np.where(watch & finite, r4, INF)
    # a change the boot did not see (made while it booted): the next poll after it
    unseen = run.site_config[site] > p.seen_config[chosen]
    if unseen.any():
        idx = chosen[unseen]
        p.next_config_s[idx] = next_config_poll(fleet, p, idx, at[unseen])


def _midnight(run: Run, zone: npt.NDArray[np.int32], day: I64) -> F64:
    cal = run.fleet.calendar
    inside = (day >= 0) & (day < cal.midnight_s.shape[1])
    return np.where(inside, cal.midnight_s[zone, np.clip(day, 0, cal.midnight_s.shape[1] - 1)], INF)
