"""The dashboard's license pre-flight: upload a license file, see what posting it would do,
post it with the session's CSRF token (``ops/preflight.py`` judges and posts, as ``fleetkey
licenses import --post`` does; audited as ``dashboard@<address>``).

The upload is ``multipart/form-data`` with the file and ``csrf``, read up to a license file's
size (256 KiB) and a little for the form: a larger body is refused unread (413). The verdict
page carries the checked bytes (base64) in the post form, so posting needs no state on the
server; the post checks them again from scratch, so a form altered on its way back can only
post a file that passes the same checks.
"""

# no ``from __future__ import annotations``: FastAPI reads the route annotations at runtime

import base64
import binascii
from collections.abc import AsyncGenerator, Callable
from typing import Annotated, Final

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from fleetkey.authority.keyring import Keyring
from fleetkey.core.signing import TrustedKeys
from fleetkey.core.terms import format_term
from fleetkey.ops import preflight
from fleetkey.ui.app import UiContext, Viewer, error_page
from fleetkey.ui.params import Query, bad, form_fields

ENVELOPE_BYTES: Final = 16 * 1024  # the multipart boundaries, headers and the csrf field
UPLOAD_BYTES: Final = preflight.MAX_UPLOAD_BYTES + ENVELOPE_BYTES
POST_FORM_BYTES: Final = 4 * preflight.MAX_UPLOAD_BYTES  # base64, then urlencoded
UPLOAD_FIELDS: Final = frozenset({"csrf", "file"})
POST_FIELDS: Final = frozenset({"csrf", "name", "content", "reason"})


class UploadTooLargeError(Exception):
    """The request body is over ``UPLOAD_BYTES``: it is not read further."""


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (UploadTooLargeError) past ``limit`` bytes, whatever the
    Content-Length says (or whether it says anything)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLargeError
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadTooLargeError
    return bytes(body)


async def upload_fields(request: Request) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """The upload form's text fields and its file (name, bytes), each field at most once."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise bad("form", "expected multipart/form-data holding the license file")
    body = await bounded_body(request, UPLOAD_BYTES)

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, stream(), max_files=1, max_fields=2)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise bad("form", f"not a multipart form fleetkey can read: {exc.message}") from exc
    fields: dict[str, str] = {}
    upload = None
    try:
        for name in form:
            values = form.getlist(name)
            if name not in UPLOAD_FIELDS:
                raise bad(name, "not a field of this form (csrf, file)")
            if len(values) != 1:
                raise bad(name, "given more than once")
            value = values[0]
            if isinstance(value, UploadFile):
                upload = (value.filename or "", await value.read())
            else:
                fields[name] = value
    finally:
        await form.close()
    return fields, upload


def routes(ui: FastAPI, context: UiContext, viewer: Callable[[Request], Viewer]) -> None:
    signed_in = Annotated[Viewer, Depends(viewer)]

    def trusted() -> TrustedKeys:
        return Keyring(context.data.keys).trusted()

    @ui.get("/licenses/check", include_in_schema=False)
    def check_form(view: signed_in) -> HTMLResponse:
        Query.of(list(view.request.query_params.multi_items()), frozenset())
        return view.page("preflight.html", nav="licenses", verdict=None)

    @ui.post("/licenses/check", include_in_schema=False)
    async def check_upload(view: signed_in) -> Response:
        try:
            fields, upload = await upload_fields(view.request)
        except UploadTooLargeError:
            return _too_large()
        if (refused := view.csrf_refused(fields)) is not None:
            return refused
        if upload is None or not upload[0]:
            raise bad("file", "choose the license file to check")
        name, content = upload
        verdict = await run_in_threadpool(
            preflight.preflight, context.data, context.store, context.clock, name, content,
            trusted(),
        )  # fmt: skip
        return view.page(
            "preflight.html",
            nav="licenses",
            verdict=verdict,
            content=base64.urlsafe_b64encode(content).decode("ascii"),
            label=context.data.catalog().label,
            term=format_term,
        )

    @ui.post("/licenses/post", include_in_schema=False)
    async def post_upload(view: signed_in) -> Response:
        try:
            body = await bounded_body(view.request, POST_FORM_BYTES)
        except UploadTooLargeError:
            return _too_large()
        fields = form_fields(body, POST_FIELDS, limit=POST_FORM_BYTES)
        if (refused := view.csrf_refused(fields)) is not None:
            return refused
        try:
            text = fields.get("content", "").encode("ascii")
            content = base64.b64decode(text, altchars=b"-_", validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise bad("content", "not the file the pre-flight page carried (base64)") from exc
        done = await run_in_threadpool(
            preflight.post_upload, context.data, context.store, context.clock, view.actor,
            fields.get("name", ""), content, trusted(), fields.get("reason"),
        )  # fmt: skip
        first = done.imported[0].id if done.imported else None
        return RedirectResponse(
            f"/ui/licenses/{first}" if first else "/ui/licenses", status_code=303
        )


def _too_large() -> HTMLResponse:
    return error_page(
        413,
        f"the upload is larger than a license file may be ({preflight.MAX_UPLOAD_BYTES} "
        "bytes): it was not read, nothing was changed",
        "a license file holds a few keys of ~700 bytes each: is this the right file?",
    )
