"""Where posted keys live in the provisioning tree, and putting them there all or nothing.

Each site's key has its own place, ``<tree>/<serial>/000000000000-license.cfg``: the name
phones ask for, in the directory phones of that site are pointed at (``/<serial>/``); a phone's
key is ``<tree>/<mac>-license.cfg`` (``core.naming.license_place``). ``fleetkey serve`` answers
the store's posted key wherever a phone of the site asks, and the file in the site's place when
the store has none (``serve/fetching.py``), so another server given the tree serves the same.

The tree's top-level ``000000000000-license.cfg`` is the default: what a server answers phones it
cannot place (no inventory site, no site prefix). It is written only on purpose (``--default-
site``), and from then on it follows its site: the site whose key it holds is the default site,
and posting or rolling back that site's key rewrites it too. A data directory written before
sites had places of their own holds there the last site key issued; that site is its default
site from now on, and nothing else moves: each site's own file is written when its next key is
posted (the server answers phones of an inventory site from the store meanwhile).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fleetkey.authority.files import atomic_write, read_license
from fleetkey.core.license import LicenseType
from fleetkey.core.naming import SITE_LICENSE_FILE, license_place
from fleetkey.errors import FleetkeyError, InputError
from fleetkey.store.records import StoredLicense
from fleetkey.store.registry import file_digest

PRIVATE_DIR: Final = 0o700  # directories under the data directory (authority/datadir.py)


def place(tree: Path, key_type: LicenseType, serial: str) -> Path:
    """The file of the posted key of ``key_type`` and ``serial``."""
    return tree.joinpath(*license_place(key_type, serial))


def default_file(tree: Path) -> Path:
    return tree / SITE_LICENSE_FILE


def default_site(tree: Path) -> str | None:
    """The site whose key the tree's default file holds; None when there is no such file, or
    it does not parse, or holds no site key or keys of several sites."""
    path = default_file(tree)
    if not path.is_file():
        return None
    try:
        keys = read_license(path).keys
    except (FleetkeyError, OSError):
        return None
    serials = {key.serial for key in keys if key.type is LicenseType.SITE}
    return serials.pop() if len(serials) == 1 else None


def targets(
    tree: Path, key_type: LicenseType, serial: str, *, make_default: bool = False
) -> list[Path]:
    """Where posting a key of ``key_type`` and ``serial`` writes it: its place, and the
    default file when asked to (a site key only) or when its site is the default site."""
    if make_default and key_type is not LicenseType.SITE:
        raise InputError(
            f"a {key_type.value} key ({serial}) cannot be the tree's default: only a site key can",
            field="default_site",
        )
    found = [place(tree, key_type, serial)]
    if key_type is LicenseType.SITE and (make_default or default_site(tree) == serial):
        found.append(default_file(tree))
    return found


def relative(tree: Path, paths: Sequence[Path]) -> list[str]:
    """Paths as the audit trail and the JSON name them: relative to the tree."""
    return [str(path.relative_to(tree)) for path in paths]


def publish(writes: Sequence[tuple[Path, bytes]]) -> None:
    """Write each (path, data), each file atomically, all or none: if one fails, the ones
    written are put back as they were (restored, or removed when they did not exist) and the
    error raised."""
    done: list[tuple[Path, bytes | None]] = []
    try:
        for path, data in writes:
            before = path.read_bytes() if path.is_file() else None
            path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            atomic_write(path, data)
            done.append((path, before))
    except BaseException:
        for path, before in reversed(done):
            if before is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, before)
        raise


def withdraw(tree: Path, stored: StoredLicense) -> list[Path]:
    """Remove the key's files from the tree: its place and the default file, each only when
    it holds exactly this key's file (another site's file is never touched). The removed."""
    removed = []
    for path in (place(tree, stored.type, stored.serial), default_file(tree)):
        if path.is_file() and file_digest(path.read_bytes()) == stored.digest:
            path.unlink()
            removed.append(path)
    return removed
