"""Planning a rollout of one posted license: its phones, the boot cost, capacity, deadline.

The default deadline is the day the license it succeeds expires, less a margin (two days), at
00:00 UTC: phones check expiry daily at ``license.polling.time`` (R3), so a successor installed
before that day keeps every feature without a gap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.rollout.cost import measure
from fleetkey.core.rollout.plan import BootCost, Plan, PlanInput, SitePhones, plan_rollout
from fleetkey.errors import InputError
from fleetkey.store import capacity as capacities
from fleetkey.store import fetches, inventory, registry, rollouts
from fleetkey.store.records import StoredLicense
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
            raise InputError(
                f"license {successor.id} is {successor.state.value}; only a posted license can "
                f"be rolled out (fleetkey licenses post {successor.id})"
            )
        previous = registry.get(session, successor.succeeds_id) if successor.succeeds_id else None
        deadline = _deadline(options.deadline, previous, successor)
        sites = _sites(session, successor)
        cost = _cost(measure(fetches.recent_requests(session)), options)
        capacity = options.capacity
        if capacity is None:
            measured = capacities.latest(session)
            if measured is None:
                raise InputError(
                    "no capacity was given and none has been measured",
                    field="capacity",
                    hint="measure the server's capacity with `fleetkey capacity measure`",
                )
            capacity = measured.requests_per_s
    request = PlanInput(
        sites=tuple(sites),
        cost=cost,
        capacity=capacity,
        start=clock.now().astimezone(UTC),
        deadline=deadline,
        headroom=options.headroom,
        slot_s=options.slot_s,
    )
    return plan_rollout(request)


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
