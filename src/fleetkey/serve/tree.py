"""Files below a directory (the provisioning tree, the phones' uploads), answered from memory.

A boot storm asks for the same few tree files (``000000000000.cfg``, configuration files) and
many that do not exist (``<mac>.cfg``, ``<mac>-phone.cfg``…: most of a boot's requests are
404s, domain.md §5.1). Resolving a path with ``pathlib`` (every component looked up, symbolic
links followed, the result checked to be inside the tree) cost ~11 µs here; a file read and
hashed per request more.

So each path found is kept with what answering it needs: its real path (checked once to be a
regular file inside the root, symbolic links included), size, ETag, modification time, SHA-256
and, for small files, the bytes. A file over 1 MiB (a firmware image: ~150 MB) is hashed once
on a worker thread, never on the caller's; its answers carry the SHA-256 from then on (the
first ones, while it is hashed, none), so fetch records say which image a phone got; a
transfer recorded after it ended (FTP) asks ``digest_of`` its open file, so even its first
download's record has one.

Every request still costs one ``stat`` of the path (~2 µs, nginx opens the file per request
too), compared with what was kept: inode, device, size, modification and change times. A file
replaced, rewritten, touched, moved or deleted is seen at the next request. (Not seen: a
rewrite in place that keeps the size and lands within the same clock tick as the previous
write, as for nginx's open-file cache.) A name that does not exist costs that one ``stat``.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from fleetkey.core.naming import license_file_type
from fleetkey.serve.content import Content, ContentKind

DIGEST_MAX_BYTES: Final = 1024 * 1024  # files up to this size get a SHA-256 in fetch records
HOLD_MAX_BYTES: Final = 64 * 1024  # files up to this size are answered from memory
HELD_BUDGET_BYTES: Final = 64 * 1024 * 1024  # all held bytes together; starts over beyond
_ENTRIES_MAX: Final = 500_000
_CHUNK: Final = 1024 * 1024
_HASHER: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleetkey-digest")
_Stamp = tuple[int, int, int, int, int]  # inode, device, size, mtime ns, ctime ns


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str  # as asked, below the root (symbolic links not followed)
    stamp: _Stamp
    content: Content


def _stamp(info: os.stat_result) -> _Stamp:
    return (info.st_ino, info.st_dev, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def content_kind(name: str) -> ContentKind:
    """What a file of this name is, for records and metrics."""
    kind = license_file_type(name)
    if kind is None:
        return ContentKind.FILE
    return ContentKind.SITE_LICENSE if kind[1] is None else ContentKind.PHONE_LICENSE


class FileTree:
    """Regular files below ``root`` by path segments (already checked by core.requestpath)."""

    def __init__(
        self,
        root: Path,
        *,
        kind: ContentKind | None = None,
        hold_max_bytes: int = HOLD_MAX_BYTES,
        held_budget_bytes: int = HELD_BUDGET_BYTES,
    ) -> None:
        self.root = root.resolve()
        self._base = str(self.root) + os.sep
        self._kind = kind  # None: by file name (content_kind)
        self._hold_max = hold_max_bytes
        self._budget = held_budget_bytes
        self._entries: dict[tuple[str, ...], _Entry] = {}
        self._held = 0
        # large files' SHA-256 by (real path, stamp), written by the hashing thread
        self._digests: dict[tuple[str, _Stamp], str] = {}
        self._hashing: set[tuple[str, _Stamp]] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        return self._held

    def find(self, segments: tuple[str, ...]) -> Content | None:
        """The file at ``segments`` as it is now, or None (missing, not regular, outside)."""
        entry = self._entries.get(segments)
        path = entry.path if entry is not None else self._base + "/".join(segments)
        try:
            info = os.stat(path)
        except (OSError, ValueError):
            if entry is not None:
                self._drop(segments, entry)
            return None
        if entry is not None:
            if _stamp(info) == entry.stamp:
                content = entry.content
                if content.digest is None and content.path is not None:
                    return self._with_digest(segments, entry)
                return content
            self._drop(segments, entry)
        if not stat.S_ISREG(info.st_mode):
            return None
        return self._load(segments, path)

    def _load(self, segments: tuple[str, ...], path: str) -> Content | None:
        real = os.path.realpath(path)
        if not real.startswith(self._base):
            return None  # a symbolic link out of the root
        try:
            with open(real, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    return None
                body = digest = None
                if info.st_size <= DIGEST_MAX_BYTES:
                    data = handle.read(info.st_size + 1)
                    if len(data) != info.st_size:  # being written: streamed, not kept
                        return self._content(segments[-1], info, real, None, None)
                    digest = hashlib.sha256(data).hexdigest()
                    if info.st_size <= self._hold_max:
                        body = data
        except OSError:
            return None
        content = self._content(segments[-1], info, real, body, digest)
        held = len(body) if body is not None else 0
        if self._held + held > self._budget or len(self._entries) >= _ENTRIES_MAX:
            self._entries.clear()
            self._held = 0
        self._entries[segments] = _Entry(path, _stamp(info), content)
        self._held += held
        if digest is None and body is None:
            self._hash_later((real, _stamp(info)))
        return content

    def _with_digest(self, segments: tuple[str, ...], entry: _Entry) -> Content:
        """A large file's content, with its SHA-256 once the hashing thread has it."""
        content = entry.content
        assert content.path is not None  # noqa: S101  # the caller checked
        key = (str(content.path), entry.stamp)
        digest = self._digests.get(key)
        if digest is None:
            self._hash_later(key)
            return content
        content = replace(content, digest=digest)
        self._entries[segments] = replace(entry, content=content)
        return content

    def digest_of(self, content: Content, handle: io.IOBase) -> str | None:
        """The SHA-256 of the version of ``content``'s file that ``handle`` has open: the
        hashing thread's when it has it, else read through ``handle`` now (kept for the next
        answers). For a transfer recorded after it ended (FTP), whose first download may end
        before the hashing thread is done. None when it cannot be read or changed meanwhile."""
        try:
            fd = handle.fileno()
            stamp = _stamp(os.fstat(fd))
        except (OSError, ValueError):
            return None
        key = (str(content.path), stamp)
        with self._lock:
            found = self._digests.get(key)
        if found is not None:
            return found
        digest = hashlib.sha256()
        offset = 0
        try:
            while chunk := os.pread(fd, _CHUNK, offset):
                digest.update(chunk)
                offset += len(chunk)
            if _stamp(os.fstat(fd)) != stamp:
                return None  # written meanwhile: no one version was served
        except OSError:
            return None
        with self._lock:
            if len(self._digests) >= _ENTRIES_MAX:
                self._digests.clear()
            self._digests[key] = found = digest.hexdigest()
        return found

    def _hash_later(self, key: tuple[str, _Stamp]) -> None:
        with self._lock:
            if key in self._hashing or key in self._digests:
                return
            self._hashing.add(key)
        _HASHER.submit(self._hash, key)

    def _hash(self, key: tuple[str, _Stamp]) -> None:
        """On the hashing thread: the file's SHA-256, kept if it did not change meanwhile."""
        real, stamp = key
        digest = hashlib.sha256()
        try:
            with open(real, "rb") as handle:
                if _stamp(os.fstat(handle.fileno())) != stamp:
                    return
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                if _stamp(os.fstat(handle.fileno())) != stamp:
                    return  # written meanwhile: the next request hashes it again
        except OSError:
            return
        finally:
            with self._lock:
                self._hashing.discard(key)
        with self._lock:
            if len(self._digests) >= _ENTRIES_MAX:
                self._digests.clear()
            self._digests[key] = digest.hexdigest()

    def _content(
        self, name: str, info: os.stat_result, real: str, body: bytes | None, digest: str | None
    ) -> Content:
        return Content(
            kind=self._kind or content_kind(name),
            name=name,
            size=info.st_size,
            etag=f'"{info.st_mtime_ns:x}-{info.st_size:x}"',
            modified=datetime.fromtimestamp(info.st_mtime_ns / 1e9, UTC),
            digest=digest,
            body=body,
            path=None if body is not None else Path(real),
        )

    def _drop(self, segments: tuple[str, ...], entry: _Entry) -> None:
        if self._entries.pop(segments, None) is not None and entry.content.body is not None:
            self._held -= len(entry.content.body)
