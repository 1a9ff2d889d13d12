"""How the admin API answers what goes wrong: one status per error class, one body for all.

Every error answer is ``{"error": ref, "detail": message}``, with ``"hint"`` when there is one
for an API client (:func:`api_hint`):
fleetkey's own errors, FastAPI's request validation (a body or query that does not fit the
schema) and the HTTP errors of routing and authentication (401, 404, 405) alike. ``ref`` is a
stable kebab-case name a client can branch on: the error class without ``Error``
(``NotFoundError`` → ``not-found``, ``UnknownFeatureError`` → ``unknown-feature``),
``invalid-request`` for validation, and the status's phrase for HTTP errors
(``unauthorized``).

The status of a fleetkey error is the entry of its nearest class in :data:`STATUS`:

- 404 a site, phone, license or rollout that does not exist;
- 409 what is recorded forbids it (a site that exists, a revoked key, a rollout that cannot
  move so; a keyring without an active signing key): change the state, then ask again;
- 422 the request is well-formed but its content is not acceptable (a bad MAC, an unknown
  feature, a license without features): the status FastAPI gives a body that does not fit
  the schema, so a client sees one status for "fix your request";
- 500 the server cannot do it as configured (no passphrase for its signing key, a database or
  data directory it cannot use, a broken feature catalog); logged with the traceback;
- 503 busy (the fetch-record queue stayed full): ask again later.

Whatever else goes wrong inside a route is answered 500 ``internal-error`` in the same shape
and logged with its traceback (:class:`Unexpected`, the API's outer loop). Inputs are bounded
before they reach the store: ids in paths at :data:`MAX_ROW_ID`, day counts at
:data:`MAX_DAYS`; file names leave only as :func:`attachment` writes them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final, get_args
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetkey.errors import (
    ConflictError,
    FleetkeyError,
    InputError,
    KeyringError,
    LicenseValueError,
    NotFoundError,
    PassphraseError,
    QueueFullError,
    UnknownFeatureError,
    UnsafePostError,
)

log = logging.getLogger(__name__)

STATUS: Final[Mapping[type[FleetkeyError], int]] = {
    NotFoundError: 404,
    ConflictError: 409,
    KeyringError: 409,  # no active signing key, a public key only: the operator changes that
    PassphraseError: 500,  # the server was started without the passphrase its key needs
    InputError: 422,
    LicenseValueError: 422,  # the license asked for breaks spec §2 (e.g. no feature)
    UnknownFeatureError: 422,
    QueueFullError: 503,
    FleetkeyError: 500,  # the rest is the server's own state: data directory, database, catalog
}
_WORD_START: Final = re.compile(r"(?<!^)(?=[A-Z])")
MAX_ROW_ID: Final = 2**63 - 1  # BIGINT (PostgreSQL) and SQLite INTEGER: no row has a larger id
MAX_DAYS: Final = 1_000_000  # a horizon in days: ~2,700 years, short of date.max from today
# RFC 6266 §4.1 / RFC 8187 §3.2.1: a quoted ASCII fallback, and attr-chars left as they are
_UNSAFE_IN_QUOTES: Final = re.compile(r'[^\x20-\x7e]|["\\%/]')
_ATTR_CHARS: Final = "!#$&+-.^_`|~"
_CLI_WORDS: Final = re.compile(r"\bfleetkey |(?<![\w-])--[a-z]")  # a CLI command or flag
# inputs that make a refused change go through: (the value to send, what it does)
_OVERRIDES: Final[Mapping[str, tuple[str, str]]] = {
    "force": ("true", "to do it anyway: the audit trail keeps what was lost"),
    "accept_unverified": (
        '"REASON"',
        "to serve it anyway: the audit trail keeps the reason and who gave it",
    ),
}


def status_of(error: FleetkeyError) -> int:
    """The HTTP status for ``error``: the entry of its nearest class in :data:`STATUS`."""
    return next(STATUS[kind] for kind in type(error).__mro__ if kind in STATUS)


def ref_of(error: FleetkeyError) -> str:
    """``NotFoundError`` → ``not-found``: the class, as a stable name for clients."""
    name = type(error).__name__.removesuffix("Error")
    return _WORD_START.sub("-", name).lower()


def problem(
    status: int,
    ref: str,
    detail: str,
    *,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one shape of every error answer."""
    body: dict[str, Any] = {"error": ref, "detail": detail}
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def api_hint(error: FleetkeyError, route: object) -> str | None:
    """The hint an API client gets for ``error`` raised in ``route``.

    Library errors carry the CLI's hint (``give --force``, ```fleetkey licenses post ID
    --dry-run```), which means nothing to a client: when the error names an input that makes
    the change go through (its ``field``: ``force``, ``accept_unverified``) and the route takes
    it, the hint names it as the route takes it (``?force=true``, ``"force": true``); any other
    hint that names a CLI command or flag is left out.
    """
    override = _OVERRIDES.get(error.field or "")
    spelled = _spelled(route, error.field or "", override[0]) if override else None
    if override is not None and spelled is not None:
        hint = f"send {spelled} {override[1]}"
        preview = _spelled(route, "dry_run", "true")
        if isinstance(error, UnsafePostError) and preview is not None:
            hint = f"{preview} shows the change feature by feature; {hint}"
        return hint
    if error.hint is None or _CLI_WORDS.search(error.hint):
        return None
    return error.hint


def _spelled(route: object, name: str, value: str) -> str | None:
    """``name`` as ``route`` takes it: ``?name=value`` in the query, ``"name": value`` in
    the JSON body; None when the route does not take it."""
    if not isinstance(route, APIRoute):
        return None
    if any(param.name == name for param in route.dependant.query_params):
        return f"?{name}={value.strip(chr(34))}"
    for param in route.dependant.body_params:
        annotation = param.field_info.annotation
        for model in get_args(annotation) or (annotation,):
            if (
                isinstance(model, type)
                and issubclass(model, BaseModel)
                and name in model.model_fields
            ):
                return f'"{name}": {value}'
    return None


def attachment(file_name: str) -> str:
    """A Content-Disposition value for ``file_name`` that is safe whatever the name holds.

    RFC 6266: ``filename*=UTF-8''…`` carries the name exactly (percent-encoded, so CR, LF and
    non-Latin-1 characters never reach the header as such), and ``filename="…"`` an ASCII
    fallback for old clients, each character outside printable ASCII (and ``" \\ % /``)
    replaced by ``_``.
    """
    fallback = _UNSAFE_IN_QUOTES.sub("_", file_name) or "license.cfg"
    exact = quote(file_name, safe=_ATTR_CHARS, encoding="utf-8", errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


class Unexpected:
    """The API's outer loop: an exception no handler took is logged with its traceback and
    answered 500 ``internal-error`` in the one shape (unless the answer had already begun)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:  # the outer loop: logged, answered 500 (the server counts answers)
            log.exception("admin API: %s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise
            answer = problem(500, "internal-error", "the server failed to answer; it is logged")
            await answer(scope, receive, send)


def install(app: FastAPI) -> None:
    """Answer fleetkey errors, validation errors, HTTP errors and the unexpected in the one
    shape."""
    app.add_middleware(Unexpected)

    @app.exception_handler(FleetkeyError)
    async def refused(request: Request, exc: FleetkeyError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("admin API: %s", exc.message, exc_info=exc)
        hint = api_hint(exc, request.scope.get("route"))
        return problem(status, ref_of(exc), exc.message, hint=hint)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "invalid-request", _validation_detail(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        phrase = HTTPStatus(exc.status_code).phrase
        return problem(
            exc.status_code,
            phrase.lower().replace(" ", "-"),
            str(exc.detail),
            headers=exc.headers,
        )


def _validation_detail(errors: Any) -> str:
    """``body.serial: Field required; query.limit: …``: where, and what is wrong there."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "; ".join(parts) or "the request does not fit the schema"
