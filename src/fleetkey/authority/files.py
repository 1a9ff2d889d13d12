"""Reading license files under the size cap and writing files atomically (temp file + rename)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fleetkey.core.codec import MAX_FILE_BYTES, LicenseFile, parse_license_file
from fleetkey.errors import FileTooLargeError


def read_license_bytes(path: Path) -> bytes:
    """The bytes of a license file, refusing files over the cap before reading them."""
    with open(path, "rb") as handle:  # one fstat instead of Path.stat + open
        size = os.fstat(handle.fileno()).st_size
        if size <= MAX_FILE_BYTES:
            data = handle.read(size + 1)  # read(n) allocates n bytes: ask for what is there
            if len(data) > size:  # the file grew meanwhile: read on, bounded by the cap
                data += handle.read(MAX_FILE_BYTES + 1 - len(data))
            if len(data) <= MAX_FILE_BYTES:
                return data
            size = len(data)
    raise FileTooLargeError(
        f"file is {size} bytes, larger than the limit of {MAX_FILE_BYTES}", source=str(path)
    )


def read_license(path: Path) -> LicenseFile:
    """Parse the license file at ``path``; errors name the path."""
    return parse_license_file(read_license_bytes(path), source=str(path))


def temp_path_for(path: Path) -> Path:
    """A hidden, unique sibling of ``path`` to write into before the rename."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` (it must not exist) holding ``data``, with permission bits ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one, whole."""
    temp = temp_path_for(path)
    try:
        write_new(temp, data, mode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
