"""Rules R1 and R5-R7 as a table of cases: which downloaded key a phone keeps, and why."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import pytest

from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.rules import (
    InstalledKeys,
    Outcome,
    apply_boot_downloads,
    apply_download,
    effective_features,
    judge,
)
from fleetkey.core.signing import SigningKey
from fleetkey.core.terms import NEVER, Term
from fleetkey.testing import make_license, trusted_keys_for

MAC = "0004f2000001"
TODAY = date(2026, 6, 1)
SITE = LicenseType.SITE
PHONE = LicenseType.PHONE


def site(expires: Term = date(2026, 12, 31), **kw: Any) -> LicenseKey:
    return make_license(serial="100000000001", type=SITE, expires=expires, **kw)


def phone(expires: Term = NEVER, **kw: Any) -> LicenseKey:
    return make_license(serial=MAC, type=PHONE, expires=expires, **kw)


@dataclass(frozen=True)
class Case:
    name: str
    installed: InstalledKeys
    downloaded: LicenseKey
    file_type: LicenseType
    outcome: Outcome
    rule: str
    reason: str


OTHER_SIGNER = SigningKey.generate()
CASES = [
    Case(
        "R6 site key installed when none",
        InstalledKeys(),
        site(),
        SITE,
        Outcome.INSTALLED,
        "R6",
        "no Site key was installed",
    ),
    Case(
        "R6 phone key installed when none",
        InstalledKeys(),
        phone(),
        PHONE,
        Outcome.INSTALLED,
        "R6",
        "no Phone key was installed",
    ),
    Case(
        "R7 longer successor replaces",
        InstalledKeys(site=site(date(2026, 12, 31))),
        site(date(2027, 12, 31)),
        SITE,
        Outcome.REPLACED,
        "R7",
        "outlasts",
    ),
    Case(
        "R7 tie replaces installed",
        InstalledKeys(site=site(date(2026, 12, 31))),
        site(date(2026, 12, 31)),
        SITE,
        Outcome.REPLACED,
        "R7",
        "equals",
    ),
    Case(
        "R7 shorter successor is ignored",
        InstalledKeys(site=site(date(2027, 12, 31))),
        site(date(2026, 12, 31)),
        SITE,
        Outcome.IGNORED_SHORTER,
        "R7",
        "is shorter than",
    ),
    Case(
        "R7 never beats any date",
        InstalledKeys(site=site(date(2170, 1, 1))),
        site(NEVER),
        SITE,
        Outcome.REPLACED,
        "R7",
        "never outlasts",
    ),
    Case(
        "R7 date never beats never",
        InstalledKeys(phone=phone(NEVER)),
        phone(date(2170, 1, 1)),
        PHONE,
        Outcome.IGNORED_SHORTER,
        "R7",
        "shorter",
    ),
    Case(
        "R5 bad signature rejected",
        InstalledKeys(),
        site(signer=OTHER_SIGNER),
        SITE,
        Outcome.REJECTED,
        "R5",
        "does not verify",
    ),
    Case(
        "R5 phone key in site file rejected",
        InstalledKeys(),
        phone(),
        SITE,
        Outcome.REJECTED,
        "R5",
        "a Phone key in a Site license file",
    ),
    Case(
        "R5 site key in phone file rejected",
        InstalledKeys(),
        site(),
        PHONE,
        Outcome.REJECTED,
        "R5",
        "a Site key in a Phone license file",
    ),
    Case(
        "R5 phone key for other MAC rejected",
        InstalledKeys(),
        make_license(serial="0004f2000002"),
        PHONE,
        Outcome.REJECTED,
        "R5",
        "Serial 0004f2000002 is not this phone's MAC 0004f2000001",
    ),
    Case(
        "R5 expired key rejected",
        InstalledKeys(),
        site(date(2026, 5, 31)),
        SITE,
        Outcome.REJECTED,
        "R5",
        "expired: its latest term 2026-05-31 is before 2026-06-01",
    ),
    Case(
        "R5 key expiring today is accepted",
        InstalledKeys(),
        site(date(2026, 6, 1)),
        SITE,
        Outcome.INSTALLED,
        "R6",
        "no Site key",
    ),
    Case(
        "R5 expired key rejected even when installed one is shorter",
        InstalledKeys(site=site(date(2026, 7, 1))),
        site(date(2026, 1, 1)),
        SITE,
        Outcome.REJECTED,
        "R5",
        "expired",
    ),
]


class TestJudge:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_rule_table(self, case: Case) -> None:
        decision = judge(
            case.downloaded, case.installed, case.file_type, MAC, TODAY, trusted_keys_for()
        )
        assert decision.outcome is case.outcome
        assert decision.rule == case.rule
        assert case.reason in decision.reason

    def test_rejected_key_leaves_installed_key_in_place(self) -> None:
        installed = InstalledKeys(site=site())
        after, (decision,) = apply_download(
            installed,
            [site(signer=OTHER_SIGNER, expires=NEVER)],
            SITE,
            MAC,
            TODAY,
            trusted_keys_for(),
        )
        assert not decision.accepted
        assert after == installed

    def test_tampered_longer_key_is_not_installed(self) -> None:
        installed = InstalledKeys(site=site(date(2026, 12, 31)))
        forged = replace(site(date(2026, 12, 31)), words=site(NEVER).words)
        after, (decision,) = apply_download(
            installed, [forged], SITE, MAC, TODAY, trusted_keys_for()
        )
        assert decision.outcome is Outcome.REJECTED
        assert after.site == installed.site

    def test_keys_of_one_file_apply_in_order(self) -> None:
        first, second = site(date(2026, 9, 1)), site(date(2026, 8, 1))
        after, decisions = apply_download(
            InstalledKeys(), [first, second], SITE, MAC, TODAY, trusted_keys_for()
        )
        assert [d.outcome for d in decisions] == [Outcome.INSTALLED, Outcome.IGNORED_SHORTER]
        assert after.site == first

    def test_boot_applies_site_file_then_phone_file_and_missing_changes_nothing(self) -> None:
        installed = InstalledKeys(phone=phone())
        after, decisions = apply_boot_downloads(
            installed, [site()], None, MAC, TODAY, trusted_keys_for()
        )
        assert [d.key.type for d in decisions] == [SITE]
        assert after.phone == installed.phone
        assert after.site is not None


class TestEffectiveFeatures:
    def test_union_of_phone_and_site_features_with_provenance(self) -> None:
        installed = InstalledKeys(
            phone=phone(terms={0: NEVER}),
            site=site(terms={3: date(2026, 12, 31), 4: date(2026, 12, 31)}),
        )
        grants = effective_features(installed, TODAY)
        assert [(g.slot, g.source, g.expires) for g in grants] == [
            (0, PHONE, NEVER),
            (3, SITE, date(2026, 12, 31)),
            (4, SITE, date(2026, 12, 31)),
        ]
        assert grants[1].serial == "100000000001"

    def test_expired_terms_grant_nothing(self) -> None:
        installed = InstalledKeys(site=site(terms={0: date(2026, 5, 31), 1: date(2026, 6, 1)}))
        assert [g.slot for g in effective_features(installed, TODAY)] == [1]
        assert effective_features(installed, date(2026, 6, 2)) == ()

    def test_slot_in_both_keys_is_credited_to_the_longer_grant(self) -> None:
        installed = InstalledKeys(
            phone=phone(terms={0: date(2026, 7, 1)}),
            site=site(terms={0: date(2026, 12, 31)}),
        )
        (grant,) = effective_features(installed, TODAY)
        assert (grant.source, grant.expires) == (SITE, date(2026, 12, 31))
        (later,) = effective_features(installed, date(2026, 7, 2))
        assert later.source is SITE

    def test_tie_is_credited_to_the_phone_key(self) -> None:
        installed = InstalledKeys(phone=phone(terms={2: NEVER}), site=site(terms={2: NEVER}))
        (grant,) = effective_features(installed, TODAY)
        assert grant.source is PHONE

    def test_no_keys_no_features(self) -> None:
        assert effective_features(InstalledKeys(), TODAY) == ()
