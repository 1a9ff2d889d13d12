"""Master configuration files: what a phone fetches and where, real layouts and bad files."""

from __future__ import annotations

import pytest

from fleetkey.core.masterconfig import (
    Directory,
    directory_segments,
    expand,
    model_key,
    parse_master_config,
)
from fleetkey.errors import MasterConfigError

# the stock SIP 3.x layout (domain.md S3, S4)
STOCK = b"""<?xml version="1.0" standalone="yes"?>
<!-- Default Master SIP Configuration File-->
<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone1.cfg, sip.cfg" MISC_FILES=""
 LOG_FILE_DIRECTORY="logs" OVERRIDES_DIRECTORY="overrides" CONTACTS_DIRECTORY=""
 LICENSE_DIRECTORY="licenses/" USER_PROFILES_DIRECTORY="" CALL_LISTS_DIRECTORY="calls">
  <APPLICATION_SPIP300 APP_FILE_PATH_SPIP300="sip_212.ld"
   CONFIG_FILES_SPIP300="phone1_212.cfg, sip_212.cfg"/>
  <APPLICATION_VVX500 APP_FILE_PATH_VVX500="[PHONE_PART_NUMBER].sip.ld"/>
</APPLICATION>
"""


def test_the_stock_layout_names_files_and_directories() -> None:
    config = parse_master_config(STOCK)
    common = config.common
    assert common.app_file_path == "sip.ld"
    assert common.config_files == ("phone1.cfg", "sip.cfg")
    assert common.misc_files == ()
    assert common.directory(Directory.LICENSE) == ("licenses",)
    assert common.directory(Directory.LOG_FILE) == ("logs",)
    assert common.directory(Directory.CONTACTS) == ()


def test_model_overrides_apply_to_that_model_only() -> None:
    config = parse_master_config(STOCK)
    old = config.for_model("SPIP_300")
    assert old.app_file_path == "sip_212.ld"
    assert old.config_files == ("phone1_212.cfg", "sip_212.cfg")
    assert old.directory(Directory.LICENSE) == ("licenses",)  # not overridden: the common one
    assert config.for_model("VVX_500").app_file_path == "[PHONE_PART_NUMBER].sip.ld"
    assert config.for_model("VVX_600").app_file_path == "sip.ld"
    assert config.for_model(None) is config.common


def test_placeholders_are_expanded_as_the_phone_does() -> None:
    assert (
        expand(
            "phone[PHONE_MAC_ADDRESS].cfg, [PHONE_MODEL].cfg", mac="0004f2a1b2c3", model="VVX500"
        )
        == "phone0004f2a1b2c3.cfg, VVX500.cfg"
    )
    assert expand("[PHONE_PART_NUMBER].sip.ld", mac="x", part_number="3111-44500-001") == (
        "3111-44500-001.sip.ld"
    )


@pytest.mark.parametrize(
    ("value", "segments"),
    [
        ("", ()),
        ("licenses", ("licenses",)),
        ("/licenses/", ("licenses",)),
        ("a/./b", ("a", "b")),
        ("http://prov.example.com/fleet/licenses", ("fleet", "licenses")),
        ("ftp://PlcmSpIp:PlcmSpIp@10.0.0.1/lic", ("lic",)),
    ],
)
def test_directories_become_path_segments(value: str, segments: tuple[str, ...]) -> None:
    assert directory_segments(value) == segments


def test_every_model_s_license_directory_is_known() -> None:
    data = (
        b'<APPLICATION LICENSE_DIRECTORY="a">'
        b'<APPLICATION_SPIP300 LICENSE_DIRECTORY_SPIP300="b"/></APPLICATION>'
    )
    assert parse_master_config(data).directories(Directory.LICENSE) == {("a",), ("b",)}


def test_model_names_of_user_agents_and_files_agree() -> None:
    assert model_key("VVX_500") == model_key("VVX500") == "VVX500"
    assert model_key("SPIP_550") == "SPIP550"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<licenses/>", "x.cfg: the root element is <licenses>, expected <APPLICATION>"),
        (b"<APPLICATION", "x.cfg: not well-formed XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><APPLICATION/>',
            "x.cfg: unsafe XML (DTDForbidden)",
        ),
        (b"<APPLICATION/>" + b" " * (1024 * 1024), "x.cfg: 1048590 bytes, larger than 1048576"),
        (b"", "x.cfg: not well-formed XML"),
        (
            b"<?xml version='1.0' encoding='bogus'?><APPLICATION/>",
            "x.cfg: cannot read the encoding its XML declaration names (unknown encoding: bogus)",
        ),
        (
            b"<?xml version='1.0' encoding='Shift_JIS'?><APPLICATION/>",
            "x.cfg: cannot read the encoding its XML declaration names (multi-byte encodings",
        ),
    ],
)
def test_bad_files_are_refused_with_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(
        MasterConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        parse_master_config(data, source="x.cfg")
