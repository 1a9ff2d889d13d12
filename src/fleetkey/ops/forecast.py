"""Forecasts from the simulator: the storm forecast of ``fleetkey alerts`` and the rollout
plan's prediction under calls (``fleetkey rollout plan --calls-per-hour``).

``core/alerts`` says which posted site licenses lapse soon and that their phones will reboot
together at the first daily check after (R3/R4), estimating each site's peak as its phones'
requests spread over one boot. That holds for a site alone with a server of infinite
capacity; what happens is that every phone checks at the same local second, sites in one time
zone storm in the same minute, and the server answers them at its capacity while the rest
wait. This runs the lapsing sites through :mod:`fleetkey.simulate` (their phones, time zones,
``license.polling.time``, the measured boot cost and capacity; no calls, which is the worst
case) and rewrites each storm alert with what came out: the requests that arrive in its
minute with every site that storms then, when the last phone is answered, the longest boot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import numpy as np

from fleetkey.core.alerts import Alert, LicenseFacts, Snapshot
from fleetkey.core.device.config import ConfigPolling
from fleetkey.core.rollout.plan import Plan
from fleetkey.ops.storefleet import site_group
from fleetkey.simulate.scenario import Post, Rollout, Scenario, Server, SiteGroup, SiteLicense
from fleetkey.simulate.simulation import Run, simulate

UNMEASURED: Final = 1e9  # requests/s when no capacity is known: every request answered at once


def forecast_storms(alerts: list[Alert], snapshot: Snapshot) -> list[Alert]:
    """``alerts`` with each storm alert's forecast simulated (the others unchanged).

    One site is one site of the scenario: when two posted site licenses of a site lapse, its
    phones keep the longer (R7) and storm when that one lapses; the alert of the other is left
    as ``core/alerts`` estimated it."""
    licenses = {facts.id: facts for facts in snapshot.licenses}
    storms = [a for a in alerts if a.kind == "storm" and a.details.get("license") in licenses]
    if not storms:
        return alerts
    kept: dict[str, LicenseFacts] = {}
    for alert in storms:
        facts = licenses[alert.details["license"]]
        held = kept.get(facts.serial)
        if held is None or _outlasts(facts, held):
            kept[facts.serial] = facts
    # one server answers every lapsing site in the simulation: at the capacity configured,
    # else the lowest of those measured over what each site's phones boot over
    sites = {site.serial: site for site in snapshot.sites}
    measured = [c for f in kept.values() if (c := sites[f.serial].capacity) is not None]
    snapshot = replace(snapshot, capacity=snapshot.capacity or min(measured, default=None))
    run = simulate(_scenario(list(kept.values()), snapshot))
    index = {serial: i for i, serial in enumerate(run.fleet.sites.serials)}
    refined = {
        a.key: _refined(a, run, index[licenses[a.details["license"]].serial], snapshot)
        for a in storms
        if kept[licenses[a.details["license"]].serial].id == a.details["license"]
    }
    return [refined.get(alert.key, alert) for alert in alerts]


def _outlasts(facts: LicenseFacts, other: LicenseFacts) -> bool:
    """R7 between two site licenses of one site: the later last day is kept (a tie: the newer)."""
    ends = (facts.expires_on or date.max, facts.id)
    return ends > (other.expires_on or date.max, other.id)


def _scenario(lapsing: list[LicenseFacts], snapshot: Snapshot) -> Scenario:
    sites = {site.serial: site for site in snapshot.sites}
    days = [facts.expires_on for facts in lapsing if facts.expires_on is not None]
    start = datetime.combine(min(days) - timedelta(days=1), time(0, 0), UTC)
    groups, licenses, posts = [], {}, []
    for facts in lapsing:
        site = sites[facts.serial]
        name = f"license {facts.id}"
        groups.append(
            SiteGroup(
                serial=facts.serial,
                count=1,
                phones=site.size,
                timezones=(site.timezone,),
                window=None,
                license_polling_time=snapshot.polling_time,
                polling=ConfigPolling(),
                always_reboot=False,
                calls_per_hour=0.0,
                call_minutes=0.0,
                phone_slots=frozenset(),
            )
        )
        licenses[name] = SiteLicense(name, frozenset(facts.terms), facts.expires_on)
        posts.append(Post(start, name, (facts.serial,)))
    capacity = snapshot.capacity or UNMEASURED
    server = Server(capacity, 1.0, snapshot.boot_requests, snapshot.boot_s)
    span = (max(days) - min(days)).days + 3
    return Scenario("storm forecast", start, span, tuple(groups), licenses, tuple(posts), server)


def _refined(alert: Alert, run: Run, index: int, snapshot: Snapshot) -> Alert:
    phones = slice(int(run.fleet.sites.first[index]), int(run.fleet.sites.first[index + 1]))
    begin, end = run.phones.boot_start_s[phones], run.phones.boot_end_s[phones]
    if not begin.shape[0] or not np.any(begin > 0):
        return alert
    origin = run.scenario.start
    minute = int(begin.min() // 60)
    arriving = float(run.queue.offered_per_min[minute])
    together = int(np.count_nonzero((run.phones.boot_start_s // 60).astype(np.int64) == minute))
    last = origin + timedelta(seconds=float(end.max()))
    longest = float((end - begin).max())
    at = origin + timedelta(minutes=minute)
    measured = snapshot.capacity is not None
    rate = arriving / 60  # requests per second over the storm's minute
    severity = "critical" if measured and longest > snapshot.boot_s * 2 else alert.severity
    others = together - (phones.stop - phones.start)
    with_others = f" with {others:,} phones of other sites" if others > 0 else ""
    over = alert.details.get("capacity_over")
    if alert.details.get("capacity") != snapshot.capacity:
        over = "the lowest of the lapsing sites', one server answering them all"
    served = (
        f"answered at {snapshot.capacity:,.0f} req/s{f' ({over})' if over else ''}, "
        "the last phone done at "
        f"{last:%Y-%m-%d %H:%M} UTC, the longest boot {longest / 60:,.1f} min"
        if measured
        else "capacity not measured (fleetkey capacity measure)"
    )
    zone = run.fleet.sites.timezones[index]
    local = datetime.fromisoformat(alert.details["at"])
    message = (
        f"if nothing is done, all {alert.details['phones']:,} phones of {alert.subject.lower()} "
        f"reboot at {local:%Y-%m-%d %H:%M} {zone} when license "
        f"{alert.details['license']} lapses: simulated, {arriving:,.0f} requests arrive in the "
        f"minute of {at:%H:%M} UTC{with_others} ({rate:,.0f} req/s over it); {served} "
        "(fleetkey simulate, no calls assumed)"
    )
    details: dict[str, Any] = {
        **alert.details,
        "peak_per_s": rate,  # the rate the message says: the storm's minute, simulated
        "simulated": {
            "minute": at.isoformat(),
            "requests_in_minute": arriving,
            "phones_in_minute": together,
            "last_answered": last.isoformat() if measured else None,
            "longest_boot_s": longest if measured else None,
        },
    }
    return replace(alert, severity=severity, message=message, details=details)


@dataclass(frozen=True, slots=True)
class PlanForecast:
    phones: int
    rebooted: int  # phones whose check-sync rebooted them
    waited_for_calls: int
    finish: datetime | None  # the last of them done (None: not every phone rebooted)
    planned_finish: datetime
    calls_per_hour: float
    call_minutes: float

    def to_json(self) -> dict[str, Any]:
        return {
            "phones": self.phones,
            "rebooted": self.rebooted,
            "waited_for_calls": self.waited_for_calls,
            "finish": self.finish.isoformat() if self.finish else None,
            "planned_finish": self.planned_finish.isoformat(),
            "calls_per_hour": self.calls_per_hour,
            "call_minutes": self.call_minutes,
        }

    def text(self) -> str:
        calls = f"{self.calls_per_hour:g} calls an hour a phone, {self.call_minutes:g} min each"
        if self.finish is None:
            return (
                f"simulated with {calls}: only {self.rebooted:,} of {self.phones:,} phones "
                "reboot (R9: without ;reboot=true a phone with alwaysReboot=0 reboots only "
                "when its configuration changed)"
            )
        late = (self.finish - self.planned_finish).total_seconds()
        when = f"{abs(late) / 60:,.1f} min {'after' if late >= 0 else 'before'} the plan's"
        return (
            f"simulated with {calls}: {self.waited_for_calls:,} reboots wait for a call to end; "
            f"the last boot is done {self.finish:%Y-%m-%d %H:%M} UTC, {when}"
        )


def forecast_plan(
    plan: Plan, calls_per_hour: float, call_minutes: float, reboot: bool
) -> PlanForecast:
    """Run ``plan``'s check-syncs through the simulator, its phones making calls (a reboot
    waits for the call to end, R4/R9), the server at the plan's capacity."""
    request = plan.input
    start = request.start.replace(second=0, microsecond=0)
    groups = tuple(
        site_group(
            site.serial,
            site.timezone,
            site.window,
            len(site.macs),
            calls_per_hour=calls_per_hour,
            call_minutes=call_minutes,
        )
        for site in request.sites
        if site.macs
    )
    held = SiteLicense("held", frozenset({0}), None)
    rollout = Rollout(request.start, request.deadline, None, reboot, plan)
    days = (request.deadline - start).days + 2
    server = Server(request.capacity, request.headroom, request.cost.requests, request.cost.seconds)
    scenario = Scenario(
        "rollout plan", start, days, groups, {"held": held}, (Post(start, "held", None), rollout),
        server,
    )  # fmt: skip
    run = simulate(scenario)
    phones = run.notices[-1].phones
    rebooted = phones[run.phones.boot_start_s[phones] > 0]
    finish = None
    if rebooted.shape[0] == phones.shape[0] and phones.shape[0]:
        finish = start + timedelta(seconds=float(run.phones.boot_end_s[rebooted].max()))
    return PlanForecast(
        int(phones.shape[0]), int(rebooted.shape[0]), run.tally.waited_for_calls, finish,
        plan.finish, calls_per_hour, call_minutes,
    )  # fmt: skip
