"""Which downloaded key a phone accepts, and what it may use (spec §3: R1, R5, R6, R7).

Pure functions: the phone's installed keys, what it downloaded, its MAC and the day go in; the
decisions with their reasons and the resulting installed keys come out. Signature checking is
injected (:class:`SignatureVerifier`), so the same rules run on phones, in the emulator, in the
simulator and in fleet alerts.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Protocol

from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.terms import Term, encode_term, format_term
from fleetkey.core.verdicts import SignatureCheck


class SignatureVerifier(Protocol):
    """Checks a key's signature against the keys the phone trusts (TrustedKeys does)."""

    def check(self, key: LicenseKey) -> SignatureCheck: ...


class Outcome(enum.StrEnum):
    INSTALLED = "installed"  # R6: accepted, nothing of its type was installed
    REPLACED = "replaced"  # R7: accepted, at least as long as the installed key
    IGNORED_SHORTER = "ignored-shorter"  # R7: accepted, but the installed key lasts longer
    REJECTED = "rejected"  # R5: not accepted at all


@dataclass(frozen=True, slots=True)
class Decision:
    """What a phone did with one downloaded key, under which rule, and why."""

    key: LicenseKey
    outcome: Outcome
    rule: str
    reason: str

    @property
    def accepted(self) -> bool:
        """R5: the key passed signature, type, serial and expiry checks."""
        return self.outcome is not Outcome.REJECTED

    @property
    def installed(self) -> bool:
        """The key is now on the phone."""
        return self.outcome in (Outcome.INSTALLED, Outcome.REPLACED)


@dataclass(frozen=True, slots=True)
class InstalledKeys:
    """A phone's "flash": at most one installed key per type."""

    phone: LicenseKey | None = None
    site: LicenseKey | None = None

    def get(self, license_type: LicenseType) -> LicenseKey | None:
        return self.phone if license_type is LicenseType.PHONE else self.site

    def with_key(self, key: LicenseKey) -> InstalledKeys:
        if key.type is LicenseType.PHONE:
            return replace(self, phone=key)
        return replace(self, site=key)

    def keys(self) -> tuple[LicenseKey, ...]:
        return tuple(key for key in (self.phone, self.site) if key is not None)


@dataclass(frozen=True, slots=True)
class Grant:
    """One effective feature (R1) and its provenance: which key grants it, until when."""

    slot: int
    expires: Term
    source: LicenseType
    serial: str


def judge(
    key: LicenseKey,
    installed: InstalledKeys,
    file_type: LicenseType,
    mac: str,
    today: date,
    verifier: SignatureVerifier,
) -> Decision:
    """R5-R7 for one downloaded key against what is installed."""
    check = verifier.check(key)
    if not check.valid:
        return Decision(key, Outcome.REJECTED, "R5", check.reason)
    if key.type is not file_type:
        return Decision(
            key,
            Outcome.REJECTED,
            "R5",
            f"a {key.type.value} key in a {file_type.value} license file",
        )
    if key.type is LicenseType.PHONE and key.serial != mac.lower():
        return Decision(
            key, Outcome.REJECTED, "R5", f"Serial {key.serial} is not this phone's MAC {mac}"
        )
    if key.is_expired(today):
        return Decision(
            key,
            Outcome.REJECTED,
            "R5",
            f"expired: its latest term {format_term(key.expiry())} is before {today.isoformat()}",
        )
    current = installed.get(key.type)
    if current is None:
        return Decision(key, Outcome.INSTALLED, "R6", f"no {key.type.value} key was installed")
    new_term, old_term = format_term(key.expiry()), format_term(current.expiry())
    if replaces(key.duration_rank, current.duration_rank):
        relation = "equals" if key.duration_rank == current.duration_rank else "outlasts"
        return Decision(
            key,
            Outcome.REPLACED,
            "R7",
            f"its duration {new_term} {relation} the installed key's {old_term}",
        )
    return Decision(
        key,
        Outcome.IGNORED_SHORTER,
        "R7",
        f"its duration {new_term} is shorter than the installed key's {old_term}",
    )


def replaces(offered_duration: Any, installed_duration: Any) -> Any:
    """R7: a downloaded key replaces the installed one when its duration is at least as long
    (a tie replaces). Durations are any ordered measure (duration words, last-day ordinals);
    numbers or numpy arrays of them (the simulator asks for a million phones at once)."""
    return offered_duration >= installed_duration


def apply_download(
    installed: InstalledKeys,
    downloaded: Sequence[LicenseKey],
    file_type: LicenseType,
    mac: str,
    today: date,
    verifier: SignatureVerifier,
) -> tuple[InstalledKeys, tuple[Decision, ...]]:
    """Apply the keys of one downloaded file, in file order (R5-R7)."""
    decisions: list[Decision] = []
    for key in downloaded:
        decision = judge(key, installed, file_type, mac, today, verifier)
        decisions.append(decision)
        if decision.installed:
            installed = installed.with_key(key)
    return installed, tuple(decisions)


def apply_boot_downloads(
    installed: InstalledKeys,
    site_file: Sequence[LicenseKey] | None,
    phone_file: Sequence[LicenseKey] | None,
    mac: str,
    today: date,
    verifier: SignatureVerifier,
) -> tuple[InstalledKeys, tuple[Decision, ...]]:
    """R2 order: the site file, then the phone file; None = not found, which changes nothing."""
    decisions: tuple[Decision, ...] = ()
    for license_type, keys in ((LicenseType.SITE, site_file), (LicenseType.PHONE, phone_file)):
        if keys is not None:
            installed, more = apply_download(installed, keys, license_type, mac, today, verifier)
            decisions += more
    return installed, decisions


def effective_features(installed: InstalledKeys, today: date) -> tuple[Grant, ...]:
    """R1: the union of the unexpired features of the installed keys, by slot.

    When both keys grant a slot, the grant that lasts longer is the provenance (the phone key on
    a tie, since it is bound to the device).
    """
    grants: dict[int, Grant] = {}
    for key in (installed.phone, installed.site):
        if key is None:
            continue
        for slot, term in key.valid_terms(today).items():
            known = grants.get(slot)
            if known is None or key.words[slot] > encode_term(known.expires):
                grants[slot] = Grant(slot, term, key.type, key.serial)
    return tuple(grants[slot] for slot in sorted(grants))
