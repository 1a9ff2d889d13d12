"""The data directory: where keys, the feature catalog extension and the provisioning tree live.

::

    <data>/                 FLEETKEY_DATA, default ./fleetkey-data; mode 0700
      keys/                 the keyring: keyring.json, <name>.key.pem, <name>.pub.pem,
                            api-token.sha256 (the admin API token, hashed)
      features.toml         the operator's additions to the feature catalog
      provisioning/         the tree phones fetch from; issued license files land here
      fleetkey.db           the SQLite store (with -wal and -shm beside it), unless --db
      uploads/, fetches-*.jsonl   what ``fleetkey serve`` keeps: phones' uploads, held records

Everything here is private to the account that runs fleetkey: the directory and the ones
fleetkey makes below it are 0700, the files it writes 0600 (the store holds the phones' Digest
HA1, the keys directory the signing keys). ``tighten`` brings a directory made by an earlier
version, or loosened by hand, back to that.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetkey.authority.files import atomic_write, write_new
from fleetkey.core.features import FeatureCatalog, default_catalog, parse_catalog
from fleetkey.errors import NotInitializedError

DATA_ENV: Final = "FLEETKEY_DATA"
DEFAULT_DATA: Final = "fleetkey-data"
FEATURES_TEMPLATE: Final = """\
# Operator additions to the fleetkey feature catalog (slots 0-27).
# Slots 0-6 ship with fleetkey; `fleetkey features` lists the whole catalog.
#
# [[feature]]
# slot = 7
# name = "h323"
# description = "H.323 video calling on VVX 1500"
"""
PRIVATE_DIR: Final = 0o700
OTHERS: Final = 0o077  # group and other permission bits: none under the data directory
# What fleetkey keeps at the top of the data directory; ``tighten`` walks these and no other
# entry, so a data directory pointed at a shared folder does not have strangers' files changed.
OWNED: Final = (
    "keys",
    "provisioning",
    "uploads",
    "features.toml",
    "fleetkey.db",
    "fleetkey.db-wal",
    "fleetkey.db-shm",
    "fleetkey.db-journal",
    "fetches-unwritten.jsonl",
    "fetches-held.jsonl",
    "fetches-rejected.jsonl",
)


@dataclass(frozen=True, slots=True)
class ModeChange:
    """A path ``tighten`` made private: its permission bits before and after."""

    path: Path
    was: int
    now: int

    def __str__(self) -> str:
        return f"{self.path} {self.was:04o} -> {self.now:04o}"


@dataclass(frozen=True, slots=True)
class DataDir:
    root: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DataDir:
        return cls(Path(env.get(DATA_ENV) or DEFAULT_DATA))

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def provisioning(self) -> Path:
        return self.root / "provisioning"

    @property
    def api_token(self) -> Path:
        """The SHA-256 of the admin API's bearer token (in the keys directory, mode 0700)."""
        return self.keys / "api-token.sha256"

    @property
    def features_file(self) -> Path:
        return self.root / "features.toml"

    def exists(self) -> bool:
        return self.keys.is_dir()

    def require(self) -> None:
        """Raise NotInitializedError unless ``fleetkey init`` has run here."""
        if not self.exists():
            raise NotInitializedError(f"{self.root} is not a fleetkey data directory")

    def create(self) -> bool:
        """Create the directories (0700) and the catalog template (0600); False if they already
        existed. Modes of what existed are left to ``tighten``."""
        fresh = not self.exists()
        self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        if fresh:
            self.root.chmod(PRIVATE_DIR)  # mkdir's mode passed through the umask
        for directory in (self.keys, self.provisioning):
            if not directory.exists():
                directory.mkdir(mode=PRIVATE_DIR)
                directory.chmod(PRIVATE_DIR)
        if not self.features_file.exists():
            write_new(self.features_file, FEATURES_TEMPLATE.encode("utf-8"))
        return fresh

    @contextlib.contextmanager
    def undone_on_failure(self) -> Iterator[None]:
        """If the ``with`` block fails, take back what it did here (``fleetkey init`` leaves
        nothing behind when it fails): the directory, and the parents it needed, when it did
        not exist; else each entry of ``OWNED`` that did not, and in ``keys/`` every file
        added or changed (the keyring is small; nothing else is written below the top)."""
        top = None
        for path in (self.root, *self.root.absolute().parents):
            if path.exists() or path.is_symlink():
                break
            top = path
        existed = {name for name in OWNED if top is None and _present(self.root / name)}
        keys = _files(self.keys) if "keys" in existed and self.keys.is_dir() else None
        try:
            yield
        except BaseException:
            if top is not None:
                shutil.rmtree(top, ignore_errors=True)
                raise
            for name in OWNED:
                if name not in existed:
                    _remove(self.root / name)
            if keys is not None:
                _restore(self.keys, keys)
            raise

    def tighten(self) -> list[ModeChange]:
        """Take group and other permissions off the directory and everything fleetkey keeps in
        it (``OWNED``, recursively; symbolic links are neither followed nor changed)."""
        changes = []
        for path in self._owned_paths():
            try:
                info = path.lstat()
                was = stat.S_IMODE(info.st_mode)
                if stat.S_ISLNK(info.st_mode) or not was & OTHERS:
                    continue
                path.chmod(was & ~OTHERS)
            except FileNotFoundError:  # removed while we walked (a server replacing a file)
                continue
            changes.append(ModeChange(path, was, was & ~OTHERS))
        return changes

    def _owned_paths(self) -> Iterator[Path]:
        yield self.root
        for name in OWNED:
            top = self.root / name
            if not top.exists() or top.is_symlink():
                continue
            yield top
            if top.is_dir():
                for folder, directories, files in os.walk(top):  # does not follow links
                    for name_below in (*directories, *files):
                        yield Path(folder, name_below)

    def catalog(self) -> FeatureCatalog:
        """The shipped catalog extended by ``features.toml`` when it exists."""
        catalog = default_catalog()
        if self.features_file.is_file():
            text = self.features_file.read_text(encoding="utf-8")
            features = parse_catalog(text, str(self.features_file))
            catalog = catalog.extended(features, str(self.features_file))
        return catalog


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif _present(path):
        path.unlink()


def _files(directory: Path) -> dict[Path, bytes | None]:
    """Every path below ``directory``, with the bytes of regular files (None: a directory or
    anything else)."""
    found: dict[Path, bytes | None] = {}
    for folder, directories, files in os.walk(directory):  # does not follow links
        for name in directories:
            found[Path(folder, name)] = None
        for name in files:
            path = Path(folder, name)
            found[path] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


def _restore(directory: Path, before: dict[Path, bytes | None]) -> None:
    """Remove what was added below ``directory`` since ``before``; write back changed files."""
    for path in sorted(_files(directory), key=lambda p: len(p.parts), reverse=True):
        if path not in before:
            _remove(path)
    for path, data in before.items():
        if data is not None and path.is_file() and path.read_bytes() != data:
            atomic_write(path, data)
