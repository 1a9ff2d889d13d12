"""Where small uploads are written: on the event loop, unless the uploads' filesystem makes a
rename wait for a device (serve/http/putting.py, docs/serve.md "Throughput with both cores")."""

from __future__ import annotations

from pathlib import Path

from fleetkey.serve.http.putting import discards, upload_place, waits_for_device
from fleetkey.serve.mounts import Mount, mount_of

# this VM's own lines (ext4 with discard at /, tmpfs twice at /dev/shm), and others
MOUNTS = """\
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
50 27 8:1 / /srv/quick rw,relatime - ext4 /dev/sdb1 rw,nodiscard
51 27 0:50 / /srv/nfs rw,relatime shared:7 - nfs4 server:/export rw,vers=4.2
52 27 8:2 / /srv/with\\040space rw,relatime,discard - xfs /dev/sdb2 rw
53 50 8:3 / /srv/quick/trimmed rw,relatime - ext4 /dev/sdb3 rw,discard
"""


def test_the_mount_above_a_path_is_named_with_its_options_and_the_superblocks() -> None:
    assert mount_of(Path("/tmp/x"), MOUNTS) == Mount(
        "ext4", "/dev/vda", {"rw", "relatime", "discard", "resv_strict", "resuid=65534",
                             "resgid=65534"}
    )  # fmt: skip
    assert mount_of(Path("/srv/with space/x"), MOUNTS) == Mount(
        "xfs", "/dev/sdb2", {"rw", "relatime", "discard"}
    )  # an escaped mount point
    assert mount_of(Path("/dev/shm/x"), MOUNTS) == Mount(
        "tmpfs", "tmpfs", {"rw", "relatime", "size=24684084k"}
    )  # of two at one point, the last
    assert mount_of(Path("/x"), MOUNTS.splitlines()[1]) is None  # no mount above it


def test_ext4_mounted_with_discard_waits_for_the_device() -> None:
    assert waits_for_device(Path("/tmp/fleetkey/uploads"), MOUNTS)  # a path only


def test_tmpfs_does_not_wait_even_mounted_over_the_disk() -> None:
    assert not waits_for_device(Path("/dev/shm/fleetkey/uploads"), MOUNTS)


def test_a_disk_without_discard_does_not_wait() -> None:
    assert not waits_for_device(Path("/srv/quick/uploads"), MOUNTS)


def test_a_mount_point_is_a_whole_directory_not_a_prefix() -> None:
    assert waits_for_device(Path("/srv/quickly/uploads"), MOUNTS)  # on /, not /srv/quick


def test_the_innermost_mount_decides() -> None:
    assert waits_for_device(Path("/srv/quick/trimmed/uploads"), MOUNTS)


def test_a_network_filesystem_waits() -> None:
    assert waits_for_device(Path("/srv/nfs/uploads"), MOUNTS)


def test_a_mount_point_with_an_escaped_space_is_matched() -> None:
    assert waits_for_device(Path("/srv/with space/uploads"), MOUNTS)


def test_unreadable_or_malformed_mount_tables_say_no_wait() -> None:
    assert not waits_for_device(Path("/srv/nfs"), "")
    assert not waits_for_device(Path("/srv/nfs"), "garbage line\n51 27 0:50 / /srv/nfs rw\n")


def test_this_machines_own_table_is_read(tmp_path: Path) -> None:
    """No table passed: /proc/self/mountinfo, as the server reads it."""
    table = Path("/proc/self/mountinfo").read_text()
    assert waits_for_device(tmp_path) is waits_for_device(tmp_path, table)
    assert waits_for_device(tmp_path / "not made yet") is waits_for_device(tmp_path, table)


def test_discard_is_told_apart_from_a_network_filesystem() -> None:
    """A discard waits only in the freeing of the replaced file (a trash takes it off the
    loop); a network filesystem's every rename waits (threads)."""
    assert discards(Path("/tmp/fleetkey/uploads"), MOUNTS)
    assert discards(Path("/srv/with space/uploads"), MOUNTS)  # discard in the mount's options
    assert not discards(Path("/srv/nfs/uploads"), MOUNTS)
    assert not discards(Path("/srv/quick/uploads"), MOUNTS)
    assert not discards(Path("/dev/shm/uploads"), MOUNTS)
    assert not discards(Path("/srv/nfs"), "garbage line\n")


def test_the_upload_place_follows_this_machines_table(tmp_path: Path) -> None:
    trash, threaded = upload_place(tmp_path)
    assert (trash is not None) is discards(tmp_path)
    assert threaded is (trash is None and waits_for_device(tmp_path))
    assert trash is None or trash.folder == str(tmp_path / ".trash")
