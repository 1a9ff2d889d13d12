"""HTTP PUT of the files phones write: the pipeline's accepted upload stored, or refused.

A small upload (a log, an override file) is written at once, on the event loop, as a small
tree file is read there: a worker thread's hand-off costs more than the write. A large one is
written on a worker thread. On a filesystem mounted with ``discard`` (:func:`discards`) the
``rename`` would free the replaced file's blocks with a synchronous discard, so the replaced
file is kept in a trash that a thread of its own empties (``serve.trash``) and the write stays
on the loop. On a network filesystem (:func:`waits_for_device`) every rename waits for its
server, and an event loop waiting there answers none of its connections: small uploads go to
worker threads there too (docs/serve.md, "Throughput with both cores"). Either way the
answer is 201 (new) or 204 (replaced), 507 when the disk is full (the phone may try again
later), 500 for any other failure; nothing partial is left behind (``serve.uploads``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path
from typing import Final

from fleetkey.serve.fetching import Ruling
from fleetkey.serve.http.messages import Request, Response, error_response
from fleetkey.serve.trash import Trash
from fleetkey.serve.uploads import store_status

INLINE_UPLOAD_BYTES: Final = 64 * 1024  # uploads up to this size are written on the event loop
# filesystems whose writes wait for a network: a rename there can take a round trip or more
NETWORK_FILESYSTEMS: Final = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "9p", "ceph", "glusterfs", "fuse.sshfs", "afs"}
)
MOUNTINFO: Final = Path("/proc/self/mountinfo")


def waits_for_device(path: Path, mountinfo: str | None = None) -> bool:
    """Whether replacing a file under ``path`` may keep the caller waiting for a device: its
    filesystem is mounted with ``discard`` (freeing the replaced file's blocks waits for the
    device's discard, inside the rename) or is a network filesystem. ``mountinfo``: the text
    of /proc/self/mountinfo (read when None; unreadable, as off Linux: False)."""
    found = _mount(path, mountinfo)
    return found is not None and ("discard" in found[1] or found[0] in NETWORK_FILESYSTEMS)


def discards(path: Path, mountinfo: str | None = None) -> bool:
    """Whether the filesystem under ``path`` is mounted with ``discard``, and is no network
    filesystem: the wait is then only the freeing of a replaced file, which a trash
    (``serve.trash``) takes off the caller's thread; a network filesystem's rename waits
    for its server either way."""
    found = _mount(path, mountinfo)
    return found is not None and "discard" in found[1] and found[0] not in NETWORK_FILESYSTEMS


def upload_place(uploads: Path) -> tuple[Trash | None, bool]:
    """How small uploads under ``uploads`` are written: on the event loop with a trash for
    the replaced files (a filesystem mounted with ``discard``), on the event loop as they are
    (nothing waits), or on worker threads (True: a network filesystem)."""
    if discards(uploads):
        return Trash(uploads), False
    return None, waits_for_device(uploads)


def _mount(path: Path, mountinfo: str | None) -> tuple[str, set[str]] | None:
    """The type and options of the filesystem holding ``path`` (None: unknown)."""
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text()
        except OSError:
            return None
    where = os.path.realpath(path)
    found: tuple[int, str, set[str]] | None = None  # the longest mount point holding it
    for line in mountinfo.splitlines():
        mine, _, theirs = line.partition(" - ")
        fields, rest = mine.split(), theirs.split()
        if len(fields) < 6 or len(rest) < 3:
            continue
        point = _unescape(fields[4])
        inside = where == point or where.startswith(point.rstrip("/") + "/")
        if inside and (found is None or len(point) >= found[0]):  # a later mount covers
            found = (len(point), rest[0], {*fields[5].split(","), *rest[2].split(",")})
    return None if found is None else (found[1], found[2])


def _unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def store_now(
    root: Path, request: Request, ruling: Ruling | Response, trash: Trash | None = None
) -> Response:
    """The answer to an upload, stored before returning (the replaced file kept in ``trash``,
    when there is one, for its thread to free)."""
    if isinstance(ruling, Response) or ruling.upload is None:
        return refusal(ruling)
    status = store_status(root, ruling.upload.name, request.body, trash)
    return _answer(request, ruling, status)


async def store_later(root: Path, request: Request, ruling: Ruling | Response) -> Response:
    """The answer to an upload, stored on a worker thread."""
    if isinstance(ruling, Response) or ruling.upload is None:
        return refusal(ruling)
    status = await asyncio.get_running_loop().run_in_executor(
        None, store_status, root, ruling.upload.name, request.body
    )
    return _answer(request, ruling, status)


def refusal(ruling: Ruling | Response) -> Response:
    """A refusing ruling as an answer (an answer already made stays as it is)."""
    if isinstance(ruling, Response):
        return ruling
    response = error_response(ruling.status, ruling.reason)
    response.ruling = ruling
    return response


def _answer(request: Request, ruling: Ruling, status: int) -> Response:
    if status >= 500:
        response = error_response(status, "the upload could not be stored")
    else:
        response = Response(status)
        response.received = len(request.body)
        response.digest = hashlib.sha256(request.body).hexdigest()
    response.ruling = ruling
    return response
