"""Evaluating alerts: gather the facts from the store and the provisioning tree, then record.

The facts: every license, every site with its phones, what its phones last fetched of their
site license summed up per site by the store (store/sitefetches.py, from the per-phone state),
the posted files on disk that do not verify or whose keys do not belong in a file of that name,
the measured boot cost and capacity. :func:`fleetkey.core.alerts.evaluate` turns them into
alerts; :func:`fleetkey.store.alerts.sync` deduplicates them and queues deliveries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetkey.authority.checking import check_files
from fleetkey.authority.datadir import DataDir
from fleetkey.clock import Clock
from fleetkey.clock import today as clock_today
from fleetkey.core.alerts import (
    STAGES,
    BadFile,
    LicenseFacts,
    SiteFacts,
    Snapshot,
    evaluate,
    storm_sites,
)
from fleetkey.core.naming import SITE_LICENSE_FILE, key_misfit
from fleetkey.core.signing import TrustedKeys
from fleetkey.core.sitefetches import question
from fleetkey.core.verdicts import SignatureStatus
from fleetkey.ops.forecast import forecast_storms
from fleetkey.store import (
    alerts,
    bootdays,
    capacity,
    inventory,
    phonestate,
    registry,
    sitefetches,
)
from fleetkey.store.alerts import StoredAlert, SyncResult
from fleetkey.store.store import Store

MAX_FILES: Final = 200_000


@dataclass(frozen=True, slots=True)
class AlertSettings:
    stages: Sequence[int] = STAGES
    capacity: float | None = None  # None: the newest measured capacity, if any
    channels: Sequence[str] = ()  # webhook:URL, mail:ADDRESS


def check(
    data: DataDir, store: Store, clock: Clock, trusted: TrustedKeys, settings: AlertSettings
) -> tuple[SyncResult, list[StoredAlert]]:
    """Evaluate now, record what fired and resolved, queue deliveries; the open alerts."""
    with store.transaction() as session:
        licenses = [
            LicenseFacts(
                item.id,
                item.type,
                item.serial,
                item.terms,
                item.expires_on,
                item.state,
                item.posted_at,
                item.succeeds_id,
                item.digest,
                item.signature,
            )
            for item in registry.listing(session, today=clock_today(clock))
        ]
        # the phones counted and what they fetched summed up per site by the database
        # (store/sitefetches.py): every phone's MAC and newest request read into Python took
        # seconds at 100,000 phones
        counts = sitefetches.phones_by_site(session)
        # a storm's site against the capacity measured over what its phones boot over
        # (store/capacity.py), unless one is configured for all; only the sites that may
        # storm are asked (the grouped query cost 0.2 s of CPU for 100,000 phones)
        storming = set()
        if not settings.capacity:
            storming = storm_sites(licenses, clock.now().date(), settings.stages)
        booting = phonestate.protocols_by_site(session, sorted(storming))
        sites = []
        for site in inventory.sites(session):
            count = counts.get(site.serial, 0)
            chosen = None
            if site.serial in storming:
                over = capacity.booting_over(Counter(booting.get(site.serial, {})))
                chosen = capacity.choose(session, over, count)
            sites.append(
                SiteFacts(
                    site.serial,
                    site.timezone,
                    count=count,
                    capacity=chosen.measurement.requests_per_s if chosen else None,
                    capacity_over=chosen.over if chosen else None,
                )
            )
        fetched = sitefetches.answer(
            session, SITE_LICENSE_FILE, question(licenses), [site.serial for site in sites]
        )
        cost = bootdays.boot_cost(session)
    vouched = {f.digest for f in licenses if f.signature is SignatureStatus.TRUSTED_BY_OPERATOR}
    bad = bad_files(data.provisioning, trusted, vouched)
    snapshot = Snapshot(
        now=clock.now(),
        licenses=licenses,
        sites=sites,
        last_fetches=(),
        site_fetches=fetched,
        bad_files=bad,
        stages=settings.stages,
        boot_requests=cost.requests,
        boot_s=cost.seconds,
        capacity=settings.capacity,
    )
    current = forecast_storms(evaluate(snapshot), snapshot)
    with store.transaction() as session:
        result = alerts.sync(session, clock, current, settings.channels)
        return result, alerts.listing(session)


def bad_files(
    tree: Path, trusted: TrustedKeys, vouched: frozenset[str] | set[str] = frozenset()
) -> list[BadFile]:
    """License files in the provisioning tree that phones would ignore, and why. A file whose
    digest is in ``vouched`` (keys an operator trusts) is not reported for its signature."""
    if not tree.is_dir():
        return []
    paths = sorted(tree.rglob("*-license.cfg"))[:MAX_FILES]
    found = []
    for result in check_files(paths, trusted):
        name = str(result.path.relative_to(tree))
        if result.license_file is None:
            found.append(BadFile(name, f"does not parse: {result.error}"))
            continue
        for index, (key, verdict) in enumerate(
            zip(result.license_file.keys, result.checks, strict=True)
        ):
            if not verdict.valid and registry.file_digest(result.data) not in vouched:
                found.append(
                    BadFile(name, f"key {index}: signature {verdict.status}: {verdict.reason}")
                )
            misfit = key_misfit(key.type, key.serial, result.path.name)
            if misfit is not None:
                found.append(
                    BadFile(name, f"key {index} ({key.type.value} {key.serial}): {misfit}")
                )
    return found
