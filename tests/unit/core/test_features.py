"""The feature catalog: shipped defaults, operator extensions, and malformed catalogs."""

from __future__ import annotations

import pytest

from fleetkey.core.features import Feature, default_catalog, parse_catalog
from fleetkey.errors import FeatureCatalogError

DEFAULT_NAMES = [
    "corporate-directory",
    "conference-management",
    "nway-conference",
    "vqmon",
    "call-recording",
    "enhanced-feature-keys",
]


class TestDefaults:
    def test_defaults_include_the_domain_features(self) -> None:
        catalog = default_catalog()
        for name in DEFAULT_NAMES:
            assert catalog.name_of(catalog.slot_of(name)) == name

    def test_unknown_slot_gets_a_label(self) -> None:
        assert default_catalog().label(20) == "slot-20"
        assert default_catalog().slot_of("slot-20") == 20

    def test_unknown_name_lists_the_known_ones(self) -> None:
        with pytest.raises(
            FeatureCatalogError, match=r"unknown feature 'fax'.*corporate-directory"
        ):
            default_catalog().slot_of("fax")


class TestExtension:
    def test_operator_adds_a_slot(self) -> None:
        extra = parse_catalog('[[feature]]\nslot = 7\nname = "h323"\n', "features.toml")
        catalog = default_catalog().extended(extra, "features.toml")
        assert catalog.slot_of("h323") == 7
        assert len(catalog) == len(default_catalog()) + 1

    def test_operator_may_reword_a_known_feature(self) -> None:
        extra = [Feature(3, "vqmon", "RTCP-XR to our collector")]
        catalog = default_catalog().extended(extra, "f")
        assert next(f for f in catalog if f.slot == 3).description == "RTCP-XR to our collector"

    def test_renaming_a_taken_slot_is_refused(self) -> None:
        with pytest.raises(FeatureCatalogError, match="slot 0 is already 'corporate-directory'"):
            default_catalog().extended([Feature(0, "ldap")], "f")

    def test_moving_a_known_name_is_refused(self) -> None:
        with pytest.raises(FeatureCatalogError, match="'vqmon' is already slot 3"):
            default_catalog().extended([Feature(9, "vqmon")], "f")


BAD_CATALOGS = [
    ("not toml", "[[feature]\nslot=1", "not valid TOML"),
    ("unknown top key", "[other]\nx = 1\n", "unexpected keys ['other']"),
    ("feature not array", 'feature = "x"\n', "array of tables"),
    ("slot out of range", '[[feature]]\nslot = 28\nname = "x"\n', "slot is 28, expected"),
    ("slot not int", '[[feature]]\nslot = "1"\nname = "x"\n', "slot is '1'"),
    ("slot bool", '[[feature]]\nslot = true\nname = "x"\n', "slot is True"),
    ("bad name", '[[feature]]\nslot = 9\nname = "Call Park"\n', "name is 'Call Park'"),
    ("reserved name", '[[feature]]\nslot = 9\nname = "slot-9"\n', "reserved for unnamed"),
    ("extra key", '[[feature]]\nslot = 9\nname = "x"\ncolor = 1\n', "unexpected keys ['color']"),
    (
        "description not str",
        '[[feature]]\nslot = 9\nname = "x"\ndescription = 1\n',
        "description must be a string",
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [c[1:] for c in BAD_CATALOGS], ids=[c[0] for c in BAD_CATALOGS]
)
def test_malformed_catalog_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(FeatureCatalogError) as caught:
        parse_catalog(text, "features.toml")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("features.toml")
