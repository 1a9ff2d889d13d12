"""Where phones look for their license files: the directories the tree's master configurations name.

A master configuration's ``LICENSE_DIRECTORY`` (domain.md §4) moves both license files: a phone
given ``LICENSE_DIRECTORY="licenses"`` asks for ``licenses/000000000000-license.cfg`` and
``licenses/<mac>-license.cfg``. The server answers a license name from the store in the tree's
root (and a site prefix's) and in every directory a master configuration in the tree names;
anywhere else the name is an ordinary tree file.

Master configurations are ``000000000000.cfg`` and ``<mac>.cfg`` at the root of the tree and of
each site subtree (``<site-serial>/``). A scan (blocking: the runner calls it off the event loop
every few seconds) reads only the files whose inode, size or times changed since the last one.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fleetkey.core.masterconfig import (
    MAX_BYTES,
    Directory,
    MasterConfig,
    parse_master_config,
)
from fleetkey.errors import MasterConfigError

log = logging.getLogger(__name__)

SCAN_EVERY_S: Final = 5.0
_MASTER: Final = re.compile(r"[0-9A-Fa-f]{12}\.cfg")
_SITE_DIR: Final = re.compile(r"[0-9A-Fa-f]{12}")
_Stamp = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Layout:
    """Directories (as path segments, ``()`` the root) where license names mean the store's."""

    license_dirs: frozenset[tuple[str, ...]] = frozenset({()})
    master_configs: int = 0  # how many were read


@dataclass
class LayoutScanner:
    """Reads the tree's master configurations, each again only when it changed."""

    root: Path
    _seen: dict[str, tuple[_Stamp, MasterConfig | None]] = field(default_factory=dict)

    def scan(self) -> Layout:
        found: dict[str, tuple[_Stamp, MasterConfig | None]] = {}
        for path, info in self._candidates():
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            known = self._seen.get(path)
            if known is not None and known[0] == stamp:
                found[path] = known
            else:
                found[path] = (stamp, self._read(path, info.st_size))
        self._seen = found
        dirs: set[tuple[str, ...]] = {()}
        for _, config in found.values():
            if config is not None:
                dirs.update(config.directories(Directory.LICENSE))
        return Layout(frozenset(dirs), sum(1 for _, c in found.values() if c is not None))

    def _candidates(self) -> list[tuple[str, os.stat_result]]:
        """Master configurations at the root and in each site subtree, with their stat."""
        found: list[tuple[str, os.stat_result]] = []
        folders = [str(self.root)]
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    if _SITE_DIR.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
        except OSError:
            return []
        for folder in folders:
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if _MASTER.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                            found.append((entry.path, entry.stat(follow_symlinks=False)))
            except OSError:  # removed while scanning: the next scan sees it gone
                continue
        return found

    @staticmethod
    def _read(path: str, size: int) -> MasterConfig | None:
        if size > MAX_BYTES:
            log.warning("master configuration %s: %d bytes, not read", path, size)
            return None
        try:
            with open(path, "rb") as handle:
                return parse_master_config(handle.read(MAX_BYTES + 1), source=path)
        except MasterConfigError as exc:
            log.warning("ignoring a master configuration that does not parse: %s", exc)
        except OSError as exc:
            log.warning("cannot read master configuration %s: %s", path, exc)
        return None
