"""The data directory is private: made 0700/0600, and brought back to that when it was loosened."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetkey.authority.datadir import DataDir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual 022: files and directories would be readable by everyone unless made private."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


class TestCreate:
    def test_a_new_data_directory_is_private(self, tmp_path: Path) -> None:
        data = DataDir(tmp_path / "data")
        assert data.create()
        assert mode(data.root) == 0o700
        assert mode(data.keys) == 0o700
        assert mode(data.provisioning) == 0o700
        assert mode(data.features_file) == 0o600
        assert data.tighten() == []

    def test_create_again_keeps_what_exists(self, tmp_path: Path) -> None:
        data = DataDir(tmp_path / "data")
        data.create()
        data.features_file.write_text("# mine\n")
        assert not data.create()
        assert data.features_file.read_text() == "# mine\n"


class TestTighten:
    def test_group_and_other_bits_come_off_everything_fleetkey_keeps(self, tmp_path: Path) -> None:
        data = DataDir(tmp_path / "data")
        data.create()
        loose = {
            data.root: 0o755,
            data.keys: 0o755,
            data.provisioning / "sub": 0o775,
            data.root / "uploads": 0o777,
        }
        for directory, bits in loose.items():
            directory.mkdir(exist_ok=True)
            directory.chmod(bits)
        files = {
            data.root / "fleetkey.db": 0o644,
            data.root / "fleetkey.db-wal": 0o644,
            data.root / "fleetkey.db-shm": 0o664,
            data.keys / "keyring.json": 0o644,
            data.keys / "a.pub.pem": 0o444,
            data.provisioning / "sub" / "0004f2000001-license.cfg": 0o644,
            data.root / "fetches-unwritten.jsonl": 0o640,
            data.features_file: 0o644,
        }
        for path, bits in files.items():
            path.write_text("x")
            path.chmod(bits)
        changes = {change.path: (change.was, change.now) for change in data.tighten()}
        expected = {path: (bits, bits & 0o700) for path, bits in {**loose, **files}.items()}
        assert changes == expected
        for path, (_, now) in expected.items():
            assert mode(path) == now
        assert data.tighten() == []

    def test_what_fleetkey_does_not_keep_and_link_targets_are_left_alone(
        self, tmp_path: Path
    ) -> None:
        data = DataDir(tmp_path / "data")
        data.create()
        foreign = data.root / "operator-notes.txt"
        foreign.write_text("mine")
        foreign.chmod(0o644)
        outside = tmp_path / "firmware.ld"
        outside.write_text("firmware")
        outside.chmod(0o644)
        (data.provisioning / "sip.ld").symlink_to(outside)
        assert data.tighten() == []
        assert mode(foreign) == 0o644
        assert mode(outside) == 0o644

    def test_the_change_reads_as_path_and_modes(self, tmp_path: Path) -> None:
        data = DataDir(tmp_path / "data")
        data.create()
        data.features_file.chmod(0o644)
        (change,) = data.tighten()
        assert str(change) == f"{data.features_file} 0644 -> 0600"
