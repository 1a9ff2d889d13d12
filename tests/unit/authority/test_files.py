"""Writing files: whole or not at all, the old file kept on any failure, owner-only by default.

The full-disk cases run on a real 1 MiB tmpfs filled with a ballast file.
"""

from __future__ import annotations

import errno
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetkey.authority.files import atomic_write, write_new

from tests.tmpfs import BALLAST, fill, mounted_tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk") as mount:
        yield mount


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


class TestOnAFullDisk:
    def test_replacing_a_file_fails_clearly_and_keeps_the_old_one(self, small_disk: Path) -> None:
        target = small_disk / "keyring.json"
        atomic_write(target, b"old contents\n")
        fill(small_disk)
        with pytest.raises(OSError, match="No space left on device") as caught:
            atomic_write(target, b"new contents\n" * 1000)
        assert caught.value.errno == errno.ENOSPC
        assert caught.value.filename == str(target)  # the target, not the temporary
        assert target.read_bytes() == b"old contents\n"
        assert names(small_disk) == sorted([BALLAST, "keyring.json"])

    def test_creating_a_file_leaves_no_file_at_all(self, small_disk: Path) -> None:
        fill(small_disk)
        target = small_disk / "ed25519-00000000.key.pem"
        with pytest.raises(OSError, match="cannot write") as caught:
            write_new(target, b"-----BEGIN PRIVATE KEY-----\n" * 10)
        assert caught.value.errno == errno.ENOSPC
        assert not target.exists()
        assert names(small_disk) == [BALLAST]

    def test_once_space_is_freed_the_same_write_succeeds(self, small_disk: Path) -> None:
        target = small_disk / "api-token.sha256"
        ballast = fill(small_disk)
        with pytest.raises(OSError, match="No space left"):
            atomic_write(target, b"sha256:0\n")
        ballast.unlink()
        atomic_write(target, b"sha256:0\n")
        assert target.read_bytes() == b"sha256:0\n"


class TestWrites:
    def test_files_are_owner_only_unless_asked(self, tmp_path: Path) -> None:
        atomic_write(tmp_path / "a", b"a")
        write_new(tmp_path / "b", b"b")
        atomic_write(tmp_path / "c", b"c", mode=0o644)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        assert modes == {"a": 0o600, "b": 0o600, "c": 0o644}

    def test_write_new_never_replaces_a_file(self, tmp_path: Path) -> None:
        target = tmp_path / "k.key.pem"
        target.write_bytes(b"the key")
        with pytest.raises(FileExistsError, match="already exists, not replaced") as caught:
            write_new(target, b"another key")
        assert caught.value.filename == str(target)
        assert target.read_bytes() == b"the key"
        assert names(tmp_path) == ["k.key.pem"]

    def test_atomic_write_replaces_and_leaves_no_temporary(self, tmp_path: Path) -> None:
        target = tmp_path / "keyring.json"
        atomic_write(target, b"1")
        atomic_write(target, b"2")
        assert target.read_bytes() == b"2"
        assert names(tmp_path) == ["keyring.json"]

    def test_a_missing_directory_is_reported_and_leaves_nothing(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            atomic_write(tmp_path / "gone" / "x", b"x")
        assert names(tmp_path) == []
