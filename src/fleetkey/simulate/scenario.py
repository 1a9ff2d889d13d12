"""A what-if scenario: sites and their phones, site licenses, and what happens when.

Written by operators as TOML (``fleetkey simulate SCENARIO.toml``, read by
``scenariofile.parse_scenario``) or built in code (the storm forecast, ``--from-store``); either
way it is checked as a whole when it is made (``check_scenario``): one set of checks for both.

The model a scenario describes (docs/simulate.md): each site's phones share a time zone, a
``license.polling.time``, ``prov.polling.*`` settings, ``checkSync.alwaysReboot``, a call rate
and optional perpetual phone licenses; a site license grants a set of features until one last
valid day (or forever). Events post a license to sites, change the configuration, roll a license
out by check-sync along a plan of the rollout planner, or take the server down for a while.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final

from fleetkey.core.device.config import ConfigPolling
from fleetkey.core.rollout.plan import Plan
from fleetkey.core.rollout.windows import Window
from fleetkey.errors import ScenarioError

CALL_SLOT_S: Final = 1800  # calls are drawn per phone in half-hour slots (simulate/calls.py)
MAX_DAYS: Final = 3660


@dataclass(frozen=True, slots=True)
class SiteGroup:
    """``count`` sites alike, ``phones`` phones each; serials count up from ``serial``."""

    serial: str
    count: int
    phones: int
    timezones: tuple[str, ...]  # site i takes timezones[i % len]
    window: Window | None
    license_polling_time: time
    polling: ConfigPolling
    always_reboot: bool
    calls_per_hour: float
    call_minutes: float
    phone_slots: frozenset[int]  # perpetual phone licenses of every phone
    # what the phones hold at the start, when known (the store's per-phone state): (license,
    # phones) for the first phones of each site; the others boot with what is posted then
    held: tuple[tuple[str, int], ...] = ()

    def serials(self) -> list[str]:
        first = int(self.serial, 16)
        return [f"{first + i:012x}" for i in range(self.count)]


@dataclass(frozen=True, slots=True)
class SiteLicense:
    name: str
    slots: frozenset[int]
    expires: date | None  # the last valid day; None: never


@dataclass(frozen=True, slots=True)
class Post:
    at: datetime
    license: str
    sites: tuple[str, ...] | None  # None: every site


@dataclass(frozen=True, slots=True)
class Rollout:
    at: datetime
    deadline: datetime
    sites: tuple[str, ...] | None
    reboot: bool
    plan: Plan | None = None  # a plan made already (rollout plan); None: the planner makes it


@dataclass(frozen=True, slots=True)
class ConfigChange:
    at: datetime
    sites: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class ServerDown:
    at: datetime
    until: datetime


Event = Post | Rollout | ConfigChange | ServerDown


@dataclass(frozen=True, slots=True)
class Server:
    capacity_per_s: float = 200.0  # requests answered a second (TOML capacity)
    headroom: float = 0.7
    boot_requests: float = 12.0  # domain.md §6, as core/rollout/cost.DEFAULT
    boot_s: float = 120.0  # TOML boot_seconds
    retry_after_s: float = 30.0  # the Retry-After of a 503
    give_up_s: float = 90.0  # no answer at all: the phone boots from its flash after this


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario, checked as a whole when it is made (``check_scenario``): the parser's and a
    scenario built in code (the storm forecast, ``--from-store``) pass the same checks."""

    name: str
    start: datetime
    days: int
    groups: tuple[SiteGroup, ...]
    licenses: dict[str, SiteLicense]
    events: tuple[Event, ...]
    server: Server

    def __post_init__(self) -> None:
        check_scenario(self)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def phones(self) -> int:
        return sum(group.count * group.phones for group in self.groups)


def check_scenario(scenario: Scenario) -> None:
    """What a scenario must hold to be simulated; ``ScenarioError`` with a hint otherwise."""
    if not 1 <= scenario.days <= MAX_DAYS:
        raise ScenarioError(f"the period is {scenario.days} days; expected 1 to {MAX_DAYS}")
    if not scenario.groups:
        raise ScenarioError(
            "the scenario has no site", hint="add a [[sites]] entry with a serial and phones"
        )
    seen: set[str] = set()
    for group in scenario.groups:
        if group.count < 1 or group.phones < 1:
            raise ScenarioError(
                f"sites from {group.serial}: count is {group.count} and phones is "
                f"{group.phones}; expected at least 1 of each",
                hint="a [[sites]] entry is count sites (default 1) of phones phones each",
            )
        for serial in group.serials():
            if serial in seen:
                raise ScenarioError(
                    f"site {serial} is in the scenario twice",
                    hint="one [[sites]] entry per site; a site's licenses are posted by events",
                )
            seen.add(serial)
    for name, lic in scenario.licenses.items():
        if name != lic.name:
            raise ScenarioError(
                f"license {lic.name!r} is filed under the name {name!r}; expected its own name",
                hint="key the scenario's licenses by their names",
            )
    for group in scenario.groups:
        unknown = [name for name, _ in group.held if name not in scenario.licenses]
        if unknown:
            raise ScenarioError(
                f"sites from {group.serial}: the phones held at the start name license "
                f"{unknown[0]!r}, which the scenario lacks",
                hint=_known(scenario.licenses),
            )
        holding = sum(count for _, count in group.held)
        if holding > group.phones:
            raise ScenarioError(
                f"sites from {group.serial}: {holding} phones hold a license at the start; "
                f"expected at most the site's {group.phones} phones",
                hint="count each site's phones once among the licenses they hold",
            )
    for event in scenario.events:
        try:
            check_event(event, scenario.licenses, seen, scenario.start, scenario.end)
        except ScenarioError as exc:
            raise ScenarioError(f"{_describe(event)}: {exc}", hint=exc.hint) from exc


def check_event(
    event: Event,
    licenses: dict[str, SiteLicense],
    serials: set[str],
    start: datetime,
    end: datetime,
) -> None:
    """One event against the scenario's licenses, sites and period."""
    if event.at < start:
        raise ScenarioError(
            f"at {event.at:%Y-%m-%d %H:%M} UTC is before the start {start:%Y-%m-%d %H:%M} UTC; "
            "expected the start or later",
            hint="move the event into the period, or start it earlier ([simulation] start)",
        )
    if event.at >= end:
        raise ScenarioError(
            f"at {event.at:%Y-%m-%d %H:%M} UTC is not before the end of the period "
            f"{end:%Y-%m-%d %H:%M} UTC: it would never happen",
            hint="move the event into the period, or make it longer ([simulation] days, --days)",
        )
    sites = getattr(event, "sites", None)
    missing = [s for s in sites or () if s not in serials]
    if missing:
        raise ScenarioError(
            f"site {missing[0]} is not one of the scenario's sites",
            hint="name sites by the serials of [[sites]]",
        )
    if isinstance(event, Post) and event.license not in licenses:
        raise ScenarioError(
            f"post names license {event.license!r}, which [[licenses]] lacks",
            hint=_known(licenses),
        )
    if isinstance(event, Rollout) and event.deadline <= event.at:
        raise ScenarioError(
            f"the rollout's deadline {event.deadline:%Y-%m-%d %H:%M} UTC is not after its start "
            f"{event.at:%Y-%m-%d %H:%M} UTC; expected a later deadline",
            hint="set deadline after at: the rollout's waves run between them",
        )
    if isinstance(event, ServerDown) and event.until <= event.at:
        raise ScenarioError(
            f"server_down_until {event.until:%Y-%m-%d %H:%M:%S} UTC is not after at "
            f"{event.at:%Y-%m-%d %H:%M:%S} UTC; expected a later moment",
            hint="server_down_until is when the server answers again",
        )


def _known(licenses: dict[str, SiteLicense]) -> str:
    return f"the licenses are {', '.join(map(repr, sorted(licenses))) or 'none'}"


def _describe(event: Event) -> str:
    kind = {Post: "post", Rollout: "rollout", ConfigChange: "config change", ServerDown:
            "server down"}[type(event)]  # fmt: skip
    return f"event {kind} at {event.at:%Y-%m-%d %H:%M} UTC"
