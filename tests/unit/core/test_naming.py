"""MAC addresses, site serials and what a license file's name says it holds."""

from __future__ import annotations

import re

import pytest

from fleetkey.core.license import LicenseType
from fleetkey.core.naming import (
    NAME_CHARS,
    free_text,
    key_misfit,
    license_file_type,
    normalize_mac,
    normalize_site_serial,
    phone_license_file,
)
from fleetkey.errors import InputError


@pytest.mark.parametrize(
    "text",
    [
        "0004f2a1b2c3",
        "0004F2A1B2C3",
        "00:04:f2:a1:b2:c3",
        "00-04-F2-A1-B2-C3",
        "0004.f2a1.b2c3",
        " 0004f2a1b2c3 ",
    ],
)
def test_mac_forms_normalize_to_12_lowercase_hex(text: str) -> None:
    assert normalize_mac(text) == "0004f2a1b2c3"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0004f2a1b2c", "expected 12 hex digits"),
        ("0004f2a1b2cg", "expected 12 hex digits"),
        ("00:04:f2-a1:b2:c3", "expected 12 hex digits"),
        ("000000000000", "reserved for the site-wide files"),
        ("", "expected 12 hex digits"),
    ],
)
def test_bad_macs_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        normalize_mac(text)


def test_site_serial_is_12_hex_digits() -> None:
    assert normalize_site_serial("100000000001") == "100000000001"
    with pytest.raises(InputError, match="site serial '1' is not valid"):
        normalize_site_serial("1")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("000000000000-license.cfg", (LicenseType.SITE, None)),
        ("0004F2A1B2C3-license.cfg", (LicenseType.PHONE, "0004f2a1b2c3")),
        ("0004f2a1b2c3.cfg", None),
        ("license.cfg", None),
        ("site-license.cfg", None),
    ],
)
def test_file_name_says_what_it_must_hold(name: str, expected: object) -> None:
    assert license_file_type(name) == expected


def test_phone_license_file_name() -> None:
    assert phone_license_file("0004f2a1b2c3") == "0004f2a1b2c3-license.cfg"


@pytest.mark.parametrize(
    ("key_type", "serial", "file_name", "misfit"),
    [
        (LicenseType.SITE, "100000000001", "000000000000-license.cfg", None),
        (LicenseType.PHONE, "0004f2000001", "0004f2000001-license.cfg", None),
        (LicenseType.PHONE, "0004f2000001", "000000000000-license.cfg",
         "a Phone key in 000000000000-license.cfg"),
        (LicenseType.SITE, "100000000001", "0004f2000001-license.cfg",
         "a Site key in 0004f2000001-license.cfg"),
        (LicenseType.PHONE, "0004f2000002", "0004f2000001-license.cfg",
         "Serial does not match the MAC in 0004f2000001-license.cfg"),
        (LicenseType.PHONE, "0004f2000002", "anything.cfg", None),
    ],
)  # fmt: skip
def test_keys_that_do_not_belong_in_a_file_name_say_why(
    key_type: LicenseType, serial: str, file_name: str, misfit: str | None
) -> None:
    assert key_misfit(key_type, serial, file_name) == misfit


class TestPhoneMacsAreUnicast:
    @pytest.mark.parametrize(
        ("text", "kind"),
        [
            ("ff:ff:ff:ff:ff:ff", "the broadcast address"),
            ("01:00:5e:00:00:fb", "a multicast address"),  # IPv4 mDNS
            ("33:33:00:00:00:01", "a multicast address"),  # IPv6 all-nodes
            ("0104f2000001", "a multicast address"),  # a vendor prefix with the I/G bit set
        ],
    )
    def test_group_addresses_are_refused(self, text: str, kind: str) -> None:
        with pytest.raises(InputError, match=f"is {kind}: a phone's MAC is unicast"):
            normalize_mac(text)

    def test_locally_administered_unicast_is_a_phone_mac(self) -> None:
        assert normalize_mac("02:00:00:00:00:01") == "020000000001"


class TestFreeText:
    def test_text_is_stripped(self) -> None:
        assert free_text("  Head office ", what="site name") == "Head office"

    @pytest.mark.parametrize(
        "text",
        ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", " =1+1"],
    )
    def test_spreadsheet_formulas_are_refused(self, text: str) -> None:
        with pytest.raises(InputError, match="a spreadsheet would take it for a formula"):
            free_text(text, what="site contact")

    @pytest.mark.parametrize("text", ["+49 30 1234-567", "+1 (555) 010.0199", "ops@example.test"])
    def test_telephone_numbers_and_addresses_are_text(self, text: str) -> None:
        assert free_text(text, what="site contact") == text

    def test_a_name_is_capped(self) -> None:
        with pytest.raises(InputError, match="site name is 200000 characters long, at most 200"):
            free_text("x" * 200_000, what="site name")
        assert free_text("x" * NAME_CHARS, what="site name") == "x" * NAME_CHARS

    @pytest.mark.parametrize(
        ("text", "code"), [("a\r\nb", "U+000D"), ("a\x00", "U+0000"), ("ab\u202ec", "U+202E")]
    )
    def test_control_characters_are_refused(self, text: str, code: str) -> None:
        with pytest.raises(InputError, match=re.escape(f"holds the control character {code}")):
            free_text(text, what="site name")
