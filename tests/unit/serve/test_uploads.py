"""Which files phones may upload, how large, and where they land."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fleetkey.errors import UploadRefusedError
from fleetkey.serve.uploads import CAPS, Upload, store_upload, upload_rule


@pytest.mark.parametrize(
    ("name", "mac"),
    [
        ("0004f2a1b2c3-boot.log", "0004f2a1b2c3"),
        ("0004F2A1B2C3-app.log", "0004f2a1b2c3"),
        ("0004f2a1b2c3-appFlash.log", "0004f2a1b2c3"),
        ("0004f2a1b2c3-phone.cfg", "0004f2a1b2c3"),
        ("0004f2a1b2c3-web.cfg", "0004f2a1b2c3"),
        ("0004f2a1b2c3-calls.xml", "0004f2a1b2c3"),
        ("0004f2a1b2c3-directory.xml", "0004f2a1b2c3"),
    ],
)
def test_names_phones_write(name: str, mac: str) -> None:
    assert upload_rule(name) == Upload(mac, CAPS[name.split("-", 1)[1]], name)


@pytest.mark.parametrize(
    "name",
    [
        "0004f2a1b2c3-license.cfg",
        "0004f2a1b2c3.cfg",
        "000000000000-app.log",
        "sip.ld",
        "0004f2a1b2c3-app.log.php",
        "0004f2a1b2c-app.log",
        "x0004f2a1b2c3-app.log",
    ],
)
def test_other_names_are_refused(name: str, tmp_path: Path) -> None:
    assert upload_rule(name) is None
    with pytest.raises(UploadRefusedError, match="is not a file phones upload"):
        store_upload(tmp_path, name, b"x")
    assert list(tmp_path.iterdir()) == []


def test_upload_is_stored_per_mac_in_lowercase(tmp_path: Path) -> None:
    assert store_upload(tmp_path, "0004F2A1B2C3-boot.log", b"booted") is True
    assert store_upload(tmp_path, "0004f2a1b2c3-boot.log", b"again") is False
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")] == [
        "0004f2a1b2c3",
        "0004f2a1b2c3/0004f2a1b2c3-boot.log",
    ]
    assert (tmp_path / "0004f2a1b2c3" / "0004f2a1b2c3-boot.log").read_bytes() == b"again"


def test_cap_is_enforced(tmp_path: Path) -> None:
    with pytest.raises(UploadRefusedError, match="the limit is"):
        store_upload(tmp_path, "0004f2a1b2c3-web.cfg", b"x" * (CAPS["web.cfg"] + 1))


def test_concurrent_uploads_of_one_name_all_succeed_and_the_file_is_one_of_them(
    tmp_path: Path,
) -> None:
    bodies = [bytes([n]) * 1000 for n in range(200)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda body: store_upload(tmp_path, "0004f2a1b2c3-app.log", body), bodies))
    stored = (tmp_path / "0004f2a1b2c3" / "0004f2a1b2c3-app.log").read_bytes()
    assert stored in bodies
    assert sorted(p.name for p in (tmp_path / "0004f2a1b2c3").iterdir()) == [
        "0004f2a1b2c3-app.log"
    ]  # no temporary file left behind


def test_uploads_are_private_to_the_server(tmp_path: Path) -> None:
    store_upload(tmp_path, "0004f2a1b2c3-web.cfg", b"<WEB/>")
    folder = tmp_path / "0004f2a1b2c3"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "0004f2a1b2c3-web.cfg").stat().st_mode) == 0o600
