"""The license file codec: exact bytes, round trips, the vendor file, and malformed input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetkey.core.codec import (
    MAX_FILE_BYTES,
    LicenseFile,
    parse_license_file,
    serialize_keys,
    serialize_license_file,
)
from fleetkey.core.license import SLOT_COUNT, LicenseKey, LicenseType
from fleetkey.errors import (
    EncodingDeclarationError,
    FileTooLargeError,
    LicenseAttributeError,
    LicenseFormatError,
    LicenseStructureError,
    MalformedXMLError,
    UnsafeXMLError,
)
from fleetkey.testing import make_license

from tests.helpers import VENDOR_FILE

HEAD = "<?xml version='1.0' encoding='ISO-8859-1' standalone='yes'?>\n"
SIG = "ab" * 64
DURATION = "0" * 108 + "FFFF"
GOOD_ATTRS = (
    f"Serial='0004f2000001' Version='2.0' Type='Phone' Options='00000001' "
    f"Duration='{DURATION}' Validation='{SIG}'"
)


def doc(body: str, head: str = HEAD) -> bytes:
    return (head + body).encode("iso-8859-1")


def key_with(**replace: str | None) -> bytes:
    """A one-key file whose attributes are replaced (None removes one)."""
    attrs = dict(re.findall(r"(\w+)='([^']*)'", GOOD_ATTRS))
    for name, value in replace.items():
        if value is None:
            attrs.pop(name)
        else:
            attrs[name] = value
    text = " ".join(f"{k}='{v}'" for k, v in attrs.items())
    return doc(f"<licenses><licenseKey {text}/></licenses>")


class TestSerialize:
    def test_writes_vendor_layout_single_quoted_in_spec_order(self) -> None:
        key = parse_license_file(doc(f"<licenses><licenseKey {GOOD_ATTRS}/></licenses>")).keys[0]
        assert serialize_keys([key]) == doc(f"<licenses><licenseKey {GOOD_ATTRS}/></licenses>\n")

    def test_empty_file_is_licenses_element_alone(self) -> None:
        assert serialize_license_file(LicenseFile()) == doc("<licenses/>\n")
        assert parse_license_file(doc("<licenses/>")).keys == ()

    def test_comment_is_written_before_root_and_read_back(self) -> None:
        data = serialize_keys([make_license()], comment=" issued for lab ")
        assert b"<!-- issued for lab -->\n<licenses>" in data
        assert parse_license_file(data).comments == (" issued for lab ",)

    def test_comment_with_double_dash_is_refused(self) -> None:
        with pytest.raises(LicenseStructureError, match="cannot contain '--'"):
            serialize_keys([make_license()], comment="a -- b")

    def test_output_is_iso_8859_1_encoded(self) -> None:
        data = serialize_keys([make_license()], comment="café")
        assert "café".encode("iso-8859-1") in data
        assert parse_license_file(data).comments == ("café",)


keys_strategy = st.builds(
    LicenseKey,
    serial=st.text("0123456789abcdef", min_size=12, max_size=12),
    type=st.sampled_from(LicenseType),
    options=st.integers(0, 2**32 - 1),
    words=st.tuples(*[st.integers(0, 0xFFFF)] * SLOT_COUNT),
    validation=st.binary(min_size=64, max_size=64) | st.binary(min_size=256, max_size=256),
)


class TestRoundTrip:
    @given(
        st.lists(keys_strategy, max_size=4),
        st.lists(st.text("abc xyz.", max_size=20), max_size=2),
    )
    def test_write_parse_write_gives_identical_bytes(
        self, keys: list[LicenseKey], comments: list[str]
    ) -> None:
        first = serialize_license_file(LicenseFile(tuple(keys), tuple(comments)))
        parsed = parse_license_file(first)
        assert parsed.keys == tuple(keys)
        assert serialize_license_file(parsed) == first

    def test_slot_zero_is_the_last_duration_word(self) -> None:
        words = (0x1234, *[0] * 27)
        key = LicenseKey("0004f2000001", LicenseType.PHONE, 1, words, b"\0" * 64)
        assert key.duration_hex.endswith("1234")
        assert key.duration_hex.startswith("0000")


class TestVendorFile:
    def test_vendor_site_license_parses_with_its_fields(self) -> None:
        parsed = parse_license_file(VENDOR_FILE.read_bytes(), source=VENDOR_FILE.name)
        (key,) = parsed.keys
        assert key.serial == "100000001007"
        assert key.type is LicenseType.SITE
        assert key.options == 0x77
        assert len(key.validation) == 256
        assert key.granted_slots() == (0, 1, 2, 4, 5, 6)
        assert {key.words[slot] for slot in key.granted_slots()} == {0x15B1}

    def test_vendor_fields_survive_reserialization(self) -> None:
        original = VENDOR_FILE.read_bytes()
        (key,) = parse_license_file(original).keys
        again = serialize_keys([key])
        assert key.duration_hex.encode() in original
        assert key.validation.hex().upper().encode() in original
        assert parse_license_file(again).keys == (key,)


MALFORMED: list[tuple[str, bytes, type[LicenseFormatError], str]] = [
    # size, encoding, safety
    (
        "oversized",
        doc("<licenses>" + " " * MAX_FILE_BYTES + "</licenses>"),
        FileTooLargeError,
        "larger than the limit",
    ),
    ("utf8 bom", b"\xef\xbb\xbf" + doc("<licenses/>"), EncodingDeclarationError, "byte-order mark"),
    ("utf16 bom", "<licenses/>".encode("utf-16"), EncodingDeclarationError, "byte-order mark"),
    (
        "utf-8 declared",
        doc("<licenses/>", "<?xml version='1.0' encoding='UTF-8'?>"),
        EncodingDeclarationError,
        "names encoding 'UTF-8', expected 'ISO-8859-1'",
    ),
    (
        "utf-16 declared",
        doc("<licenses/>", '<?xml version="1.0" encoding="UTF-16"?>'),
        EncodingDeclarationError,
        "'UTF-16'",
    ),
    (
        "declaration without encoding",
        doc("<licenses/>", "<?xml version='1.0'?>"),
        EncodingDeclarationError,
        "names encoding None",
    ),
    ("doctype", doc("<!DOCTYPE licenses><licenses/>"), UnsafeXMLError, "DTD <!DOCTYPE licenses>"),
    (
        "billion laughs",
        doc('<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><licenses>&b;</licenses>'),
        UnsafeXMLError,
        "DTD",
    ),
    (
        "external entity",
        doc('<!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]><licenses>&x;</licenses>'),
        UnsafeXMLError,
        "DTD",
    ),
    (
        "external dtd",
        doc('<!DOCTYPE licenses SYSTEM "http://127.0.0.1/l.dtd"><licenses/>'),
        UnsafeXMLError,
        "DTD",
    ),
    ("undefined entity", doc("<licenses>&x;</licenses>"), MalformedXMLError, "undefined entity"),
    # well-formedness
    ("empty file", b"", MalformedXMLError, "no element found"),
    ("truncated", doc("<licenses><licenseKey Serial='0004"), MalformedXMLError, "not well-formed"),
    ("unclosed root", doc("<licenses>"), MalformedXMLError, "no element found"),
    ("two roots", doc("<licenses/><licenses/>"), MalformedXMLError, "junk after document element"),
    (
        "duplicate attribute",
        doc(f"<licenses><licenseKey {GOOD_ATTRS} Serial='0004f2000002'/></licenses>"),
        MalformedXMLError,
        "duplicate attribute",
    ),
    (
        "invalid latin-1 in utf-8 file",
        b"<licenses><!-- caf\xe9 --></licenses>",
        MalformedXMLError,
        "not well-formed",
    ),
    # structure
    ("wrong root", doc("<license/>"), LicenseStructureError, "root element is <license>"),
    (
        "namespaced root",
        doc("<x:licenses xmlns:x='urn:x'/>"),
        LicenseStructureError,
        "expected <licenses>",
    ),
    ("attribute on root", doc("<licenses v='1'/>"), LicenseStructureError, "has attributes ['v']"),
    (
        "foreign child",
        doc("<licenses><key/></licenses>"),
        LicenseStructureError,
        "element <key> inside <licenses>",
    ),
    (
        "nested child",
        doc(f"<licenses><licenseKey {GOOD_ATTRS}><x/></licenseKey></licenses>"),
        LicenseStructureError,
        "expected it empty",
    ),
    ("text in root", doc("<licenses>hello</licenses>"), LicenseStructureError, "text 'hello'"),
    (
        "processing instruction",
        doc("<licenses><?php x?></licenses>"),
        LicenseStructureError,
        "processing instruction <?php?>",
    ),
    # attributes
    (
        "missing Validation",
        key_with(Validation=None),
        LicenseAttributeError,
        "key 1: Validation is missing",
    ),
    ("missing Serial", key_with(Serial=None), LicenseAttributeError, "Serial is missing"),
    (
        "extra attribute",
        key_with(Expiry="2026-01-01"),
        LicenseAttributeError,
        "Expiry is not a licenseKey attribute",
    ),
    (
        "lowercase attribute name",
        doc(f"<licenses><licenseKey {GOOD_ATTRS.replace('Serial=', 'serial=')}/></licenses>"),
        LicenseAttributeError,
        "case-sensitive: Serial",
    ),
    (
        "short serial",
        key_with(Serial="0004f200001"),
        LicenseAttributeError,
        "Serial has 11 characters, expected 12 hex digits",
    ),
    (
        "non-hex serial",
        key_with(Serial="0004f200000g"),
        LicenseAttributeError,
        "Serial '0004f200000g' is not hexadecimal",
    ),
    (
        "short duration",
        key_with(Duration="0" * 110),
        LicenseAttributeError,
        "Duration has 110 characters, expected 112 hex digits",
    ),
    ("non-hex duration", key_with(Duration="Z" * 112), LicenseAttributeError, "is not hexadecimal"),
    (
        "long options",
        key_with(Options="000000001"),
        LicenseAttributeError,
        "Options has 9 characters, expected 8",
    ),
    ("options with 0x", key_with(Options="0x000001"), LicenseAttributeError, "not hexadecimal"),
    (
        "validation odd length",
        key_with(Validation="a" * 127),
        LicenseAttributeError,
        "Validation has 127 hex digits, expected 128 (Ed25519) or 512 (RSA-2048)",
    ),
    (
        "validation not hex",
        key_with(Validation="x" * 128),
        LicenseAttributeError,
        "Validation 'xxxx",
    ),
    (
        "wrong version",
        key_with(Version="3.0"),
        LicenseAttributeError,
        "Version is '3.0', expected '2.0'",
    ),
    (
        "wrong type",
        key_with(Type="Device"),
        LicenseAttributeError,
        "Type is 'Device', expected 'Phone' or 'Site'",
    ),
    ("lowercase type", key_with(Type="phone"), LicenseAttributeError, "Type is 'phone'"),
    (
        "serial with spaces",
        key_with(Serial=" 0004f20000 "),
        LicenseAttributeError,
        "is not hexadecimal",
    ),
]


class TestMalformed:
    def test_table_has_at_least_thirty_cases(self) -> None:
        assert len(MALFORMED) >= 30

    @pytest.mark.parametrize(
        ("data", "error", "fragment"),
        [case[1:] for case in MALFORMED],
        ids=[case[0] for case in MALFORMED],
    )
    def test_malformed_file_is_rejected_with_specific_error(
        self, data: bytes, error: type[LicenseFormatError], fragment: str
    ) -> None:
        with pytest.raises(error) as caught:
            parse_license_file(data, source="bad.cfg")
        assert type(caught.value) is error
        assert fragment in str(caught.value)
        assert str(caught.value).startswith("bad.cfg")

    def test_attribute_errors_name_key_index_and_attribute(self) -> None:
        good = f"<licenseKey {GOOD_ATTRS}/>"
        bad = f"<licenseKey {GOOD_ATTRS.replace(DURATION, DURATION[:-2])}/>"
        with pytest.raises(LicenseAttributeError) as caught:
            parse_license_file(doc(f"<licenses>{good}{bad}</licenses>"), source="site.cfg")
        assert caught.value.key_index == 2
        assert caught.value.attribute == "Duration"
        assert str(caught.value) == (
            "site.cfg key 2: Duration has 110 characters, expected 112 hex digits"
        )

    def test_file_without_declaration_is_read(self) -> None:
        assert parse_license_file(b"<licenses/>").keys == ()

    def test_reserved_bits_parse_but_are_kept_visible(self) -> None:
        parsed = parse_license_file(key_with(Options="F0000001"))
        assert parsed.keys[0].options == 0xF0000001
