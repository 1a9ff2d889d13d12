"""The filesystem an FTP session sees: the pipeline's answers, read-only, as a virtual tree.

Nothing here opens a path a client named: a path is split into segments by the rules HTTP and
TFTP use (``core.requestpath``: no ``..``, ``.``, hidden names, backslashes, control characters,
``%``, empty segments), then the session asks the pipeline (``serve.fetching``), which answers
from the in-memory view (posted licenses), the tree index and the phones' uploads. A refused
path gets ``550`` with the rule it broke; ``/etc/passwd`` is simply not in the tree.

Directories are the tree's own, the sites' ``/<site>/`` prefixes and the directories master
configurations name (``LICENSE_DIRECTORY``); listings show what this session would be served.
Writes go only through ``open`` of a name phones upload (``serve.uploads``); everything else
that would change the tree (``MKD``, ``DELE``, ``RNFR``…) is refused.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import Final, Protocol

from pyftpdlib.filesystems import AbstractedFS, FilesystemError

from fleetkey.core.requestpath import filename_segments
from fleetkey.errors import RequestPathError
from fleetkey.serve.content import Content

READ_ONLY: Final = "the provisioning tree is read-only here"
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_FILE_MODE: Final = stat.S_IFREG | 0o444
_DIR_MODE: Final = stat.S_IFDIR | 0o555


class Session(Protocol):
    """What the filesystem asks of its FTP session (``serve.ftp.session``)."""

    def lookup(self, segments: tuple[str, ...], pin: bool = True) -> Content | None: ...

    def open_transfer(self, path: str, segments: tuple[str, ...], mode: str) -> io.IOBase: ...

    def refused_path(self, path: str, mode: str, reason: str) -> None: ...

    def directory(self, segments: tuple[str, ...]) -> list[str] | None: ...

    def own(self) -> frozenset[str]: ...


class MemoryFile(io.BytesIO):
    """A body held in memory (a posted license, a small tree file), named for pyftpdlib."""

    def __init__(self, body: bytes, name: str) -> None:
        super().__init__(body)
        self.name = name


class UploadBuffer(io.BytesIO):
    """An upload received into memory, refused past its cap (pyftpdlib answers 426)."""

    def __init__(self, name: str, cap: int, initial: bytes = b"") -> None:
        super().__init__()
        self.name = name
        self.cap = cap
        self.overflowed = False
        if initial:
            super().write(initial)

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.cap:
            self.overflowed = True
            raise OSError(errno.EFBIG, f"upload over its cap of {self.cap} bytes")
        return super().write(data)


class VirtualFS(AbstractedFS):  # type: ignore[misc]  # pyftpdlib is untyped
    """One per logged-in session; paths are virtual and absolute (``/`` is the tree)."""

    def __init__(self, root: str, cmd_channel: Session) -> None:
        super().__init__("/", cmd_channel)
        self.session: Session = cmd_channel

    def ftp2fs(self, ftppath: str) -> str:
        if ftppath.startswith("/"):
            return ftppath
        cwd: str = self.cwd
        return cwd.rstrip("/") + "/" + ftppath

    def fs2ftp(self, fspath: str) -> str:
        return fspath

    def validpath(self, path: str) -> bool:
        return True  # nothing here is a real path: every use checks its segments

    def realpath(self, path: str) -> str:
        return path

    def segments(self, path: str) -> tuple[str, ...]:
        """The checked segments of ``path``; FilesystemError (550) says which rule it broke."""
        if path in ("", "/"):
            return ()
        if path.endswith("/") and not path.endswith("//"):
            path = path[:-1]  # a directory written with its slash
        try:
            return filename_segments(path.encode("utf-8", "surrogateescape"))
        except RequestPathError as exc:
            raise FilesystemError(str(exc)) from exc

    def _content(self, path: str) -> Content:
        found = self.session.lookup(self.segments(path))
        if found is None:
            raise FilesystemError("no such file")
        return found

    def open(self, filename: str, mode: str) -> io.IOBase:
        try:
            segments = self.segments(filename)
        except FilesystemError as exc:
            self.session.refused_path(filename, mode, str(exc))  # recorded as a 400
            raise
        return self.session.open_transfer(filename, segments, mode)

    def chdir(self, path: str) -> None:
        segments = self.segments(path)
        if self.session.directory(segments) is None:
            raise FilesystemError("no such directory")
        self.cwd = "/" + "/".join(segments)

    def listdir(self, path: str) -> list[str]:
        names = self.session.directory(self.segments(path))
        if names is None:
            raise FilesystemError("no such directory")
        return names

    def listdirinfo(self, path: str) -> list[str]:
        return self.listdir(path)

    def isdir(self, path: str) -> bool:
        try:
            return self.session.directory(self.segments(path)) is not None
        except FilesystemError:
            return False

    def isfile(self, path: str) -> bool:
        try:
            return self.session.lookup(self.segments(path)) is not None
        except FilesystemError:
            return False

    def islink(self, path: str) -> bool:
        return False

    def lexists(self, path: str) -> bool:
        return self.isfile(path) or self.isdir(path)

    def getsize(self, path: str) -> int:
        return self._content(path).size

    def getmtime(self, path: str) -> float:
        return self._content(path).modified.timestamp()

    def stat(self, path: str) -> os.stat_result:
        if self.isdir(path):
            return os.stat_result((_DIR_MODE, 0, 0, 2, 0, 0, 0, 0, 0, 0))
        content = self._content(path)
        mtime = int(content.modified.timestamp())
        return os.stat_result((_FILE_MODE, 0, 0, 1, 0, 0, content.size, mtime, mtime, mtime))

    lstat = stat

    def get_user_by_uid(self, uid: int) -> str:
        return "fleetkey"

    def get_group_by_gid(self, gid: int) -> str:
        return "fleetkey"

    def readlink(self, path: str) -> str:
        raise FilesystemError("no such link")

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise FilesystemError(READ_ONLY)

    mkdir = rmdir = remove = rename = chmod = utime = mkstemp = _read_only


def names_a_stranger(name: str, own: frozenset[str]) -> bool:
    """Whether a directory's name is a MAC or site serial other than the session's own."""
    return len(name) == 12 and all(c in _HEX for c in name) and name.lower() not in own
