"""Planning a rollout of one posted license: its phones, the boot cost, capacity, deadline.

The default deadline is the day the license it succeeds expires, less a margin (two days), at
00:00 UTC: phones check expiry daily at ``license.polling.time`` (R3), so a successor installed
before that day keeps every feature without a gap.

Every plan leaves room for the load the other active rollouts of the store plan on the same
servers (``store/load.py``). :func:`plan_now` re-plans a saved rollout's pending phones from
now with the sites' windows ignored (``rollout run --now``), around the same load.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.rollout.plan import BootCost, Plan, PlanInput, SitePhones, plan_rollout
from fleetkey.errors import ConflictError, InputError
from fleetkey.store import bootdays, inventory, load, registry, rollouts, schedule
from fleetkey.store import capacity as capacities
from fleetkey.store.phonestate import seen_many
from fleetkey.store.records import StoredLicense
from fleetkey.store.rollouts import ACTIVE
from fleetkey.store.store import Store

MARGIN_DAYS: Final = 2


@dataclass(frozen=True, slots=True)
class PlanOptions:
    license_id: int
    capacity: float | None = None  # None: the newest measured capacity
    headroom: float = 0.7
    deadline: date | None = None
    slot_s: int = 60
    reboot: bool = True
    boot_requests: float | None = None  # overrides what the fetch records say
    boot_s: float | None = None


def plan_license(store: Store, clock: Clock, options: PlanOptions) -> Plan:
    """The plan for ``options``; raises with a clear message when inputs are missing."""
    with store.transaction() as session:
        successor = registry.get(session, options.license_id)
        if successor.state is not LicenseState.POSTED:
            raise ConflictError(
                f"license {successor.id} is {successor.state.value}; only a posted license can "
                "be rolled out",
                hint=f"post it first: `fleetkey licenses post {successor.id}`",
            )
        previous = registry.get(session, successor.succeeds_id) if successor.succeeds_id else None
        deadline = _deadline(options.deadline, previous, successor)
        sites = _sites(session, successor)
        cost = _cost(bootdays.boot_cost(session), options)
        capacity = options.capacity
        assumed = f"capacity {capacity:,.0f} requests/s, as given" if capacity else ""
        if capacity is None:
            capacity, assumed = _measured_capacity(
                session, [mac for site in sites for mac in site.macs]
            )
        start = clock.now().astimezone(UTC)
        busy = load.planned_loads(session, start, deadline)
    request = PlanInput(
        sites=tuple(sites),
        cost=cost,
        capacity=capacity,
        start=start,
        deadline=deadline,
        headroom=options.headroom,
        slot_s=options.slot_s,
        busy=tuple(busy),
    )
    plan = plan_rollout(request)
    return replace(plan, explanation=(assumed, *plan.explanation))


def _measured_capacity(session: Session, macs: Sequence[str]) -> tuple[float, str]:
    """The capacity a license rollout plans against, and the sentence that says which: the
    one over the protocol the phones (``macs``) boot over (store/capacity.py)."""
    booting = capacities.booting_over(
        Counter(s.protocol for s in seen_many(session, macs).values())
    )
    chosen = capacities.choose(session, booting, len(macs))
    if chosen is None:
        raise InputError(
            "no capacity was given and none has been measured",
            field="capacity",
            hint="measure the server's capacity with `fleetkey capacity measure --server URL` "
            "(then plan again), or give what it takes: --capacity REQ_PER_S",
        )
    measured = chosen.measurement
    what = (
        "boots that download no firmware, as this rollout's do"
        if measured.storm == capacities.LICENSE_LAPSE
        else "boots that download the firmware: this rollout's cost less, so the plan is cautious"
    )
    return measured.requests_per_s, (
        f"capacity {measured.requests_per_s:,.0f} requests/s, measured "
        f"{measured.at:%Y-%m-%d %H:%M} UTC against {measured.target} in a {measured.storm} "
        f"storm ({what}), {chosen.over}"
    )


def served_license(session: Session, rollout: rollouts.Rollout) -> StoredLicense:
    """The license ``rollout`` sends phones to fetch, while it is the posted one. Once it is
    not (rolled back, replaced, revoked), no check-sync could be confirmed, since the server no
    longer serves it: ConflictError, saying what to do instead."""
    license_ = registry.get(session, rollout.license_id)
    if license_.state is not LicenseState.POSTED:
        raise ConflictError(
            f"rollout {rollout.id} rolls out license {license_.id}, which is "
            f"{license_.state.value}: the server no longer serves it, so no phone could confirm it",
            hint=f"cancel it with `fleetkey rollout cancel {rollout.id}` and plan a rollout of "
            f"the key posted for {license_.serial} (`fleetkey licenses list`)",
        )
    return license_


def plan_now(store: Store, clock: Clock, actor: str, rollout_id: int) -> Plan | None:
    """Override the sites' maintenance windows for a rollout until it is paused or ends
    (every executor of it then ignores them) and re-time its pending phones from now, at its
    capacity and beside the other rollouts' load; audited (``rollout.now``). The plan, or None
    when no phone is pending. The rollout's deadline is kept when it leaves time; when it has
    passed (or is too close), the phones go as soon as the capacity allows."""
    with store.transaction() as session:
        rollout = rollouts.get(session, rollout_id)
        if rollout.state not in ACTIVE:
            raise ConflictError(
                f"rollout {rollout_id} is {rollout.state}; --now runs a planned, paused or "
                "running rollout"
            )
        served_license(session, rollout)
        schedule.ignore_windows(session, clock, rollout_id)
        waiting = schedule.pending(session, rollout_id)
        if not waiting:
            return None
        zones = {site.serial: site.timezone for site in inventory.sites(session)}
        groups: dict[str, list[str]] = {}
        for mac, site in waiting:
            groups.setdefault(site, []).append(mac)
        now = clock.now().astimezone(UTC)
        fastest = len(waiting) / rollout.notifies_per_second + rollout.slot_s + rollout.boot_s
        deadline = max(rollout.deadline, now + timedelta(seconds=2 * fastest + 3600))
        request = PlanInput(
            sites=tuple(
                SitePhones(site, zones.get(site, "UTC"), None, tuple(macs))
                for site, macs in sorted(groups.items())
            ),
            cost=BootCost(rollout.boot_requests, 0.0, rollout.boot_s, "as planned"),
            capacity=rollout.capacity,
            start=now,
            deadline=deadline,
            headroom=rollout.headroom,
            slot_s=rollout.slot_s,
            busy=tuple(load.planned_loads(session, now, deadline, exclude=rollout_id)),
        )
        made = plan_rollout(request)
        times = [
            (mac, number, wave.notify_at(index))
            for number, wave in enumerate(made.waves)
            for index, mac in enumerate(wave.macs)
        ]
        schedule.retime(
            session,
            clock,
            actor,
            rollout,
            times,
            {
                "first": times[0][2].isoformat(),
                "last": times[-1][2].isoformat(),
                "deadline": rollout.deadline.isoformat(),
                "deadline_passed": rollout.deadline <= made.finish,
            },
        )
    return made


def save(store: Store, clock: Clock, actor: str, options: PlanOptions, plan: Plan) -> int:
    targets = [
        rollouts.PlannedTarget(mac, wave.site, number, wave.notify_at(index))
        for number, wave in enumerate(plan.waves)
        for index, mac in enumerate(wave.macs)
    ]
    request = plan.input
    with store.transaction() as session:
        rollout = rollouts.create(
            session,
            clock,
            actor,
            license_id=options.license_id,
            reboot=options.reboot,
            capacity=request.capacity,
            headroom=request.headroom,
            slot_s=request.slot_s,
            boot_requests=request.cost.requests,
            boot_s=request.cost.seconds,
            deadline=request.deadline,
            explanation=plan.explanation,
            targets=targets,
        )
    return rollout.id


def _cost(measured: BootCost, options: PlanOptions) -> BootCost:
    if options.boot_requests is None and options.boot_s is None:
        return measured
    given = []
    if options.boot_requests is not None:
        given.append(f"{options.boot_requests:g} requests")
    if options.boot_s is not None:
        given.append(f"{options.boot_s:g} s")
    return replace(
        measured,
        requests=measured.requests if options.boot_requests is None else options.boot_requests,
        seconds=measured.seconds if options.boot_s is None else options.boot_s,
        source=f"given: {', '.join(given)}; otherwise {measured.source}",
    )


def _deadline(
    chosen: date | None, previous: StoredLicense | None, successor: StoredLicense
) -> datetime:
    if chosen is not None:
        return datetime.combine(chosen, time(0), UTC)
    if previous is None or previous.expires_on is None:
        raise InputError(
            f"license {successor.id} succeeds no expiring license: the rollout needs a deadline",
            field="deadline",
        )
    return datetime.combine(previous.expires_on - timedelta(days=MARGIN_DAYS), time(0), UTC)


def _sites(session: Session, successor: StoredLicense) -> list[SitePhones]:
    known = {site.serial: site for site in inventory.sites(session)}
    if successor.type is LicenseType.SITE:
        phones = inventory.macs(session, successor.serial)
        if successor.serial not in known or not phones:
            raise InputError(
                f"site {successor.serial} has no phones in the inventory to roll out to"
            )
        groups = {successor.serial: phones}
    else:
        phone = inventory.phone(session, successor.serial)
        groups = {phone.site: [phone.mac]}
    return [
        SitePhones(
            serial,
            known[serial].timezone,
            known[serial].window,
            tuple(macs),
        )
        for serial, macs in groups.items()
    ]
