"""What an operator must hear about, derived from facts: licenses, phones' fetches, files.

Pure: the caller gathers a :class:`Snapshot` (from the store, the provisioning tree and a
clock) and gets :class:`Alert` values back. Every alert has a stable ``key``; the same
condition on the next evaluation gives the same key, so the store can deduplicate, and a
condition that stops holding simply stops being produced (it is then resolved). Lead-time
alerts carry their stage in the key, so each stage (60/30/14/7/1 days by default) fires once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.sitefetches import BOOTED_SINCE, SiteFetches, question, summarize
from fleetkey.core.terms import Term, encode_term, format_term
from fleetkey.core.verdicts import SignatureStatus

STAGES: Final = (60, 30, 14, 7, 1)
VENDOR_MINIMUM_DAYS: Final = 30
# signatures an alert does not call bad: verified, or vouched for by an operator
_SERVABLE: Final = frozenset({SignatureStatus.VALID, SignatureStatus.TRUSTED_BY_OPERATOR})


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    kind: str
    severity: str  # info | warning | critical
    subject: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LicenseFacts:
    id: int
    type: LicenseType
    serial: str
    terms: dict[int, Term]
    expires_on: date | None
    state: LicenseState
    posted_at: datetime | None
    succeeds_id: int | None
    digest: str
    signature: SignatureStatus

    @property
    def rank(self) -> int:
        """R7's duration: the latest term over the granted slots."""
        return max((encode_term(term) for term in self.terms.values()), default=0)


@dataclass(frozen=True, slots=True)
class SiteFacts:
    serial: str
    timezone: str
    phones: tuple[str, ...] = ()  # their MACs, when the fetches are summed up from them
    count: int | None = None  # how many phones (None: as many as ``phones``)
    # the capacity its phones count on (requests/s; None: the snapshot's) and why that one:
    # measured over the protocol they boot over, or which it is instead (store/capacity.py)
    capacity: float | None = None
    capacity_over: str | None = None

    @property
    def size(self) -> int:
        return len(self.phones) if self.count is None else self.count


@dataclass(frozen=True, slots=True)
class LastSiteFetch:
    """A phone's latest request for ``000000000000-license.cfg`` (every boot makes one, R2)."""

    mac: str
    at: datetime
    status: int
    digest: str | None


@dataclass(frozen=True, slots=True)
class BadFile:
    name: str
    problem: str


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    licenses: Sequence[LicenseFacts]
    sites: Sequence[SiteFacts]
    last_fetches: Sequence[LastSiteFetch]
    bad_files: Sequence[BadFile] = ()
    stages: Sequence[int] = STAGES
    boot_requests: float = 12.0
    boot_s: float = 120.0
    capacity: float | None = None  # requests/s, when measured or configured
    polling_time: time = time(2, 0)  # license.polling.time (R3)
    # what each site's phones fetched, summed up by the store (None: from ``last_fetches``)
    site_fetches: Sequence[SiteFetches] | None = None


def evaluate(snapshot: Snapshot) -> list[Alert]:
    """Every alert that holds now, in a stable order."""
    found: list[Alert] = []
    found += _lead_time(snapshot)
    found += _shorter_successors(snapshot)
    found += _fetch_alerts(snapshot)
    found += _bad_files(snapshot)
    found += _storms(snapshot)
    return sorted(found, key=lambda alert: alert.key)


def _name(facts: LicenseFacts) -> str:
    return f"{facts.type.lower()} license {facts.serial} (license {facts.id})"


def _lead_time(snapshot: Snapshot) -> list[Alert]:
    today = snapshot.now.date()
    waiting = {(f.type, f.serial): f for f in snapshot.licenses if f.state is LicenseState.ISSUED}
    stages = sorted(snapshot.stages)
    alerts = []
    for facts in snapshot.licenses:
        if facts.state is not LicenseState.POSTED or facts.expires_on is None:
            continue
        left = (facts.expires_on - today).days
        stage = next((s for s in stages if left <= s), None)
        if stage is None:
            continue
        issued = waiting.get((facts.type, facts.serial))
        note = f" (license {issued.id} is issued but not posted)" if issued else ""
        if left < 0:
            kind, severity, stage_name = "expired", "critical", "expired"
            message = f"{_name(facts)} expired on {facts.expires_on} with no successor posted{note}"
        else:
            kind, stage_name = "lead-time", f"{stage}d"
            severity = (
                "critical" if left <= 7 else "warning" if left <= VENDOR_MINIMUM_DAYS else "info"
            )
            message = (
                f"{_name(facts)} expires on {facts.expires_on}, in {left} day(s), and no "
                f"successor is posted{note}; post one at least {VENDOR_MINIMUM_DAYS} days ahead"
            )
        alerts.append(
            Alert(
                f"{kind}:{facts.type}:{facts.serial}:{facts.id}:{stage_name}",
                kind,
                severity,
                f"{facts.type} {facts.serial}",
                message,
                {
                    "license": facts.id,
                    "expires_on": facts.expires_on.isoformat(),
                    "days_left": left,
                },
            )
        )
    return alerts


def _shorter_successors(snapshot: Snapshot) -> list[Alert]:
    by_id = {f.id: f for f in snapshot.licenses}
    alerts = []
    for facts in snapshot.licenses:
        before = by_id.get(facts.succeeds_id) if facts.succeeds_id else None
        if facts.state is not LicenseState.POSTED or before is None or facts.rank > before.rank:
            continue
        equal = facts.rank == before.rank
        latest = format_term(max(facts.terms.values(), key=encode_term, default=None))
        message = (
            f"{_name(facts)} lasts until {latest}, "
            + ("exactly as long as" if equal else "less than")
            + f" license {before.id} it succeeds: phones that installed license {before.id} "
            + ("adopt it but gain no time (R7 tie)" if equal else "ignore it (R7)")
        )
        alerts.append(
            Alert(
                f"shorter-successor:{facts.id}",
                "shorter-successor",
                "warning" if equal else "critical",
                f"{facts.type} {facts.serial}",
                message,
                {"license": facts.id, "succeeds": before.id},
            )
        )
    return alerts


def _fetch_alerts(snapshot: Snapshot) -> list[Alert]:
    today = snapshot.now.date()
    posted = {
        f.serial: f
        for f in snapshot.licenses
        if f.type is LicenseType.SITE and f.state is LicenseState.POSTED
    }
    fetched = snapshot.site_fetches
    if fetched is None:  # from the per-phone facts
        last = {fetch.mac: (fetch.at, fetch.digest) for fetch in snapshot.last_fetches}
        sites = ((site.serial, site.phones) for site in snapshot.sites)
        fetched = summarize(question(snapshot.licenses), sites, last)
    by_site = {facts.serial: facts for facts in fetched}
    alerts = []
    for site in snapshot.sites:
        current = posted.get(site.serial)
        facts = by_site.get(site.serial, SiteFetches(site.serial))
        behind = facts.behind
        if current is not None and behind:
            count = sum(sample.count for sample in behind.values())
            urgent = current.expires_on is not None and (
                (current.expires_on - today).days <= VENDOR_MINIMUM_DAYS
            )
            reasons = ", ".join(f"{s.count:,} {why}" for why, s in sorted(behind.items()))
            alerts.append(
                Alert(
                    f"not-fetched:{site.serial}:{current.id}",
                    "not-fetched",
                    "warning" if urgent or BOOTED_SINCE in behind else "info",
                    f"Site {site.serial}",
                    f"{count:,} of {site.size:,} phones of site {site.serial} have not "
                    f"fetched license {current.id} since it was posted ({reasons})",
                    {
                        "license": current.id,
                        "phones": count,
                        "sample": {why: list(s.macs) for why, s in sorted(behind.items())},
                    },
                )
            )
        if facts.expired.count:
            alerts.append(
                Alert(
                    f"booted-expired:{site.serial}",
                    "booted-expired",
                    "critical",
                    f"Site {site.serial}",
                    f"{facts.expired.count:,} phones of site {site.serial} booted with an expired "
                    "site license (R8): they will not restart by themselves; a check-sync rollout "
                    "brings them back",
                    {"phones": facts.expired.count, "sample": list(facts.expired.macs)},
                )
            )
    return alerts


def _bad_files(snapshot: Snapshot) -> list[Alert]:
    alerts = [
        Alert(
            f"bad-file:{bad.name}",
            "bad-file",
            "critical",
            bad.name,
            f"posted file {bad.name}: {bad.problem}",
            {"file": bad.name},
        )
        for bad in snapshot.bad_files
    ]
    for facts in snapshot.licenses:
        if facts.state is LicenseState.POSTED and facts.signature not in _SERVABLE:
            vouch = (
                "; if it is a vendor's key you trust, say so once: fleetkey licenses trust "
                f"{facts.id} --reason TEXT"
                if facts.signature is SignatureStatus.UNVERIFIABLE
                else ""
            )
            alerts.append(
                Alert(
                    f"bad-signature:{facts.id}",
                    "bad-file",
                    "critical",
                    f"{facts.type} {facts.serial}",
                    f"posted {_name(facts)} has a signature that is {facts.signature}: phones "
                    f"that do not hold its signer's key ignore it (R5){vouch}",
                    {"license": facts.id},
                )
            )
    return alerts


def storm_sites(licenses: Sequence[LicenseFacts], today: date, stages: Sequence[int]) -> set[str]:
    """The sites whose storm ``evaluate`` may forecast (a posted site license lapsing within
    the longest lead time): what the facts of a storm are gathered for."""
    horizon = max(stages, default=0)
    return {facts.serial for facts in licenses if _storm_due(facts, today, horizon)}


def _storm_due(facts: LicenseFacts, today: date, horizon: int) -> bool:
    return (
        facts.type is LicenseType.SITE
        and facts.state is LicenseState.POSTED
        and facts.expires_on is not None
        and (facts.expires_on - today).days <= horizon
    )


def _storms(snapshot: Snapshot) -> list[Alert]:
    """A posted site license lapsing without successor: its phones reboot together (R3/R4)."""
    today = snapshot.now.date()
    horizon = max(snapshot.stages, default=0)
    sites = {site.serial: site for site in snapshot.sites}
    alerts = []
    for facts in snapshot.licenses:
        site = sites.get(facts.serial)
        if not _storm_due(facts, today, horizon) or site is None or not site.size:
            continue
        assert facts.expires_on is not None  # noqa: S101  # _storm_due says so
        day = facts.expires_on + timedelta(days=1)  # the first daily check that finds it lapsed
        local = datetime.combine(day, snapshot.polling_time, ZoneInfo(site.timezone))
        requests = site.size * snapshot.boot_requests
        peak = requests / max(snapshot.boot_s, 1.0)
        load = f"~{requests:,.0f} requests, peak ~{peak:,.0f} req/s"
        severity = "warning"
        capacity = site.capacity if site.capacity is not None else snapshot.capacity
        if capacity:
            load += f" against a capacity of {capacity:,.0f} req/s"
            if site.capacity_over:
                load += f" ({site.capacity_over})"
            if peak > capacity:
                severity = "critical"
                load += f" ({peak / capacity:.1f}x over)"
        alerts.append(
            Alert(
                f"storm:{facts.serial}:{facts.id}",
                "storm",
                severity,
                f"Site {facts.serial}",
                f"if nothing is done, all {site.size:,} phones of site {facts.serial} "
                f"reboot at {local:%Y-%m-%d %H:%M} {site.timezone} when license {facts.id} "
                f"lapses: {load}",
                {
                    "license": facts.id,
                    "phones": site.size,
                    "at": local.isoformat(),
                    "requests": requests,
                    "peak_per_s": peak,
                    "capacity": capacity,
                    "capacity_over": site.capacity_over,
                },
            )
        )
    return alerts
