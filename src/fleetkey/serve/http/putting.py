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
from pathlib import Path
from typing import Final

from fleetkey.serve.fetching import Ruling
from fleetkey.serve.http.messages import Request, Response, error_response
from fleetkey.serve.mounts import mount_of
from fleetkey.serve.trash import Trash
from fleetkey.serve.uploads import store_status

INLINE_UPLOAD_BYTES: Final = 64 * 1024  # uploads up to this size are written on the event loop
# filesystems whose writes wait for a network: a rename there can take a round trip or more
NETWORK_FILESYSTEMS: Final = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "9p", "ceph", "glusterfs", "fuse.sshfs", "afs"}
)


def waits_for_device(path: Path, mountinfo: str | None = None) -> bool:
    """Whether replacing a file under ``path`` may keep the caller waiting for a device: its
    filesystem is mounted with ``discard`` (freeing the replaced file's blocks waits for the
    device's discard, inside the rename) or is a network filesystem. ``mountinfo``: the text
    of /proc/self/mountinfo (read when None; unreadable, as off Linux: False)."""
    found = mount_of(path, mountinfo)
    return found is not None and ("discard" in found.options or found.type in NETWORK_FILESYSTEMS)


def discards(path: Path, mountinfo: str | None = None) -> bool:
    """Whether the filesystem under ``path`` is mounted with ``discard``, and is no network
    filesystem: the wait is then only the freeing of a replaced file, which a trash
    (``serve.trash``) takes off the caller's thread; a network filesystem's rename waits
    for its server either way."""
    found = mount_of(path, mountinfo)
    return (
        found is not None and "discard" in found.options and found.type not in NETWORK_FILESYSTEMS
    )


def upload_place(uploads: Path) -> tuple[Trash | None, bool]:
    """How small uploads under ``uploads`` are written: on the event loop with a trash for
    the replaced files (a filesystem mounted with ``discard``), on the event loop as they are
    (nothing waits), or on worker threads (True: a network filesystem)."""
    if discards(uploads):
        return Trash(uploads), False
    return None, waits_for_device(uploads)


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
