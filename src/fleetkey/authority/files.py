"""Reading license files under the size cap, and writing files so that no reader or crash ever
finds a partial or empty one.

Every write goes to a hidden temporary sibling first (same directory, so same file system), is
flushed with ``fsync``, and only then takes the target's name by ``rename`` (or ``link``, when
the target must not exist yet); the directory is flushed after the rename. Any failure (a full
disk, a quota, an I/O error) removes the temporary and leaves the target as it was, and is
raised as an ``OSError`` that names the target and keeps the ``errno``.

Files are created owner-only (0600) unless the caller asks otherwise: what fleetkey writes lives
in the private data directory (``authority/datadir.py``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

from fleetkey.core.codec import MAX_FILE_BYTES, LicenseFile, parse_license_file
from fleetkey.errors import FileTooLargeError

PRIVATE_FILE: Final = 0o600
_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


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


def write_temp(path: Path, data: bytes, mode: int = PRIVATE_FILE, *, sync: bool = True) -> None:
    """Create ``path`` (it must not exist) holding all of ``data`` with permission bits ``mode``,
    flushed to disk when ``sync``; on failure nothing is left at ``path``."""
    fd = os.open(path, _CREATE, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits the caller asked for
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def sync_directory(directory: Path) -> None:
    """Flush a directory's entries (a rename or link in it) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Create ``path``, which must not exist, holding ``data``: whole, or not at all.

    Written to a temporary sibling, flushed, then linked to its name (``link`` fails rather
    than replace a file that appeared meanwhile: FileExistsError).
    """
    _publish(path, data, mode, exclusive=True)


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Replace ``path`` with ``data`` so that a reader, or the disk after a crash, holds the old
    file or the new one, whole; a failure leaves the old file untouched."""
    _publish(path, data, mode, exclusive=False)


def _publish(path: Path, data: bytes, mode: int, *, exclusive: bool) -> None:
    temp = temp_path_for(path)
    try:
        write_temp(temp, data, mode)
        if exclusive:
            os.link(temp, path)
            os.unlink(temp)
        else:
            os.replace(temp, path)
        sync_directory(path.parent)
    except FileExistsError as exc:
        temp.unlink(missing_ok=True)
        raise FileExistsError(exc.errno, "already exists, not replaced", str(path)) from exc
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise OSError(exc.errno, f"cannot write ({exc.strerror or exc})", str(path)) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
