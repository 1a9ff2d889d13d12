"""How the admin API answers what goes wrong: one status per error class, one body for all.

Every error answer is ``{"error": ref, "detail": message}``, with ``"hint"`` when there is one:
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
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

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


def install(app: FastAPI) -> None:
    """Answer fleetkey errors, validation errors and HTTP errors in the one shape."""

    @app.exception_handler(FleetkeyError)
    async def refused(_request: Request, exc: FleetkeyError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("admin API: %s", exc.message, exc_info=exc)
        return problem(status, ref_of(exc), exc.message, hint=exc.hint)

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
