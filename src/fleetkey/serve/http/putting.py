"""HTTP PUT of the files phones write: the pipeline's accepted upload stored, or refused.

A small upload (a log, an override file) is written at once, on the event loop, as a small
tree file is read there: a worker thread's hand-off costs more than the write. A large one is
written on a worker thread. So are small ones for a while after the loop waited in them for
more than 2 % of a second (:class:`WritePlace`): on a disk, replacing a file can wait for the
device (ext4 mounted with ``discard`` frees the old file's blocks with a synchronous discard
inside the ``rename``), and a loop waiting there answers none of its connections
(docs/serve.md, "Workers"). Either way the answer is 201 (new) or 204 (replaced), 507 when the
disk is full (the phone may try again later), 500 for any other failure; nothing partial is
left behind (``serve.uploads``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import resource
from pathlib import Path
from typing import Final

from fleetkey.serve.fetching import Ruling
from fleetkey.serve.http.messages import Request, Response, error_response
from fleetkey.serve.uploads import store_status

INLINE_UPLOAD_BYTES: Final = 64 * 1024  # uploads up to this size are written on the event loop
# the event loop may wait for the disk in uploads written on it for this share of a second:
# the wall time of writes in which the loop's thread slept (a voluntary context switch: the
# device, or a lock), less its CPU in them. On tmpfs or a quick disk a write does not sleep;
# on this VM's ext4 (``discard``) one rename waited 2-130 ms under load. A thread preempted by
# another (an involuntary switch) is not waiting for the disk and is not counted: a busy
# machine alone would send uploads to threads
WAITED_SHARE: Final = 0.05
# beyond, small uploads are written on worker threads for this long, then tried on the loop
# again: a thread's hand-off costs CPU (~100 us an upload measured on this VM), worth it only
# while the loop would wait for longer
THREADS_FOR_S: Final = 30.0


class WritePlace:
    """Where a small upload is written: on the event loop while the filesystem answers at
    once, on a worker thread for ``THREADS_FOR_S`` after the loop waited in its uploads for
    more than ``WAITED_SHARE`` of a second."""

    def __init__(self) -> None:
        self._threads_until = -math.inf
        self._window_began = -math.inf
        self._waited = 0.0
        self.slow = 0  # threaded spells begun

    def inline(self, size: int, now: float) -> bool:
        """Whether an upload of ``size`` bytes is written on the event loop at ``now``."""
        return size <= INLINE_UPLOAD_BYTES and now >= self._threads_until

    def took(self, wall: float, cpu: float, slept: bool, now: float) -> None:
        """An inline write took ``wall`` seconds, ``cpu`` of them on the loop's thread;
        ``slept``: the thread gave the CPU up in it (waited); ``now`` when it ended
        (``time.perf_counter``). Use :func:`thread_usage` before and after."""
        if slept:
            self._waited += max(0.0, wall - cpu)
        span = now - self._window_began
        if span < 1.0:
            return
        if self._waited > WAITED_SHARE * span:
            self.slow += 1
            self._threads_until = now + THREADS_FOR_S
        self._window_began, self._waited = now, 0.0


def thread_usage() -> tuple[float, int]:
    """The calling thread's CPU seconds and voluntary context switches so far."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw


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
