"""bench/benchfleet.py says which filesystem a benchmark's files are on, and warns when it is
ext4 without a journal mounted with ``discard`` (freeing a replaced file waits for the device:
nginx's uploads do, fleetkey's spares free none)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import bench_module

# /proc/self/mountinfo lines: id parent MAJ:MIN root mount-point options [tags] - type source super
MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard,resv_strict
30 22 0:24 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
31 30 254:0 / /dev/shm rw,relatime shared:4 - ext4 /dev/vda rw,discard
40 22 7:0 / /mnt/j rw,relatime shared:5 - ext4 /dev/loop0 rw
41 22 254:0 /srv/data /mnt/my\\040data rw,relatime shared:6 - ext4 /dev/vda rw,discard
"""


@pytest.fixture(scope="module")
def benchfleet() -> ModuleType:
    return bench_module("benchfleet")


def test_no_mount_above_the_path_is_none(benchfleet: ModuleType) -> None:
    assert benchfleet.mount_of(MOUNTINFO.splitlines()[1], "0:24", "/tmp/x") is None


@pytest.mark.parametrize(
    ("device", "where", "found"),
    [
        ("254:0", "/tmp/x", ("ext4", "/dev/vda", "rw,relatime,discard,resv_strict")),
        ("7:0", "/mnt/j/fleetkey-bench", ("ext4", "/dev/loop0", "rw,relatime")),
        # a bind mount of a folder, at a mount point with a space
        ("254:0", "/mnt/my data/x", ("ext4", "/dev/vda", "rw,relatime,discard")),
        # the ext4 mounted over the tmpfs is the one a file there is on
        ("254:0", "/dev/shm/x", ("ext4", "/dev/vda", "rw,relatime,discard")),
        ("0:24", "/dev/shm/x", ("tmpfs", "tmpfs", "rw,nosuid,nodev")),
        # no mount of that device (a btrfs subvolume's own): the mount above the path
        ("0:99", "/mnt/j/x", ("ext4", "/dev/loop0", "rw,relatime")),
    ],
)
def test_the_mount_is_the_one_of_the_files_device(
    benchfleet: ModuleType, device: str, where: str, found: tuple[str, str, str] | None
) -> None:
    assert benchfleet.mount_of(MOUNTINFO, device, where) == found


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
