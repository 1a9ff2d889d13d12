"""Replaced uploads kept in a trash, so the rename that replaces them frees nothing, and freed
by the trash's own thread (serve/trash.py, docs/serve.md "Throughput with both cores")."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetkey.serve.trash import Trash
from fleetkey.serve.uploads import store_upload

from tests.helpers import wait_until

NAME = "0004f2a1b2c3-app.log"


def _target(root: Path) -> Path:
    return root / "0004f2a1b2c3" / NAME


@pytest.fixture
def trash(tmp_path: Path) -> Iterator[Trash]:
    kept = Trash(tmp_path, interval_s=3600).start()  # emptied only at close, unless woken
    yield kept
    kept.close()


def test_a_replaced_upload_is_kept_so_the_rename_frees_nothing(
    tmp_path: Path, trash: Trash
) -> None:
    assert store_upload(tmp_path, NAME, b"first", trash) is True  # new: nothing to keep
    before = os.stat(_target(tmp_path))
    assert store_upload(tmp_path, NAME, b"second", trash) is False  # replaced
    assert _target(tmp_path).read_bytes() == b"second"
    kept = [Path(trash.folder) / name for name in os.listdir(trash.folder)]
    assert [p.read_bytes() for p in kept] == [b"first"]  # the old inode, still linked
    assert os.stat(kept[0]).st_ino == before.st_ino
    assert (trash.kept, trash.waiting) == (1, 1)
    assert sorted(os.listdir(_target(tmp_path).parent)) == [NAME]  # no temporary file left


def test_close_frees_everything_kept(tmp_path: Path) -> None:
    trash = Trash(tmp_path, interval_s=3600).start()
    for n in range(5):
        store_upload(tmp_path, NAME, b"x" * n, trash)
    assert trash.waiting == 4
    trash.close()
    assert os.listdir(trash.folder) == []
    assert (trash.kept, trash.freed, trash.waiting) == (4, 4, 0)
    assert _target(tmp_path).read_bytes() == b"xxxx"


def test_the_thread_frees_each_batch_by_itself(tmp_path: Path) -> None:
    trash = Trash(tmp_path, interval_s=0.05).start()
    try:
        for n in range(3):
            store_upload(tmp_path, NAME, bytes([n]), trash)
        # the thread counts a file freed just after unlinking it: wait for the count
        wait_until(lambda: trash.freed == 2, timeout_s=10)
        assert os.listdir(trash.folder) == []
    finally:
        trash.close()


def test_what_a_killed_server_left_is_freed_at_the_next_start(tmp_path: Path) -> None:
    folder = tmp_path / ".trash"
    folder.mkdir()
    (folder / "4242.deadbeef.0").write_bytes(b"an old log")
    trash = Trash(tmp_path, interval_s=3600).start()
    trash.close()
    assert os.listdir(folder) == []


def test_past_its_backlog_a_replace_frees_its_own_file(tmp_path: Path) -> None:
    trash = Trash(tmp_path, interval_s=3600, backlog=2).start()
    try:
        for n in range(5):
            store_upload(tmp_path, NAME, bytes([n]), trash)
        assert (trash.kept, trash.passed) == (2, 2)  # 4 replaces: 2 kept, 2 not
        assert len(os.listdir(trash.folder)) == 2
        assert _target(tmp_path).read_bytes() == bytes([4])
    finally:
        trash.close()


def test_a_trash_not_started_or_removed_keeps_nothing_and_the_upload_is_stored(
    tmp_path: Path,
) -> None:
    idle = Trash(tmp_path)
    store_upload(tmp_path, NAME, b"one", idle)
    assert store_upload(tmp_path, NAME, b"two", idle) is False
    assert (idle.kept, idle.passed) == (0, 2)
    trash = Trash(tmp_path, interval_s=3600).start()
    try:
        os.rmdir(trash.folder)
        assert store_upload(tmp_path, NAME, b"three", trash) is False  # replaced, as ever
        assert _target(tmp_path).read_bytes() == b"three"
        assert trash.kept == 0
    finally:
        trash.close()


def test_a_kept_file_is_not_freed_before_its_replace_is_done(tmp_path: Path) -> None:
    """Freed before the rename, the rename would free the file itself (the discard back on
    the caller's thread): the thread frees only what ``free`` handed over."""
    store_upload(tmp_path, NAME, b"old")
    trash = Trash(tmp_path, interval_s=0.01).start()
    try:
        kept = trash.keep(str(_target(tmp_path)))
        assert kept
        time.sleep(0.2)  # twenty of the thread's turns
        assert Path(kept).read_bytes() == b"old"
        trash.free(kept)
        wait_until(lambda: not Path(kept).exists(), timeout_s=10)
    finally:
        trash.close()
    assert trash.keep(str(tmp_path / "absent")) is None  # closed: keeps nothing
    again = Trash(tmp_path, interval_s=3600).start()
    assert again.keep(str(tmp_path / "absent")) == ""  # nothing there to keep
    again.close()
