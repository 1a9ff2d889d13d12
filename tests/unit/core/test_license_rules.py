"""The rules of issued files (spec §2), every broken one listed: verify reports them all."""

from __future__ import annotations

import pytest

from fleetkey.core.license import SLOT_COUNT, LicenseKey, LicenseType, issuance_problems
from fleetkey.core.terms import WORD_NEVER


def key(options: int, terms: dict[int, int]) -> LicenseKey:
    words = tuple(terms.get(slot, 0) for slot in range(SLOT_COUNT))
    return LicenseKey("0004f2000001", LicenseType.PHONE, options, words, b"")


class TestIssuanceProblems:
    def test_a_key_fleetkey_issues_has_none(self) -> None:
        assert issuance_problems(key(0b101, {0: WORD_NEVER, 2: 0x2C1F})) == []

    def test_every_broken_rule_is_listed(self) -> None:
        problems = issuance_problems(key(0xF000_0002, {0: WORD_NEVER}))
        assert problems == [
            "Options F0000002 sets reserved bits 28-31 (set: 28, 29, 30, 31), expected them clear",
            "slot 0: Options bit is clear but its Duration word is FFFF; expected the bit set "
            "exactly when the term is non-zero",
            "slot 1: Options bit is set but its Duration word is 0000; expected the bit set "
            "exactly when the term is non-zero",
        ]

    @pytest.mark.parametrize("options", [0, 0x1000_0000])
    def test_a_key_granting_nothing_is_named(self, options: int) -> None:
        assert (
            issuance_problems(key(options, {}))[-1] == "a license must grant at least one feature"
        )
