"""The fleet in the store as a simulation scenario (``fleetkey simulate --from-store``).

Sites with their time zones, windows and phone counts; every site license not revoked, named
``license <id>`` so that a what-if file can post one (``post = "license 12"``); what each site
has posted now, offered from the start; what each phone holds at the start from the per-phone
state (``phone_files``: the site license file it was last served, as the alerts read it; a
phone with none on record is taken to hold the posted one, and the notes say how many); the
boot cost measured from the fetch records and the capacity measured over the protocols its
phones boot over (store/capacity.py). What the store does not hold takes the scenario defaults
(docs/simulate.md): license.polling.time 02:00, configuration polling off, no calls. Two
approximations, said in the scenario's notes: a site license's features all lapse at its
latest term, and a site's phones hold the phone-license features every one of
them holds for ever (a phone license that is not perpetual, or not on every phone, is left out).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, time

from sqlalchemy.orm import Session

from fleetkey.core.device.config import ConfigPolling
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.naming import SITE_LICENSE_FILE
from fleetkey.core.rollout.windows import Window
from fleetkey.core.terms import NEVER
from fleetkey.errors import InputError
from fleetkey.simulate.scenario import Post, Scenario, Server, SiteGroup, SiteLicense
from fleetkey.store import bootdays, capacity, inventory, phonestate, registry


def site_group(
    serial: str,
    timezone: str,
    window: Window | None,
    phones: int,
    *,
    calls_per_hour: float = 0.0,
    call_minutes: float = 0.0,
    phone_slots: frozenset[int] = frozenset(),
    held: tuple[tuple[str, int], ...] = (),
) -> SiteGroup:
    """One site's ``phones`` phones as a simulation group, what the store does not hold at the
    scenario defaults: license.polling.time 02:00, configuration polling off, no
    ``alwaysReboot`` (``simulate --from-store`` and the plan's forecast alike)."""
    return SiteGroup(
        serial=serial,
        count=1,
        phones=phones,
        timezones=(timezone,),
        window=window,
        license_polling_time=time(2, 0),
        polling=ConfigPolling(),
        always_reboot=False,
        calls_per_hour=calls_per_hour,
        call_minutes=call_minutes,
        phone_slots=phone_slots,
        held=held,
    )


@dataclass(frozen=True)
class StoreFleet:
    scenario: Scenario
    notes: tuple[str, ...]


def scenario_from_store(session: Session, now: datetime, days: int = 365) -> StoreFleet:
    start = now.replace(second=0, microsecond=0)
    macs: dict[str, list[str]] = defaultdict(list)
    for phone in inventory.phones(session):
        macs[phone.site].append(phone.mac)
    sites = [site for site in inventory.sites(session) if macs.get(site.serial)]
    if not sites:
        raise InputError(
            "the store has no site with phones to simulate",
            hint="add sites and import phones (fleetkey sites add, fleetkey phones import)",
        )
    keys = registry.listing(session, today=start.date())
    perpetual: dict[str, set[int]] = defaultdict(set)  # mac -> slots it holds for ever
    licenses: dict[str, SiteLicense] = {}
    by_digest: dict[str, str] = {}  # a site license file's digest -> its license's name
    posts: list[Post] = []
    for key in keys:
        if key.state is LicenseState.REVOKED:
            continue
        if key.type is LicenseType.PHONE:
            if key.state is LicenseState.POSTED:
                perpetual[key.serial] |= {s for s, t in key.terms.items() if t is NEVER}
            continue
        if not key.terms:
            continue
        name = f"license {key.id}"
        licenses[name] = SiteLicense(name, frozenset(key.terms), key.expires_on)
        by_digest[key.digest] = name
        if key.state is LicenseState.POSTED:
            posts.append(Post(start, name, (key.serial,)))
    state = _held(session, by_digest, macs)
    groups = tuple(
        site_group(
            site.serial,
            site.timezone,
            site.window,
            len(macs[site.serial]),
            phone_slots=frozenset(
                set.intersection(*(perpetual.get(mac, set()) for mac in macs[site.serial]))
            ),
            held=state.held.get(site.serial, ()),
        )
        for site in sites
    )
    cost = bootdays.boot_cost(session)
    # one server for the fleet: the capacity measured over what its phones boot over (the
    # lowest of their protocols), or the sentence says which instead (store/capacity.py)
    booting: Counter[str] = Counter()
    simulated_sites = {site.serial for site in sites}
    for serial, protocols in phonestate.protocols_by_site(session).items():
        if serial in simulated_sites:
            booting.update(protocols)
    phones = sum(g.phones for g in groups)
    chosen = capacity.choose(session, capacity.booting_over(booting), phones)
    server = Server(
        capacity_per_s=chosen.measurement.requests_per_s if chosen else Server().capacity_per_s,
        boot_requests=cost.requests,
        boot_s=cost.seconds,
    )
    notes = (
        f"{sum(g.phones for g in groups):,} phones at {len(groups)} site(s) from the store",
        f"boot cost: {cost.requests:.1f} requests, {cost.seconds:.0f} s ({cost.source})",
        f"capacity: {server.capacity_per_s:,g} req/s "
        + (
            f"(measured {chosen.measurement.at:%Y-%m-%d} {chosen.over})"
            if chosen
            else "(not measured: the default)"
        ),
        f"per-phone state: {state.known:,} phone(s) hold the site license they were last "
        f"served; {state.unknown:,} with none on record are taken to hold the posted one",
        "license.polling.time 02:00, configuration polling off, no calls (not in the store)",
        "a site license's features lapse at its latest term",
    )
    simulated = {group.serial for group in groups}
    booted_with = tuple(p for p in posts if p.sites and p.sites[0] in simulated)
    scenario = Scenario("store", start, days, groups, licenses, booted_with, server)
    return StoreFleet(scenario, notes)


@dataclass(frozen=True)
class HeldAtStart:
    held: dict[str, tuple[tuple[str, int], ...]]  # site -> (license, phones) they hold
    known: int  # phones whose site license is known from what they were served
    unknown: int  # phones with no site license served on record (or one the store lacks)


def _held(session: Session, by_digest: dict[str, str], macs: dict[str, list[str]]) -> HeldAtStart:
    """What each site's phones hold now, from the per-phone state (``phone_files``) as the
    alerts read it: the site license file each was last served. A posted successor no phone
    fetched is not on the phones; they take it at their next boot (R2)."""
    served = {
        fetch.mac: fetch.digest
        for fetch in phonestate.last_requests(session, SITE_LICENSE_FILE, kind=phonestate.SERVED)
    }
    held: dict[str, tuple[tuple[str, int], ...]] = {}
    known = unknown = 0
    for serial, site_macs in macs.items():
        counts = Counter(by_digest.get(served.get(mac) or "") for mac in site_macs)
        unknown += counts.pop(None, 0)
        known += sum(counts.values())
        held[serial] = tuple(sorted((name, n) for name, n in counts.items() if name))
    return HeldAtStart(held, known, unknown)
