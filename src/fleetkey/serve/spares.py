"""A phone's replaced log kept beside it as a "spare", and its next log written into that file.

Creating a file and freeing one is most of what a log upload costs the kernel. On this
project's VM (ext4 without a journal, mounted with ``discard``) ext4 will not hand out again
an inode freed in the last minutes, and each create walks past every such inode of its block
group: in a boot storm, where every phone replaces two logs, a create cost 200 → 550 µs of
kernel CPU over 16,000 replaces and kept growing (docs/serve.md, "The storm with history").
A spare removes both: the log a phone uploaded before is kept as ``.<name>.spare`` in the
phone's folder; the next upload is written into it and swapped with the log in one
``renameat2(RENAME_EXCHANGE)``, so the spare is then the log it replaced. No inode is created
or freed, no block freed (so no discard), ~30 µs a replace.

An earlier design (reverted: docs/serve.md) reused any replaced file for any upload; its
review found five ways to hand one phone's bytes to another or to a reader. Each is closed:

- **Only the same file of the same phone.** A spare is ``<mac>/.<mac>-<kind>.spare``: it only
  ever held that phone's file of that kind. After a power cut the log may hold the phone's own
  earlier log, or a mix of the two, never another phone's or another kind's bytes.
- **Only logs** (``boot.log``, ``app.log``, ``appFlash.log``): a phone reads back its override
  files and call lists, never its logs, and a torn override would change a phone's settings.
- **Nobody holds it open.** A write lease (``F_SETLEASE F_WRLCK``) is granted only while no
  other descriptor anywhere has the file open: a transfer of an earlier version, a backup,
  another worker. Not granted: the upload is stored the usual way. Whoever opens the spare
  while the lease is held (only a backup can reach its hidden name) is held back until the
  write is done, microseconds later; the lease's break signal (SIGIO, whose default would end
  the process) is ignored by :func:`usable`.
- **Only a file that is nothing else.** Opened without following a symbolic link, it must be a
  regular file with one link (a hard link elsewhere would be written too) owned by this
  process's user; its mode is set to 0600 whatever it was.
- **Only a name nobody else replaces.** A spare is made only by the exchange or by a rename
  that refuses to replace (``RENAME_NOREPLACE``): an existing spare is never swapped from
  under a writer holding it.

A filesystem that cannot exchange (``EINVAL``) turns spares off for the process; the caller
then writes a new file and renames it over the log, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import signal
import stat
import threading
from typing import Final

KINDS: Final = frozenset({"boot.log", "app.log", "appFlash.log"})
SUFFIX: Final = ".spare"
_OPEN: Final = os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_AT_FDCWD: Final = -100
RENAME_NOREPLACE: Final = 1
RENAME_EXCHANGE: Final = 2
F_SETLEASE: Final = getattr(fcntl, "F_SETLEASE", 1024)
F_WRLCK: Final = getattr(fcntl, "F_WRLCK", 1)
F_UNLCK: Final = getattr(fcntl, "F_UNLCK", 2)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)  # glibc 2.28+
if _renameat2 is not None:
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    _renameat2.argtypes.append(ctypes.c_uint)
    _renameat2.restype = ctypes.c_int
_state = {"exchanges": _renameat2 is not None}


def usable() -> bool:
    """Whether spares can be used in this process, getting it ready when so: ``renameat2``
    exists and the lease's break signal is ignored (called on the main thread, before
    serving; False elsewhere)."""
    if not _state["exchanges"] or threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGIO, signal.SIG_IGN)
    return True


def spare_of(target: str) -> str:
    """The spare's path of the phone's file at ``target``: hidden, beside it."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}{SUFFIX}")


def rename2(source: str, destination: str, flags: int) -> None:
    """``renameat2(2)``: raises OSError (EINVAL where the filesystem cannot, ENOENT, EEXIST)."""
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(destination), flags):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), source)


def write_into_spare(target: str, data: bytes) -> bool | None:
    """Store ``data`` as ``target`` by writing it into the target's spare and exchanging the
    two: True when ``target`` is new, False when replaced; None when there is no spare it may
    write into (nothing written; the caller stores the upload the usual way). OSError when
    the write or the exchange failed (the target then as it was)."""
    if not _state["exchanges"]:
        return None
    spare = spare_of(target)
    try:
        handle = os.open(spare, _OPEN)
    except OSError:  # none; a symbolic link (ELOOP); leased by another (EWOULDBLOCK)
        return None
    try:
        if not _claim(handle):
            return None
        view, offset = memoryview(data), 0
        while offset < len(data):
            offset += os.pwrite(handle, view[offset:], offset)
        os.ftruncate(handle, len(data))
        if os.fstat(handle).st_nlink != 1:  # the spare's name removed meanwhile: not ours
            return None
        return _swap(spare, target)
    finally:
        os.close(handle)  # the lease goes with it


def keep_replaced(replaced: str, target: str) -> bool:
    """After an exchange put a new file at ``target`` and the one it replaced at ``replaced``:
    make that the target's spare, when it has none (True); False: it has one (or the rename
    failed), ``replaced`` is left for the caller to free."""
    try:
        rename2(replaced, spare_of(target), RENAME_NOREPLACE)
    except OSError:  # EEXIST: a spare already
        return False
    return True


def exchange(source: str, target: str) -> bool | None:
    """Swap the new file at ``source`` with ``target``: True when there was no ``target``
    (``source`` renamed to it), False when swapped (``source`` now holds the old one), None
    when the filesystem cannot exchange (spares are then off for the process; nothing
    moved)."""
    try:
        rename2(source, target, RENAME_EXCHANGE)
    except OSError as exc:
        if exc.errno == errno.ENOENT and os.path.exists(source):
            os.replace(source, target)
            return True
        if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            _state["exchanges"] = False
            return None
        raise
    return False


def _claim(handle: int) -> bool:
    """Whether the file open as ``handle`` may be written into: nobody else has it open
    (the write lease, then held until it is closed), it is a regular file with this one
    name, owned by this process's user; made private (0600)."""
    try:
        fcntl.fcntl(handle, F_SETLEASE, F_WRLCK)
    except OSError:  # EAGAIN: open elsewhere; EACCES/EINVAL/ENOLCK: no leases here
        return False
    info = os.fstat(handle)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.geteuid():
        return False
    if stat.S_IMODE(info.st_mode) != 0o600:
        os.fchmod(handle, 0o600)
    return True


def _swap(spare: str, target: str) -> bool | None:
    """Exchange the written spare with ``target`` (True: there was no target; None: the
    spare's name was deleted meanwhile, nothing moved)."""
    try:
        done = exchange(spare, target)
    except FileNotFoundError:
        return None
    if done is None:  # cannot exchange after all: the spare's bytes become the target
        created = not os.path.exists(target)
        os.replace(spare, target)
        return created
    return done
