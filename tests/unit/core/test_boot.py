"""What a phone asks for at boot, from the master configuration it was served (domain.md §4-§5)."""

from __future__ import annotations

import pytest

from fleetkey.core.device.boot import (
    application_requests,
    boot_log,
    config_files,
    image_names,
    master_names,
)
from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.masterconfig import Application, parse_master_config
from fleetkey.core.useragent import BootStage

MAC = "0004f2000001"
VVX = PhoneConfig(MAC, model="VVX_500")
SPIP = PhoneConfig(MAC, model="SPIP_670", firmware="4.0.15.1047")
MASTER = b"""<APPLICATION APP_FILE_PATH="fw/sip.ld"
 CONFIG_FILES="sip.cfg, [PHONE_MAC_ADDRESS]-x.cfg, [PHONE_MODEL].cfg" LICENSE_DIRECTORY="lic/" LOG_FILE_DIRECTORY="http://logs.example/up"
 CONTACTS_DIRECTORY="contacts" OVERRIDES_DIRECTORY="over">
  <APPLICATION_VVX500 APP_FILE_PATH_VVX500="fw/[PHONE_PART_NUMBER].vvx.ld"/>
</APPLICATION>"""


def app(model: str) -> Application:
    return parse_master_config(MASTER).for_model(model)


class TestMasters:
    def test_the_phone_tries_its_own_then_the_default(self) -> None:
        assert master_names(MAC) == (f"{MAC}.cfg", "000000000000.cfg")

    def test_a_master_named_in_the_server_url_comes_first_then_the_usual_ones(self) -> None:
        """domain.md §4: named, else <mac>.cfg, else the default (a missing named master
        skipped both)."""
        assert master_names(MAC, "lab.cfg") == ("lab.cfg", f"{MAC}.cfg", "000000000000.cfg")
        assert master_names(MAC, "000000000000.cfg") == ("000000000000.cfg", f"{MAC}.cfg")


class TestImage:
    def test_the_part_number_image_comes_before_the_plain_name(self) -> None:
        assert image_names(SPIP, app("SPIP_670")) == ("fw/2345-12670-001.sip.ld", "fw/sip.ld")

    def test_the_model_override_and_its_placeholder(self) -> None:
        assert image_names(VVX, app("VVX_500")) == ("fw/3111-44500-001.vvx.ld",)

    def test_an_image_url_is_fetched_from_its_path(self) -> None:
        url = Application({"APP_FILE_PATH": "http://fw.example/images/sip.ld"})
        assert image_names(SPIP, url) == ("images/2345-12670-001.sip.ld", "images/sip.ld")

    @pytest.mark.parametrize("given", [None, Application({}), Application({"APP_FILE_PATH": " "})])
    def test_no_application_file_no_image(self, given: Application | None) -> None:
        assert image_names(VVX, given) == ()

    def test_a_model_without_part_number_tries_the_name_alone(self) -> None:
        assert image_names(PhoneConfig(MAC, model="XYZ_1"), app("XYZ_1")) == ("fw/sip.ld",)


class TestApplication:
    def test_config_files_in_order_then_overrides_licenses_contacts_and_the_log(self) -> None:
        asked = application_requests(VVX, app("VVX_500"), licenses=True)
        assert [(r.method, r.name, r.license) for r in asked] == [
            ("GET", "sip.cfg", False),
            ("GET", f"{MAC}-x.cfg", False),
            ("GET", "VVX_500.cfg", False),
            ("GET", f"over/{MAC}-phone.cfg", False),
            ("GET", f"over/{MAC}-web.cfg", False),
            ("GET", "lic/000000000000-license.cfg", True),
            ("GET", f"lic/{MAC}-license.cfg", True),
            ("GET", f"contacts/{MAC}-directory.xml", False),
            ("GET", "contacts/000000000000-directory.xml", False),
            ("PUT", f"up/{MAC}-app.log", False),
        ]
        assert {r.stage for r in asked} == {BootStage.APPLICATION}

    def test_the_boot_log_goes_to_the_log_directory_from_the_updater(self) -> None:
        log = boot_log(VVX, app("VVX_500"))
        assert (log.method, log.name, log.stage) == ("PUT", f"up/{MAC}-boot.log", BootStage.UPDATER)

    def test_without_licenses_asked_no_license_file(self) -> None:
        asked = application_requests(VVX, app("VVX_500"), licenses=False)
        assert not [r for r in asked if r.license or "license" in r.name]

    def test_without_a_master_the_fallback_asks_its_own_files_at_the_root(self) -> None:
        config = PhoneConfig(MAC, config_files=("own.cfg",))
        names = [r.name for r in application_requests(config, None, licenses=True)]
        assert names == [
            "own.cfg",
            f"{MAC}-phone.cfg",
            f"{MAC}-web.cfg",
            "000000000000-license.cfg",
            f"{MAC}-license.cfg",
            f"{MAC}-directory.xml",
            "000000000000-directory.xml",
            f"{MAC}-app.log",
        ]
        assert boot_log(config, None).name == f"{MAC}-boot.log"

    def test_a_configuration_check_reads_the_master_and_its_files(self) -> None:
        assert config_files(VVX, "000000000000.cfg", app("VVX_500")) == (
            "000000000000.cfg",
            "sip.cfg",
            f"{MAC}-x.cfg",
            "VVX_500.cfg",
        )
