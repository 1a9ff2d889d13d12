"""The rollout planner: phones, a per-boot cost, a capacity and a deadline in; waves out.

A *wave* is one site's check-syncs in one slot of the plan's grid (``slot_s`` long). The
executor spaces a wave's NOTIFYs evenly over its slot, so a slot with ``n`` phones puts
``n x requests_per_boot / slot_s`` requests per second on the server. The planner keeps that
at or below ``capacity x headroom`` in every slot, starts a wave only where its slot *and the boots
it starts* (``boot_s`` more) lie inside the site's maintenance window, and finishes before
the deadline. Slots are filled in time order; within a slot the site whose current window closes
first goes first (earliest deadline first), sites and MACs in sorted order, so the same input
gives the same plan. If phones are left over, :class:`PlanInfeasibleError` says which, and what
capacity or how many more window-hours would have been needed.

The server is shared: ``busy`` is the load other rollouts already plan on it; a slot carries
only what the budget leaves above them (:mod:`fleetkey.core.rollout.sharing`), on the slot grid
every plan shares.

Pure: no I/O, no clock; the caller passes ``start``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from fleetkey.core.rollout.sharing import Load, grid_start, peak_by_slot, room_by_slot
from fleetkey.core.rollout.windows import Window, open_intervals
from fleetkey.errors import InputError, PlanInfeasibleError

MAX_SLOTS: Final = 5_000_000  # 58 days at 1-second slots: a few seconds of filling at worst
SHOWN: Final = 10  # sites named in an infeasibility message


@dataclass(frozen=True, slots=True)
class SitePhones:
    serial: str
    timezone: str
    window: Window | None  # None: the window is not kept (``rollout run --now``)
    macs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BootCost:
    """What one boot costs the server: requests, bytes, seconds from check-sync to last request."""

    requests: float
    bytes: float
    seconds: float
    source: str


@dataclass(frozen=True, slots=True)
class PlanInput:
    sites: tuple[SitePhones, ...]
    cost: BootCost
    capacity: float  # requests per second the server sustains
    start: datetime
    deadline: datetime
    headroom: float = 0.7
    slot_s: int = 60
    busy: tuple[Load, ...] = ()

    def check(self) -> None:
        if not self.capacity > 0:
            raise InputError(f"capacity must be above 0 requests/s, not {self.capacity}")
        if not 0 < self.headroom <= 1:
            raise InputError(f"headroom must be in (0, 1], not {self.headroom}")
        if self.slot_s < 1:
            raise InputError(f"a slot must be at least 1 second, not {self.slot_s}")
        if not self.cost.requests > 0 or self.cost.seconds < 0 or self.cost.bytes < 0:
            raise InputError(f"a boot must cost at least one request ({self.cost})")
        if self.deadline <= self.start:
            raise InputError(f"the deadline {self.deadline:%Y-%m-%d %H:%M} UTC has passed")
        if (self.deadline - self.start).total_seconds() / self.slot_s > MAX_SLOTS:
            raise InputError(
                f"{self.slot_s}-second slots to {self.deadline:%Y-%m-%d} are more than "
                f"{MAX_SLOTS:,}; use longer slots"
            )

    @property
    def per_slot(self) -> int:
        """Check-syncs one slot may hold so that its load stays within capacity x headroom."""
        return math.floor(self.capacity * self.headroom * self.slot_s / self.cost.requests)

    @property
    def origin(self) -> datetime:
        """Slot 0: the start of the grid slot that holds ``start`` (the first slot used is
        the first that starts at or after ``start``)."""
        return grid_start(self.start, self.slot_s)

    def slot_start(self, index: int) -> datetime:
        return self.origin + timedelta(seconds=self.slot_s * index)

    def busy_by_slot(self) -> dict[int, float]:
        """Slot index → the highest request rate of the other rollouts during that slot."""
        return peak_by_slot(self.busy, self.origin, self.slot_s, self.deadline)


@dataclass(frozen=True, slots=True)
class Wave:
    start: datetime
    end: datetime
    site: str
    macs: tuple[str, ...]

    def notify_at(self, index: int) -> datetime:
        """When the ``index``-th phone of the wave is notified: evenly over the slot."""
        step = (self.end - self.start) / len(self.macs)
        return self.start + step * index + step / 2


@dataclass(frozen=True)
class Plan:
    input: PlanInput
    waves: tuple[Wave, ...]
    explanation: tuple[str, ...] = field(default=())
    busy_peak: float = 0.0  # the others' highest load in the slots this plan uses

    @property
    def phones(self) -> int:
        return sum(len(wave.macs) for wave in self.waves)

    @property
    def finish(self) -> datetime:
        boot = timedelta(seconds=self.input.cost.seconds)
        return max((wave.end for wave in self.waves), default=self.input.start) + boot

    def slot_loads(self) -> list[tuple[datetime, float]]:
        """Predicted requests per second in each used slot, in time order."""
        phones: dict[datetime, int] = {}
        for wave in self.waves:
            phones[wave.start] = phones.get(wave.start, 0) + len(wave.macs)
        rate = self.input.cost.requests / self.input.slot_s
        return [(start, count * rate) for start, count in sorted(phones.items())]

    @property
    def peak_load(self) -> float:
        return max((load for _, load in self.slot_loads()), default=0.0)


def plan_rollout(request: PlanInput) -> Plan:
    """Waves for every phone of ``request``, or :class:`PlanInfeasibleError`."""
    request.check()
    sites = sorted(request.sites, key=lambda site: site.serial)
    ranges = [_slot_ranges(request, site) for site in sites]
    per_slot = request.per_slot
    if per_slot < 1:
        raise PlanInfeasibleError(
            f"one boot costs {request.cost.requests:g} requests, more than a "
            f"{request.slot_s}-second slot may carry at {request.capacity:g} req/s x "
            f"{request.headroom:g}; use longer slots or more capacity",
            {site.serial: len(site.macs) for site in sites},
            request.cost.requests / request.headroom / request.slot_s,
        )
    busy = request.busy_by_slot()
    exact = request.capacity * request.headroom * request.slot_s / request.cost.requests
    counts, left = _fill(
        ranges, [len(site.macs) for site in sites], per_slot, _reduced(request, busy, exact)
    )
    if any(left):
        raise _infeasible(request, sites, ranges, left, busy)
    waves = _waves(request, sites, counts)
    peak = max((busy.get(slot, 0.0) for slot in counts), default=0.0)
    plan = Plan(request, waves, busy_peak=peak)
    return Plan(request, waves, _explain(plan, len(sites)), peak)


def _reduced(request: PlanInput, busy: dict[int, float], per_slot: float) -> dict[int, int]:
    return room_by_slot(busy, per_slot, request.slot_s, request.cost.requests)


def _slot_ranges(request: PlanInput, site: SitePhones) -> list[tuple[int, int]]:
    """Inclusive ranges of slot indices whose wave and boots fit in one window opening."""
    slot = request.slot_s
    origin = request.origin
    tail = slot + request.cost.seconds  # the slot, then the last boot it starts
    last_slot = math.floor(((request.deadline - origin).total_seconds() - tail) / slot)
    if site.window is None:
        openings = [(request.start, request.deadline)]
    else:
        openings = open_intervals(site.window, site.timezone, request.start, request.deadline)
    ranges = []
    for lo, hi in openings:
        first = math.ceil((lo - origin).total_seconds() / slot)
        last = min(math.floor(((hi - origin).total_seconds() - tail) / slot), last_slot)
        if first <= last:
            ranges.append((first, last))
    return ranges


def _fill(
    ranges: list[list[tuple[int, int]]],
    demand: list[int],
    per_slot: int,
    reduced: dict[int, int],
) -> tuple[dict[int, list[tuple[int, int]]], list[int]]:
    """Slot index → [(site index, phones)], and the phones left per site."""
    left = list(demand)
    openings = sorted(
        (first, last, site) for site, spans in enumerate(ranges) for first, last in spans
    )
    counts: dict[int, list[tuple[int, int]]] = {}
    active: list[tuple[int, int]] = []  # (last slot of the current opening, site)
    following = 0
    slot = openings[0][0] if openings else 0
    while following < len(openings) or active:
        if not active:
            slot = max(slot, openings[following][0])
        while following < len(openings) and openings[following][0] <= slot:
            _, last, site = openings[following]
            if left[site]:
                heapq.heappush(active, (last, site))
            following += 1
        room = reduced.get(slot, per_slot)
        again = []
        while room and active:
            last, site = heapq.heappop(active)
            if last < slot or not left[site]:
                continue
            take = min(room, left[site])
            counts.setdefault(slot, []).append((site, take))
            left[site] -= take
            room -= take
            if left[site]:
                again.append((last, site))
        for entry in again:
            heapq.heappush(active, entry)
        while active and (active[0][0] < slot + 1 or not left[active[0][1]]):
            heapq.heappop(active)  # closed, or done: a full slot must not keep them
        slot += 1
    return counts, left


def _waves(
    request: PlanInput, sites: list[SitePhones], counts: dict[int, list[tuple[int, int]]]
) -> tuple[Wave, ...]:
    macs = [sorted(site.macs) for site in sites]
    taken = [0] * len(sites)
    length = timedelta(seconds=request.slot_s)
    waves = []
    for slot in sorted(counts):
        start = request.slot_start(slot)
        for site, count in counts[slot]:
            chunk = tuple(macs[site][taken[site] : taken[site] + count])
            taken[site] += count
            waves.append(Wave(start, start + length, sites[site].serial, chunk))
    return tuple(waves)


def _infeasible(
    request: PlanInput,
    sites: list[SitePhones],
    ranges: list[list[tuple[int, int]]],
    left: list[int],
    busy: dict[int, float],
) -> PlanInfeasibleError:
    stranded = {sites[i].serial: n for i, n in enumerate(left) if n}
    never = [sites[i] for i, n in enumerate(left) if n and not ranges[i]]
    lines = [f"{sum(left):,} of {sum(len(s.macs) for s in sites):,} phones do not fit before "
             f"{request.deadline:%Y-%m-%d %H:%M} UTC:"]  # fmt: skip
    for site in never:
        where = "the time left" if site.window is None else (
            f"its window {site.window} ({site.timezone})"
        )  # fmt: skip
        lines.append(
            f"  site {site.serial}: {where} never holds a "
            f"{request.slot_s}-s slot plus a {request.cost.seconds:g}-s boot before the "
            "deadline; widen the window or move the deadline"
        )
    demand = [len(s.macs) for s in sites]
    needed = None if never else _needed_capacity(request, ranges, demand, busy)
    short = sorted((n, sites[i].serial) for i, n in enumerate(left) if n and ranges[i])
    for count, serial in sorted(short, reverse=True)[:SHOWN]:
        lines.append(f"  site {serial}: {count:,} phones left")
    if len(short) > SHOWN:
        lines.append(f"  … and {len(short) - SHOWN:,} more sites")
    if short:
        hours = sum(n for n, _ in short) * request.cost.requests / request.capacity
        lines.append(
            f"  at {request.capacity:,g} req/s x {request.headroom:g} they need "
            f"{hours / request.headroom / 3600:,.1f} more hours of open windows before the deadline"
        )
    others, s = _others(request)
    if busy:
        lines.append(
            f"  {others} already plan{s} up to {max(busy.values()):,.1f} req/s on the same "
            "server before the deadline, and this plan has only what they leave"
        )
    if needed is not None:
        lines.append(
            f"  a capacity of {needed:,.0f} req/s (x headroom {request.headroom:g}) would fit "
            "every phone in the windows as they are"
            + (", beside the other rollouts" if busy else "")
        )
    return PlanInfeasibleError("\n".join(lines), stranded, needed)


def _needed_capacity(
    request: PlanInput,
    ranges: list[list[tuple[int, int]]],
    demand: list[int],
    busy: dict[int, float],
) -> float:
    """The least capacity (within one check-sync a slot) at which the same windows hold every
    phone, beside the same load of other rollouts."""
    scale = request.headroom * request.slot_s / request.cost.requests

    def fits(per_slot: int) -> bool:
        return not any(_fill(ranges, demand, per_slot, _reduced(request, busy, per_slot))[1])

    taken = max(busy.values(), default=0.0) * request.slot_s / request.cost.requests
    low, high = max(request.per_slot, 1), max(sum(demand), 1) + math.ceil(taken)
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    return low / scale


def _others(request: PlanInput) -> tuple[str, str]:
    """Who the other rollouts are, and the ending of a verb they are the subject of."""
    ids = sorted({load.rollout for load in request.busy if load.rollout is not None})
    if len(ids) == 1:
        return f"rollout {ids[0]}", "s"
    return ("rollouts " + ", ".join(map(str, ids)) if ids else "other rollouts"), ""


def _explain(plan: Plan, site_count: int) -> tuple[str, ...]:
    request, cost = plan.input, plan.input.cost
    budget = request.capacity * request.headroom
    slack = request.deadline - plan.finish
    windowed = any(site.window is not None for site in request.sites)
    lines = [
        f"{plan.phones:,} phones at {site_count} site(s); one boot costs {cost.requests:.1f} "
        f"requests, {cost.bytes / 1000:,.1f} kB and {cost.seconds:.0f} s ({cost.source})",
        f"capacity {request.capacity:,g} req/s x headroom {request.headroom:g} = {budget:,.0f} "
        f"req/s → at most {request.per_slot:,} check-syncs per {request.slot_s}-s slot, "
        "spaced evenly",
        "waves start only where the slot and the boots it starts lie inside the site's "
        "maintenance window; the window closing first is served first"
        if windowed
        else "maintenance windows are not kept (sent now, on the operator's word)",
    ]
    others, s = _others(request)
    if plan.busy_peak > 0:
        lines.append(
            f"{others} already plan{s} up to {plan.busy_peak:,.1f} req/s in the slots "
            f"this plan uses: it takes only what is left of the {budget:,.0f} req/s"
        )
    elif request.busy:
        lines.append(f"{others} plan{s} other hours: no slot is shared")
    lines.append(
        f"{len(plan.waves):,} wave{'' if len(plan.waves) == 1 else 's'}; predicted peak "
        f"{plan.peak_load:,.1f} req/s; last boot done "
        f"{plan.finish:%Y-%m-%d %H:%M} UTC, {_span(slack)} before the deadline "
        f"{request.deadline:%Y-%m-%d %H:%M} UTC"
    )
    return tuple(lines)


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"
