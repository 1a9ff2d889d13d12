"""Where phones look for license files: the directories the tree's master configurations name."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fleetkey.serve.layout import LayoutScanner


def master(license_dir: str) -> str:
    return f'<APPLICATION APP_FILE_PATH="sip.ld" LICENSE_DIRECTORY="{license_dir}"/>'


def test_the_root_and_every_named_directory_hold_license_names(tmp_path: Path) -> None:
    (tmp_path / "000000000000.cfg").write_text(master("licenses"))
    (tmp_path / "0004f2a1b2c3.cfg").write_text(master("per-phone/lic"))
    (tmp_path / "100000000001").mkdir()
    (tmp_path / "100000000001" / "000000000000.cfg").write_text(master("site-lic"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "000000000000.cfg").write_text(master("ignored"))  # not a master place
    layout = LayoutScanner(tmp_path).scan()
    assert layout.license_dirs == {(), ("licenses",), ("per-phone", "lic"), ("site-lic",)}
    assert layout.master_configs == 3


def test_a_changed_master_configuration_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "000000000000.cfg"
    path.write_text(master("a"))
    scanner = LayoutScanner(tmp_path)
    assert scanner.scan().license_dirs == {(), ("a",)}
    path.write_text(master("bb"))
    assert scanner.scan().license_dirs == {(), ("bb",)}
    path.unlink()
    assert scanner.scan().license_dirs == {()}


def test_a_master_configuration_that_does_not_parse_is_skipped_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "000000000000.cfg").write_text("<APPLICATION")
    (tmp_path / "0004f2a1b2c3.cfg").write_text(master("ok"))
    with caplog.at_level(logging.WARNING):
        layout = LayoutScanner(tmp_path).scan()
    assert layout.license_dirs == {(), ("ok",)}
    assert "000000000000.cfg: not well-formed XML" in caplog.text
