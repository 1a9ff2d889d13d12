"""bench/benchfleet.py says which filesystem a benchmark's files are on, and warns when it is
ext4 without a journal mounted with ``discard`` (freeing a replaced file waits for the device:
nginx's uploads do, fleetkey's spares free none)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import bench_module


@pytest.fixture(scope="module")
def benchfleet() -> ModuleType:
    return bench_module("benchfleet")


def test_ext4_without_a_journal_mounted_with_discard_is_warned_of(benchfleet: ModuleType) -> None:
    found = {"type": "ext4", "device": "/dev/vda", "options": "rw,discard", "journal": False}
    lines = benchfleet.describe_filesystem(Path("/tmp"), found)
    assert lines[0] == "files on /tmp: ext4, /dev/vda, NO journal, discard"
    assert "warning: ext4 without a journal, mounted with discard" in lines[1]
    assert "which favours fleetkey" in " ".join(lines)
    assert all(len(line) <= 80 for line in lines)


@pytest.mark.parametrize(
    ("found", "said"),
    [
        ({"type": "ext4", "device": "/dev/loop0", "options": "rw", "journal": True},
         "files on /x: ext4, /dev/loop0, journal"),
        ({"type": "ext4", "device": "/dev/vdb", "options": "rw", "journal": False},
         "files on /x: ext4, /dev/vdb, NO journal"),
        ({"type": "ext4", "device": "/dev/vdc", "options": "rw,discard", "journal": True},
         "files on /x: ext4, /dev/vdc, journal, discard"),
        ({"type": "xfs", "device": "/dev/vdd", "options": "rw,discard", "journal": None},
         "files on /x: xfs, /dev/vdd, discard"),
        ({"type": "tmpfs", "device": "tmpfs", "options": "rw", "journal": None},
         "files on /x: tmpfs, tmpfs"),
        ({"type": None, "device": None, "options": None, "journal": None},
         "files on /x: filesystem unknown"),
    ],
)  # fmt: skip
def test_other_disks_are_named_without_a_warning(
    benchfleet: ModuleType, found: dict[str, object], said: str
) -> None:
    assert benchfleet.describe_filesystem(Path("/x"), found) == [said]


def test_the_filesystem_of_a_real_directory_is_read(benchfleet: ModuleType, tmp_path: Path) -> None:
    found = benchfleet.filesystem(tmp_path)
    assert found["type"] is not None
    assert found["options"] is not None
    if found["type"] != "ext4":
        assert found["journal"] is None  # only ext4 is asked whether it has a journal
    elif Path("/sys/fs/ext4").is_dir():
        assert found["journal"] in (True, False)  # sysfs answered for its device


def test_an_unreadable_path_is_an_unknown_filesystem(
    benchfleet: ModuleType, tmp_path: Path
) -> None:
    found = benchfleet.filesystem(tmp_path / "gone")
    assert found == {"type": None, "device": None, "options": None, "journal": None}
    assert os.path.exists(tmp_path)
