"""Site licenses as arrays, and what a phone does with the one the server offers (R1, R5-R7).

The scenario's licenses are numbered; a phone's installed site key is that number (-1: none).
A key is expired on a local day past its last valid day; R7 keeps the longer of the installed
and the offered key (a tie replaces); the phone's perpetual phone licenses are always valid.
These are the rules of ``core/rules.py`` for keys whose features share one term, which is what
a scenario's site license is: R7's ``replaces`` and the engine's R8 ``booted_expired`` are
called on the arrays; the agreement test holds the rest to the per-phone engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt

from fleetkey.core.device.engine import booted_expired
from fleetkey.core.rules import replaces
from fleetkey.simulate.fleet import mask
from fleetkey.simulate.scenario import Post, Scenario

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
NEVER_ORDINAL: Final = date.max.toordinal() + 1


@dataclass(frozen=True)
class Licenses:
    names: tuple[str, ...]
    masks: I64  # [license] slots granted
    last_day: I64  # [license] ordinal of the last valid day (NEVER_ORDINAL: never)

    def site_mask(self, installed: I64) -> I64:
        return np.where(installed >= 0, self.masks[np.maximum(installed, 0)], 0)

    def last(self, installed: I64) -> I64:
        return np.where(installed >= 0, self.last_day[np.maximum(installed, 0)], 0)


def license_table(scenario: Scenario) -> Licenses:
    names = tuple(scenario.licenses)
    values = [scenario.licenses[n] for n in names]
    return Licenses(
        names,
        np.array([mask(v.slots) for v in values], dtype=np.int64),
        np.array(
            [v.expires.toordinal() if v.expires else NEVER_ORDINAL for v in values],
            dtype=np.int64,
        ),
    )


@dataclass(frozen=True)
class Posted:
    """Which license each site's server offers, over time: the scenario's posts in order."""

    times: F64
    license: I64
    sites: tuple[npt.NDArray[np.bool_] | None, ...]  # None: every site

    def at(self, site: npt.NDArray[np.int32], t: F64) -> I64:
        """The license offered to each phone's site at each moment (-1: no file)."""
        offered = np.full(site.shape[0], -1, dtype=np.int64)
        for when, license, where in zip(self.times, self.license, self.sites, strict=True):
            hit = t >= when
            if where is not None:
                hit &= where[site]
            offered[hit] = license
        return offered


def posted_table(scenario: Scenario, licenses: Licenses, serials: tuple[str, ...]) -> Posted:
    posts = [e for e in scenario.events if isinstance(e, Post)]
    index = {s: i for i, s in enumerate(serials)}
    chosen: list[npt.NDArray[np.bool_] | None] = []
    for post in posts:
        if post.sites is None:
            chosen.append(None)
            continue
        where = np.zeros(len(serials), dtype=np.bool_)
        where[[index[s] for s in post.sites]] = True
        chosen.append(where)
    origin = scenario.start
    return Posted(
        np.array([(p.at - origin).total_seconds() for p in posts], dtype=np.float64),
        np.array([licenses.names.index(p.license) for p in posts], dtype=np.int64),
        tuple(chosen),
    )


@dataclass(frozen=True)
class BootOutcome:
    installed: I64
    valid: I64  # slots valid at the end of the boot (R1)
    booted_with_expired: B  # R8
    changed: B  # a key was installed or replaced


def boot_downloads(
    licenses: Licenses,
    installed: I64,
    offered: I64,
    phone_mask: I64,
    today: I64,
    reached: B,
) -> BootOutcome:
    """R2, R5-R7 at the end of a boot on local day ``today`` (ordinals); ``reached`` False:
    the server did not answer, nothing was downloaded."""
    has_offer = reached & (offered >= 0)
    offer_last = licenses.last(offered)
    accepted = has_offer & (offer_last >= today)  # R5: not expired (signatures hold here)
    current_last = licenses.last(installed)
    take = accepted & ((installed < 0) | replaces(offer_last, current_last))  # R6, R7
    new = np.where(take, offered, installed)
    site_mask = licenses.site_mask(new)
    site_valid = (new >= 0) & (licenses.last(new) >= today)
    valid = phone_mask | np.where(site_valid, site_mask, 0)
    granted = phone_mask | site_mask
    expired = booted_expired(granted, valid, has_offer & (offer_last < today))  # R8
    return BootOutcome(new, valid, expired, take & (new != installed))


def held_at_start(
    scenario: Scenario, licenses: Licenses, first: npt.NDArray[np.int64], offered: I64
) -> I64:
    """What each phone boots with at the start: what its site offers then, except the phones
    a group says hold a given license (``SiteGroup.held``: the first phones of each site)."""
    held = offered.copy()
    site = 0
    for group in scenario.groups:
        for _ in range(group.count):
            phone = int(first[site])
            for name, count in group.held:
                held[phone : phone + count] = licenses.names.index(name)
                phone += count
            site += 1
    return held
