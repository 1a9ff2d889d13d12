"""Tree files answered from memory, each request checked against the file as it is now."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from fleetkey.serve.content import ContentKind
from fleetkey.serve.tree import FileTree


def test_a_small_file_is_held_with_its_digest_and_kind(tmp_path: Path) -> None:
    (tmp_path / "000000000000.cfg").write_bytes(b"<APPLICATION/>")
    tree = FileTree(tmp_path)
    content = tree.find(("000000000000.cfg",))
    assert content is not None
    assert (content.kind, content.body, content.size) == (ContentKind.FILE, b"<APPLICATION/>", 14)
    assert content.digest == hashlib.sha256(b"<APPLICATION/>").hexdigest()
    assert tree.find(("000000000000.cfg",)) is content  # the same answer while unchanged


def test_a_rewritten_replaced_or_deleted_file_is_seen_at_the_next_request(tmp_path: Path) -> None:
    path = tmp_path / "sip.cfg"
    path.write_bytes(b"one")
    tree = FileTree(tmp_path)
    first = tree.find(("sip.cfg",))
    path.write_bytes(b"three")  # rewritten in place, other size
    second = tree.find(("sip.cfg",))
    assert second is not None
    assert second.body == b"three"
    replacement = tmp_path / "new"
    replacement.write_bytes(b"thrEE")
    os.utime(replacement, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    replacement.replace(path)  # same size, same mtime: a new inode
    third = tree.find(("sip.cfg",))
    assert third is not None
    assert third.body == b"thrEE"
    path.unlink()
    assert tree.find(("sip.cfg",)) is None
    assert first is not None
    assert first.body == b"one"


def test_large_files_are_streamed_not_held(tmp_path: Path) -> None:
    (tmp_path / "sip.ld").write_bytes(b"\0" * 70_000)
    (tmp_path / "huge.ld").write_bytes(b"\0" * 1_100_000)
    tree = FileTree(tmp_path, hold_max_bytes=65536)
    held_not = tree.find(("sip.ld",))
    assert held_not is not None
    assert held_not.body is None
    assert held_not.path is not None
    assert held_not.digest is not None  # up to 1 MiB still hashed for the record
    huge = tree.find(("huge.ld",))
    assert huge is not None
    assert huge.digest is None  # hashed on the hashing thread, not on the caller's
    assert huge.size == 1_100_000


def _digest_soon(tree: FileTree, name: str) -> str | None:
    for _ in range(500):
        found = tree.find((name,))
        if found is not None and found.digest is not None:
            return found.digest
        time.sleep(0.01)
    return None


def test_a_firmware_image_over_1_mib_gets_its_digest_for_the_records(tmp_path: Path) -> None:
    """Fetch records of images had no digest: which image a phone got could not be told."""
    image = tmp_path / "sip.ld"
    first, second = os.urandom(3_000_000), os.urandom(3_000_001)
    image.write_bytes(first)
    tree = FileTree(tmp_path)
    assert _digest_soon(tree, "sip.ld") == hashlib.sha256(first).hexdigest()
    image.write_bytes(second)  # a new image: its own digest, never the old one's
    replaced = tree.find(("sip.ld",))
    assert replaced is not None
    assert replaced.digest != hashlib.sha256(first).hexdigest()
    assert _digest_soon(tree, "sip.ld") == hashlib.sha256(second).hexdigest()


def test_the_digest_of_an_open_image_is_of_the_version_opened(tmp_path: Path) -> None:
    """A transfer recorded after it ended (FTP) asks the file it has open: its first
    download's record had none while the hashing thread was still at it."""
    image = tmp_path / "sip.ld"
    first, second = os.urandom(3_000_000), os.urandom(3_000_002)
    image.write_bytes(first)
    tree = FileTree(tmp_path)
    content = tree.find(("sip.ld",))
    assert content is not None
    assert content.path is not None
    with open(content.path, "rb") as opened:
        (tmp_path / "next").write_bytes(second)
        (tmp_path / "next").replace(image)  # a new image in its place while one is served
        assert tree.digest_of(content, opened) == hashlib.sha256(first).hexdigest()
    with open(image, "rb") as reopened:
        assert tree.digest_of(content, reopened) == hashlib.sha256(second).hexdigest()
    assert _digest_soon(tree, "sip.ld") == hashlib.sha256(second).hexdigest()


def test_directories_missing_names_and_links_out_of_the_tree_are_none(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "firmware").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("no")
    (root / "link.cfg").symlink_to(tmp_path / "secret.txt")
    (root / "dirlink").symlink_to(tmp_path)
    (root / "firmware" / "sip.ld").write_bytes(b"x")
    (root / "alias.cfg").symlink_to(root / "firmware" / "sip.ld")
    tree = FileTree(root)
    assert tree.find(("firmware",)) is None
    assert tree.find(("nothing.cfg",)) is None
    assert tree.find(("firmware", "sip.ld", "x")) is None
    assert tree.find(("link.cfg",)) is None
    assert tree.find(("dirlink", "secret.txt")) is None
    alias = tree.find(("alias.cfg",))
    assert alias is not None
    assert alias.body == b"x"


def test_held_bytes_stay_within_the_budget(tmp_path: Path) -> None:
    for n in range(20):
        (tmp_path / f"f{n}.cfg").write_bytes(bytes(1000))
    tree = FileTree(tmp_path, held_budget_bytes=5000)
    for n in range(20):
        assert tree.find((f"f{n}.cfg",)) is not None
        assert tree.held_bytes <= 5000
