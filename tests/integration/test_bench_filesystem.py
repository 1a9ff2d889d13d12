"""bench/benchfleet.py says which filesystem a benchmark's files are on, and warns when it is
ext4 without a journal (a disk that slows nginx's file creates and not fleetkey's rewrites)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def benchfleet() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        import benchfleet

        yield benchfleet
    finally:
        sys.path.remove(str(BENCH))


def test_ext4_without_a_journal_is_named_and_warned_of(benchfleet: ModuleType) -> None:
    found = {"type": "ext4", "device": "/dev/vda", "options": "rw,discard", "journal": False}
    lines = benchfleet.describe_filesystem(Path("/tmp"), found)
    assert lines[0] == "files on /tmp: ext4, /dev/vda, NO journal, discard"
    assert "warning: ext4 without a journal" in lines[1]
    assert all(len(line) <= 80 for line in lines)


@pytest.mark.parametrize(
    ("found", "said"),
    [
        ({"type": "ext4", "device": "/dev/loop0", "options": "rw", "journal": True},
         "files on /x: ext4, /dev/loop0, journal"),
        ({"type": "tmpfs", "device": "tmpfs", "options": "rw", "journal": None},
         "files on /x: tmpfs, tmpfs"),
    ],
)  # fmt: skip
def test_other_filesystems_are_named_without_a_warning(
    benchfleet: ModuleType, found: dict[str, object], said: str
) -> None:
    assert benchfleet.describe_filesystem(Path("/x"), found) == [said]


def test_the_filesystem_of_a_real_directory_is_read(benchfleet: ModuleType, tmp_path: Path) -> None:
    found = benchfleet.filesystem(tmp_path)
    assert found["type"] not in ("", "?")  # findmnt named it
    assert found["journal"] in (True, False, None)
    if found["type"] != "ext4":
        assert found["journal"] is None  # only ext4 is asked whether it has a journal
