"""Terms: the 16-bit Duration words, their range, and the license-level rules built on them."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetkey.core.license import LicenseKey, LicenseType, check_issuable, encode_terms
from fleetkey.core.terms import (
    EPOCH,
    LAST_DAY,
    NEVER,
    decode_term,
    encode_term,
    parse_term,
    term_covers,
)
from fleetkey.errors import LicenseValueError


class TestEncoding:
    def test_never_is_ffff_and_not_granted_is_zero(self) -> None:
        assert encode_term(NEVER) == 0xFFFF
        assert decode_term(0xFFFF) is NEVER
        assert decode_term(0) is None

    def test_day_is_counted_from_2000_01_01(self) -> None:
        assert encode_term(date(2000, 1, 2)) == 1
        assert decode_term(0x15B1) == date(2015, 3, 16)  # the vendor file's word

    @given(st.dates(min_value=date(2000, 1, 2), max_value=LAST_DAY))
    def test_every_encodable_day_round_trips(self, day: date) -> None:
        assert decode_term(encode_term(day)) == day

    @given(
        st.dates(min_value=date(2000, 1, 2), max_value=LAST_DAY),
        st.dates(min_value=date(2000, 1, 2), max_value=LAST_DAY),
    )
    def test_words_order_like_days_and_never_is_longest(self, a: date, b: date) -> None:
        assert (encode_term(a) < encode_term(b)) == (a < b)
        assert encode_term(NEVER) > encode_term(a)

    @pytest.mark.parametrize("day", [EPOCH, date(1999, 12, 31), date(2179, 6, 6)])
    def test_days_outside_16_bits_are_refused(self, day: date) -> None:
        with pytest.raises(LicenseValueError, match="cannot be encoded"):
            encode_term(day)

    def test_last_day_is_covered_the_day_after_is_not(self) -> None:
        assert term_covers(date(2026, 6, 1), date(2026, 6, 1))
        assert not term_covers(date(2026, 6, 1), date(2026, 6, 2))
        assert term_covers(NEVER, date(2179, 1, 1))


class TestParseTerm:
    @pytest.mark.parametrize(
        ("text", "term"),
        [
            ("never", NEVER),
            ("NEVER", NEVER),
            (" 2027-01-31 ", date(2027, 1, 31)),
        ],
    )
    def test_accepted_forms(self, text: str, term: object) -> None:
        assert parse_term(text) == term

    @pytest.mark.parametrize("text", ["", "tomorrow", "2027-02-30", "31.01.2027", "1999-01-01"])
    def test_bad_forms_are_refused(self, text: str) -> None:
        with pytest.raises(LicenseValueError):
            parse_term(text)


class TestKeyTerms:
    def test_key_duration_is_its_latest_term(self) -> None:
        options, words = encode_terms({0: date(2026, 1, 1), 5: date(2027, 1, 1)})
        key = LicenseKey("0004f2000001", LicenseType.PHONE, options, words, b"\0" * 64)
        assert key.expiry() == date(2027, 1, 1)
        assert not key.is_expired(date(2026, 6, 1))
        assert key.valid_terms(date(2026, 6, 1)) == {5: date(2027, 1, 1)}
        assert key.is_expired(date(2027, 1, 2))

    def test_options_bit_set_exactly_where_terms_are(self) -> None:
        options, words = encode_terms({1: NEVER, 27: date(2030, 1, 1)})
        assert options == (1 << 1) | (1 << 27)
        assert words[1] == 0xFFFF
        assert words[0] == 0

    def test_slot_28_does_not_exist(self) -> None:
        with pytest.raises(LicenseValueError, match="slot 28 does not exist"):
            encode_terms({28: NEVER})

    def test_empty_terms_are_refused(self) -> None:
        with pytest.raises(LicenseValueError, match="at least one feature"):
            encode_terms({})


class TestIssuable:
    def key(self, options: int, words: tuple[int, ...]) -> LicenseKey:
        return LicenseKey("0004f2000001", LicenseType.PHONE, options, words, b"")

    def test_reserved_bits_are_refused(self) -> None:
        words = (0xFFFF, *[0] * 27)
        with pytest.raises(LicenseValueError, match="sets reserved bits 28-31"):
            check_issuable(self.key(0x1000_0001, words))

    def test_bit_without_term_is_refused(self) -> None:
        with pytest.raises(LicenseValueError, match="slot 1: Options bit is set but its Duration"):
            check_issuable(self.key(0b11, (0xFFFF, *[0] * 27)))

    def test_term_without_bit_is_refused(self) -> None:
        with pytest.raises(LicenseValueError, match="slot 0: Options bit is clear"):
            check_issuable(self.key(0, (0xFFFF, *[0] * 27)))
