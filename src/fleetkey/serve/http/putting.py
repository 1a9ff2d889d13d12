"""HTTP PUT of the files phones write: the pipeline's accepted upload stored, or refused.

A small upload (a log, an override file) is written at once, on the event loop, as a small
tree file is read there: a worker thread's hand-off costs more than the write. A large one is
written on a worker thread. Either way the answer is 201 (new) or 204 (replaced), 507 when
the disk is full (the phone may try again later), 500 for any other failure; nothing partial
is left behind (``serve.uploads``).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Final

from fleetkey.serve.fetching import Ruling
from fleetkey.serve.http.messages import Request, Response, error_response
from fleetkey.serve.uploads import store_status

INLINE_UPLOAD_BYTES: Final = 64 * 1024  # uploads up to this size are written on the event loop


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
