"""A rollout event as check-sync times: the rollout planner's waves, phone by phone.

The plan is the planner's own (``core/rollout/plan.plan_rollout``) over the scenario's sites,
windows, boot cost, capacity and headroom, from the event's start to its deadline. Phones are
numbered in MAC order within a site, as the planner sorts them, so the ``i``-th MAC of a wave is
a phone index without a lookup, and its check-sync comes at ``Wave.notify_at(i)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetkey.core.rollout.plan import BootCost, PlanInput, SitePhones, plan_rollout
from fleetkey.core.rollout.windows import Window
from fleetkey.simulate.fleet import Fleet
from fleetkey.simulate.scenario import Rollout, Scenario

F64 = npt.NDArray[np.float64]


@dataclass
class Notices:
    at_s: F64  # per phone: its check-sync, seconds since the start (inf: none left)
    reboot: bool  # ;reboot=true
    phones: npt.NDArray[np.int64]  # the phones the plan covers
    finish_s: float  # the planner's predicted last boot done, seconds since the start
    peak_per_s: float  # the planner's predicted peak
    planned_s: F64  # ``at_s`` as planned (``at_s`` is spent as the check-syncs go out)


def plan_notices(
    scenario: Scenario, fleet: Fleet, event: Rollout, chosen: npt.NDArray[np.bool_]
) -> Notices:
    sites = fleet.sites
    indices = [int(i) for i in np.nonzero(chosen)[0]]
    plan = event.plan or plan_rollout(_plan_input(scenario, fleet, event, indices))
    index = {serial: i for i, serial in enumerate(sites.serials)}
    by_serial = {site.serial: index[site.serial] for site in plan.input.sites}
    at = np.full(fleet.size, np.inf)
    taken = dict.fromkeys(by_serial, 0)
    origin = scenario.start
    for wave in plan.waves:
        site = by_serial[wave.site]
        count = len(wave.macs)
        step = (wave.end - wave.start).total_seconds() / count
        begin = (wave.start - origin).total_seconds()
        phones = int(sites.first[site]) + taken[wave.site] + np.arange(count)
        at[phones] = begin + step * np.arange(count) + step / 2
        taken[wave.site] += count
    covered = np.nonzero(np.isfinite(at))[0]  # MACs in sorted order are phones in index order
    finish = (plan.finish - origin).total_seconds()
    return Notices(at, event.reboot, covered, finish, plan.peak_load, at.copy())


def _plan_input(scenario: Scenario, fleet: Fleet, event: Rollout, indices: list[int]) -> PlanInput:
    sites, server = fleet.sites, scenario.server
    site_phones = []
    for i in indices:
        first, last = int(sites.first[i]), int(sites.first[i + 1])
        window = sites.windows[i]
        site_phones.append(
            SitePhones(
                sites.serials[i],
                sites.timezones[i],
                window if isinstance(window, Window) else None,
                tuple(fleet.mac(phone) for phone in range(first, last)),
            )
        )
    return PlanInput(
        tuple(site_phones),
        BootCost(server.boot_requests, 0.0, server.boot_s, "the scenario's [server]"),
        server.capacity_per_s,
        event.at,
        event.deadline,
        headroom=server.headroom,
    )
