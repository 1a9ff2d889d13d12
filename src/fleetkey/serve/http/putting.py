"""HTTP PUT of the files phones write: the pipeline's accepted upload stored, or refused.

A small upload (a log, an override file) is written at once, on the event loop, as a small
tree file is read there: a worker thread's hand-off costs more than the write. A large one is
written on a worker thread. Either way the answer is 201 (new) or 204 (replaced), 507 when
the disk is full (the phone may try again later), 500 for any other failure; nothing partial
is left behind (``serve.uploads``).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
from pathlib import Path
from typing import Final

from fleetkey.serve.fetching import Ruling
from fleetkey.serve.http.messages import Request, Response, error_response
from fleetkey.serve.uploads import store_upload

log = logging.getLogger(__name__)

INLINE_UPLOAD_BYTES: Final = 64 * 1024  # uploads up to this size are written on the event loop


def store_now(root: Path, request: Request, ruling: Ruling | Response) -> Response:
    """The answer to an upload, stored before returning."""
    if isinstance(ruling, Response) or ruling.upload is None:
        return refusal(ruling)
    try:
        created = store_upload(root, ruling.upload.name, request.body)
    except OSError as exc:
        return _not_stored(ruling, exc)
    return _stored(request, ruling, created)


async def store_later(root: Path, request: Request, ruling: Ruling | Response) -> Response:
    """The answer to an upload, stored on a worker thread."""
    if isinstance(ruling, Response) or ruling.upload is None:
        return refusal(ruling)
    loop = asyncio.get_running_loop()
    try:
        created = await loop.run_in_executor(
            None, store_upload, root, ruling.upload.name, request.body
        )
    except OSError as exc:
        return _not_stored(ruling, exc)
    return _stored(request, ruling, created)


def refusal(ruling: Ruling | Response) -> Response:
    """A refusing ruling as an answer (an answer already made stays as it is)."""
    if isinstance(ruling, Response):
        return ruling
    response = error_response(ruling.status, ruling.reason)
    response.ruling = ruling
    return response


def _not_stored(ruling: Ruling, exc: OSError) -> Response:
    log.error(  # counted by its status, no traceback
        "storing upload %s failed: %s", ruling.upload.name if ruling.upload else "?", exc
    )
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    response = error_response(507 if full else 500, "the upload could not be stored")
    response.ruling = ruling
    return response


def _stored(request: Request, ruling: Ruling, created: bool) -> Response:
    response = Response(201 if created else 204)
    response.ruling = ruling
    response.received = len(request.body)
    response.digest = hashlib.sha256(request.body).hexdigest()
    return response
