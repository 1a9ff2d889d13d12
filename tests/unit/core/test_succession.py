"""What posting a successor takes from phones, feature by feature (core/succession.py)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetkey.core.succession import Change, Succession
from fleetkey.core.terms import FIRST_DAY, LAST_DAY, NEVER, Term, encode_term

TODAY = date(2026, 1, 1)
NAMES = {0: "corporate-directory", 1: "conference-management", 3: "vqmon"}


def label(slot: int) -> str:
    return NAMES.get(slot, f"slot-{slot}")


def judge(after: dict[int, Term], before: dict[int, Term] | None) -> Succession:
    return Succession(TODAY, after, before)


class TestLosses:
    def test_a_first_key_that_is_valid_loses_nothing(self) -> None:
        assert judge({0: date(2027, 1, 1)}, None).losses(label) == []

    def test_a_first_key_that_is_expired_is_refused(self) -> None:
        assert judge({0: date(2025, 12, 31)}, None).losses(label) == [
            "it expired on 2025-12-31: phones refuse an expired key (R5)"
        ]

    def test_a_key_granting_nothing_is_expired(self) -> None:
        succession = judge({}, {0: NEVER})
        assert succession.expired
        assert succession.losses(label, "license 3")[0] == (
            "it grants no feature: phones refuse an expired key (R5), and license 3 would no "
            "longer be served"
        )

    def test_a_shorter_successor_names_r7_and_every_feature(self) -> None:
        before = {0: date(2027, 6, 30), 1: NEVER, 3: date(2026, 6, 1)}
        after = {0: date(2026, 1, 20), 3: date(2026, 7, 1)}
        assert judge(after, before).losses(label, "license 2") == [
            "it lasts until 2026-07-01, license 2 until never: phones that installed license 2 "
            "ignore it (R7)",
            "corporate-directory would end on 2026-01-20 instead of 2027-06-30 (526 days lost)",
            "conference-management (until never) would be dropped",
        ]

    def test_a_longer_successor_that_ends_one_feature_earlier_is_still_refused(self) -> None:
        losses = judge({0: NEVER, 1: date(2027, 1, 1)}, {0: date(2030, 1, 1), 1: NEVER}).losses(
            label
        )
        assert losses == ["conference-management would end on 2027-01-01 instead of never"]

    def test_a_longer_successor_with_every_feature_loses_nothing(self) -> None:
        succession = judge({0: date(2028, 1, 1), 3: NEVER}, {0: date(2027, 1, 1)})
        assert succession.losses(label) == []
        assert [f.change for f in succession.features] == [Change.EXTENDED, Change.ADDED]


class TestNotes:
    def test_a_tie_is_noted_not_refused(self) -> None:
        succession = judge({0: date(2027, 1, 1)}, {0: date(2027, 1, 1)})
        assert succession.losses(label) == []
        assert succession.notes("license 1") == [
            "it lasts exactly as long as license 1 (2027-01-01): phones adopt it (R7 tie) but "
            "gain no time"
        ]

    def test_a_successor_posted_late_or_after_expiry_is_noted(self) -> None:
        late = judge({0: date(2027, 1, 1)}, {0: date(2026, 1, 20)}).notes("license 1")
        assert late == [
            "license 1 ends on 2026-01-20, in 19 day(s): less than the 30 days ahead the vendor "
            "advises; roll it out soon"
        ]
        lapsed = judge({0: date(2027, 1, 1)}, {0: date(2025, 12, 1)}).notes("license 1")
        assert lapsed[0].startswith("license 1 ended on 2025-12-01: phones that booted with it")

    def test_nothing_to_note_for_a_first_key(self) -> None:
        assert judge({0: date(2027, 1, 1)}, None).notes() == []


terms = st.dictionaries(
    st.integers(0, 27),
    st.one_of(st.just(NEVER), st.dates(FIRST_DAY, LAST_DAY)),
    max_size=6,
)


@given(terms, terms)
def test_nothing_is_lost_exactly_when_every_feature_lasts_at_least_as_long(
    after: dict[int, Term], before: dict[int, Term]
) -> None:
    succession = Succession(TODAY, after, before)
    keeps_all = all(
        slot in after and encode_term(after[slot]) >= encode_term(term)
        for slot, term in before.items()
    )
    assert (succession.losses(label) == []) == (keeps_all and not succession.expired)


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        (None, date(2027, 1, 1), Change.ADDED),
        (date(2027, 1, 1), None, Change.DROPPED),
        (NEVER, date(2027, 1, 1), Change.SHORTENED),
        (date(2027, 1, 1), NEVER, Change.EXTENDED),
        (NEVER, NEVER, Change.SAME),
    ],
)
def test_each_feature_says_how_it_changes(
    before: Term | None, after: Term | None, change: Change
) -> None:
    old = {0: before} if before is not None else {}
    new = {0: after} if after is not None else {}
    (feature,) = Succession(TODAY, new, old).features
    assert feature.change is change
