"""A real small file system for full-disk tests: a tmpfs mounted for the test, then filled.

The tests run as root (as CI does); a mount that fails fails the test, it is never skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

BALLAST = "ballast"
_CHUNK = 4096  # one page: what tmpfs allocates at a time


@contextlib.contextmanager
def mounted_tmpfs(mount_point: Path, size: str = "1m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``mount_point`` for the ``with`` block."""
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs at {mount_point} (uid {os.getuid()}): {done.stderr.strip()}; "
            "these tests need root, as CI gives them",
            pytrace=False,
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)  # noqa: S607


def fill(directory: Path) -> Path:
    """Write a ballast file in ``directory`` until its file system is full; returns it."""
    ballast = directory / BALLAST
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = b"\0" * _CHUNK
    try:
        while True:
            os.write(fd, block)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return ballast


def snapshot(directory: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path below ``directory`` with its mode and, for files, its bytes."""
    found: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        found[str(path.relative_to(directory))] = (info.st_mode, content)
    return found
