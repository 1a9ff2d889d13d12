"""HTTP PUT of the files phones write: the pipeline's accepted upload stored, or refused.

A small upload (a log, an override file) is written at once, on the event loop, as a small
tree file is read there: a worker thread's hand-off costs more than the write. A large one is
written on a worker thread. So are small ones for a while after a small one kept the loop
waiting (:class:`WritePlace`): on a disk, replacing a file can wait for the device (ext4
mounted with ``discard`` frees the old file's blocks with a synchronous discard inside the
``rename``), and a loop waiting there answers none of its connections (docs/serve.md,
"Workers"). Either way the answer is 201 (new) or 204 (replaced), 507 when
the disk is full (the phone may try again later), 500 for any other failure; nothing partial
is left behind (``serve.uploads``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path
from typing import Final

from fleetkey.serve.fetching import Ruling
from fleetkey.serve.http.messages import Request, Response, error_response
from fleetkey.serve.uploads import store_status

INLINE_UPLOAD_BYTES: Final = 64 * 1024  # uploads up to this size are written on the event loop
# an upload written on the event loop that took longer than this waited for the disk (a
# write to the page cache or tmpfs takes ~20-50 us; a synchronous discard milliseconds)...
SLOW_WRITE_S: Final = 0.002
# ...and then small uploads are written on worker threads for this long, after which one is
# tried on the loop again (a loaded CPU can also make a write slow: then threads cost a few
# microseconds an upload for this long, no more)
THREADS_FOR_S: Final = 30.0


class WritePlace:
    """Where a small upload is written: on the event loop while the filesystem answers at
    once, on a worker thread for ``THREADS_FOR_S`` after one took over ``SLOW_WRITE_S``."""

    def __init__(self) -> None:
        self._threads_until = -math.inf
        self.slow = 0  # writes on the loop that took too long (each began a threaded spell)

    def inline(self, size: int, now: float) -> bool:
        """Whether an upload of ``size`` bytes is written on the event loop at ``now``."""
        return size <= INLINE_UPLOAD_BYTES and now >= self._threads_until

    def took(self, began: float, ended: float) -> None:
        """An inline write ran from ``began`` to ``ended`` (``time.perf_counter``)."""
        if ended - began > SLOW_WRITE_S:
            self.slow += 1
            self._threads_until = ended + THREADS_FOR_S


def store_now(root: Path, request: Request, ruling: Ruling | Response) -> Response:
    """The answer to an upload, stored before returning."""
    if isinstance(ruling, Response) or ruling.upload is None:
        return refusal(ruling)
    return _answer(request, ruling, store_status(root, ruling.upload.name, request.body))


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
