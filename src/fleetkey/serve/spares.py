"""A phone's replaced log kept beside it as a "spare", and its next log written into that file.

Creating a file and freeing one is most of what a log upload costs the kernel. On this
project's VM (ext4 without a journal, mounted with ``discard``) ext4 will not hand out again
an inode freed in the last minutes, and each create walks past every such inode of its block
group: in a boot storm, where every phone replaces two logs, a create cost 200 → 550 µs of
kernel CPU over 16,000 replaces and kept growing (docs/serve.md, "Spares"). A spare avoids
both: the log a phone replaced is kept as ``.<mac>-<kind>.spare`` in the phone's folder; the
next upload is written into it and exchanged with the log (``renameat2(RENAME_EXCHANGE)``), so
the spare is then the log it replaced. No inode is created or freed, ~30 µs a replace. A log
that needs fewer blocks than its spare holds is not written into it (cutting the file short
would free blocks, and wait for the discard, on the caller's thread): the spare goes to the
trash and the upload is stored as a new file, whose replaced log is the next spare.

An earlier design (reverted: docs/serve.md) reused any replaced file for any upload; its
review found five ways to hand one phone's bytes to another or to a reader. Each is closed:

- **Only the same file of the same phone.** A spare only ever held that phone's file of that
  kind. (After a power cut the log may hold the phone's earlier log or a mix of the two, as a
  rename without ``fsync`` may; on a disk without a journal, whatever the disk kept.)
- **Only logs** (``boot.log``, ``app.log``, ``appFlash.log``): a phone reads back its override
  files and call lists, never its logs, and a torn override would change a phone's settings.
- **Nobody holds it open.** A write lease (``F_SETLEASE F_WRLCK``) is granted only while no
  other descriptor anywhere has the file open: a transfer of an earlier version, a backup,
  another worker. Not granted: the upload is stored the usual way. Whoever opens the file
  while the lease is held is held back until the upload is done, microseconds later; the
  lease's break signal (SIGIO, whose default would end the process) is ignored by
  :func:`usable`, which also checks that this filesystem grants leases at all.
- **Only a file that is nothing else.** Opened without following a symbolic link, it must be a
  regular file with one link (a hard link elsewhere would be written too) owned by this
  process's user; its mode is set to 0600 whatever it was. A spare that fails these for good
  (or a symbolic link in its place) is moved to the trash, so the next replace makes a new one.
- **Only a file nobody else moves.** Once leased, the spare is renamed to a name of this
  upload's own (``trash.scratch_name``: pid, a token of the process's, a count; the rename
  never replaces) and checked to be the file leased; that name is what is exchanged, and
  the lease is let go once the bytes are written. A spare is made only by a rename that
  refuses to replace (``RENAME_NOREPLACE``), so no spare is ever swapped from under its
  writer, and an administrator deleting spares meanwhile costs only the spare.

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
from typing import TYPE_CHECKING, Final

from fleetkey.serve.trash import scratch_name

if TYPE_CHECKING:
    from fleetkey.serve.trash import Trash

KINDS: Final = frozenset({"boot.log", "app.log", "appFlash.log"})
SUFFIX: Final = ".spare"
_OPEN: Final = os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_AT_FDCWD: Final = -100  # <fcntl.h>
RENAME_NOREPLACE: Final = 1  # <linux/fs.h>, renameat2(2)
RENAME_EXCHANGE: Final = 2  # <linux/fs.h>, renameat2(2)
F_SETLEASE: Final = getattr(fcntl, "F_SETLEASE", 1024)  # <linux/fcntl.h>, fcntl(2)
F_WRLCK: Final = getattr(fcntl, "F_WRLCK", 1)  # <asm-generic/fcntl.h>
F_UNLCK: Final = getattr(fcntl, "F_UNLCK", 2)  # <asm-generic/fcntl.h>
_BUSY: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})  # leased, or open elsewhere
_CANNOT: Final = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP})  # no such renames here

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)  # glibc 2.28+
if _renameat2 is not None:
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    _renameat2.argtypes.append(ctypes.c_uint)
    _renameat2.restype = ctypes.c_int
_exchanges = threading.Event()  # set: this process may exchange (cleared for good on EINVAL)
if _renameat2 is not None:
    _exchanges.set()


def usable(folder: str) -> bool:
    """Whether spares can be used in this process on the filesystem of ``folder`` (a folder of
    the server's own: a probe file is leased there and removed), getting it ready when so:
    ``renameat2`` exists, leases are granted, and the lease's break signal is ignored (called
    on the main thread, before serving; False elsewhere)."""
    if not _exchanges.is_set() or threading.current_thread() is not threading.main_thread():
        return False
    probe = os.path.join(folder, f".lease-probe.{os.getpid()}")
    try:
        handle = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        fcntl.fcntl(handle, F_SETLEASE, F_WRLCK)
    except OSError:  # fs.leases-enable=0, a filesystem or a security module without them
        return False
    finally:
        os.close(handle)
        os.unlink(probe)
    signal.signal(signal.SIGIO, signal.SIG_IGN)
    return True


def spare_of(target: str) -> str:
    """The spare's path of the phone's file at ``target``: hidden, beside it."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}{SUFFIX}")


def rename2(source: str, destination: str, flags: int) -> None:
    """``renameat2(2)``: raises OSError (EINVAL where the filesystem cannot, ENOENT, EEXIST),
    naming both files."""
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", source, None, destination)
    if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(destination), flags):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), source, None, destination)


def write_into_spare(target: str, data: bytes, trash: Trash) -> bool | None:
    """Store ``data`` as ``target`` by writing it into the target's spare and exchanging the
    two: True when ``target`` is new, False when replaced; None when there is no spare it may
    write into (nothing written; the caller stores the upload the usual way). OSError when
    the write or the exchange failed (the target then as it was, the spare in the trash)."""
    if not _exchanges.is_set():
        return None
    spare = spare_of(target)
    try:
        handle = os.open(spare, _OPEN)
    except FileNotFoundError:  # none (yet)
        return None
    except OSError as exc:
        if exc.errno not in _BUSY:  # ELOOP: a symbolic link; EACCES…: not one of ours
            trash.take(spare)
        return None
    try:
        if not _claim(handle, len(data), spare, trash):
            return None
        folder, name = os.path.split(target)
        claim = scratch_name(folder, name.split("-", 1)[0], "claim")
        try:  # a name of this upload's own: nobody else exchanges it
            rename2(spare, claim, RENAME_NOREPLACE)
        except (FileNotFoundError, FileExistsError):  # deleted meanwhile; a name taken
            return None
        if os.lstat(claim).st_ino != os.fstat(handle).st_ino:  # another file came meanwhile
            trash.take(claim)
            return None
        try:
            view, offset = memoryview(data), 0
            while offset < len(data):
                offset += os.pwrite(handle, view[offset:], offset)
            os.ftruncate(handle, len(data))  # as long or longer, in as many blocks
            fcntl.fcntl(handle, F_SETLEASE, F_UNLCK)  # written: readers need not wait more
            created = swap_in(claim, target, trash)
            if created is None:  # cannot exchange after all: the claim becomes the target
                created = not os.path.exists(target)
                os.replace(claim, target)
        except BaseException:
            trash.take(claim)
            raise
        return created
    finally:
        os.close(handle)  # the lease goes with it


def swap_in(source: str, target: str, trash: Trash) -> bool | None:
    """:func:`place`, and the file it replaced made the target's spare (:func:`keep_replaced`)."""
    created = place(source, target)
    if created is False:
        keep_replaced(source, target, trash)
    return created


def place(source: str, target: str) -> bool | None:
    """Put the new file at ``source`` (a name of the caller's own) at ``target``: True when
    there was no ``target`` (renamed to it), False when exchanged (``source`` now holds the
    old one), None when the filesystem cannot (spares are then off for the process; nothing
    moved). IsADirectoryError when ``target`` is not a regular file (nothing moved)."""
    for _ in range(3):  # the target deleted and made again between two tries: try again
        try:
            if not stat.S_ISREG(os.lstat(target).st_mode):  # a folder, a link: not swapped
                raise IsADirectoryError(errno.EISDIR, "not a regular file", target)
            rename2(source, target, RENAME_EXCHANGE)
        except FileNotFoundError:  # no target: the first upload of this log
            pass
        except OSError as exc:
            _cannot(exc)
            return None
        else:
            return False
        try:
            rename2(source, target, RENAME_NOREPLACE)
        except FileExistsError:
            continue
        except OSError as exc:
            _cannot(exc)
            return None
        else:
            return True
    raise OSError(errno.EAGAIN, "the log kept changing while it was replaced", target)


def _cannot(exc: OSError) -> None:
    """Turn spares off when ``exc`` says this filesystem cannot rename so; else raise it."""
    if exc.errno not in _CANNOT:
        raise exc
    _exchanges.clear()


def keep_replaced(replaced: str, target: str, trash: Trash) -> None:
    """After :func:`place` exchanged a new file in at ``target``, make the one it replaced (at
    ``replaced``) the target's spare; when it has one already, the trash takes it."""
    try:
        rename2(replaced, spare_of(target), RENAME_NOREPLACE)
    except OSError:  # EEXIST: a spare already; any other: the upload is stored all the same
        trash.take(replaced)
    else:
        trash.spared += 1


def _claim(handle: int, size: int, spare: str, trash: Trash) -> bool:
    """Whether the spare open as ``handle`` may be written into (``size`` bytes): nobody else
    has it open (the write lease, then held until it is closed), it is a regular file with
    this one name, owned by this process's user, that needs no blocks freed; made private
    (0600). A spare that fails for good goes to the trash."""
    try:
        fcntl.fcntl(handle, F_SETLEASE, F_WRLCK)
    except OSError as exc:
        if exc.errno not in _BUSY:  # not a file of ours (leases were granted at start)
            trash.take(spare)
        return False
    info = os.fstat(handle)
    block = info.st_blksize or 4096
    if (
        not stat.S_ISREG(info.st_mode)
        or info.st_nlink != 1
        or info.st_uid != os.geteuid()
        or -(-info.st_size // block) > -(-size // block)  # shorter by a block or more
    ):
        trash.take(spare)
        return False
    if stat.S_IMODE(info.st_mode) != 0o600:
        os.fchmod(handle, 0o600)
    return True
