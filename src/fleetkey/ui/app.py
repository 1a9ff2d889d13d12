"""The dashboard's ASGI app, mounted at ``/ui`` on the admin API's app (one listener, one TLS).

Every page but the sign-in form and the static files needs a session (``fleetkey.ui.session``);
a request without one is sent to the sign-in page and gets no data. Errors are pages too: a
bad parameter 400 naming it, a missing row 404, a refused move 409, a form without its CSRF
token 403. Every answer carries a strict Content-Security-Policy: scripts, styles and images
only from fleetkey itself, no inline script, no framing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetkey.authority.datadir import DataDir
from fleetkey.clock import Clock
from fleetkey.core.words import plain
from fleetkey.errors import ConflictError, FleetkeyError, InputError, NotFoundError
from fleetkey.store import dashboard
from fleetkey.store.audit import readable_details
from fleetkey.store.store import Store
from fleetkey.ui.session import COOKIE, SESSION_S, Session, Signer

log = logging.getLogger(__name__)

ACTOR: Final = "dashboard"  # who the audit trail says acted, with the address
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)
STATIC: Final = {"fleetkey.css": "text/css", "live.js": "text/javascript"}


@dataclass(frozen=True, slots=True)
class UiContext:
    data: DataDir
    store: Store
    clock: Clock
    session_s: int = SESSION_S
    # the store's session secret once read (it never changes): not a query per request
    _secret: list[bytes] = field(default_factory=list, compare=False, repr=False)

    def signer(self) -> Signer:
        if not self._secret:
            with self.store.transaction() as session:
                self._secret.append(dashboard.secret(session, self.clock))
        return Signer.from_secret(self._secret[0], self.data.api_token)

    def signed_out(self, session_id: str) -> bool:
        with self.store.transaction() as session:
            return dashboard.signed_out(session, session_id)


class SignInNeededError(Exception):
    """No valid session: the answer is the way to the sign-in page (not a fleetkey error)."""


class Viewer:
    """One signed-in request: renders pages with the session's CSRF token."""

    def __init__(self, request: Request, session: Session, signer: Signer) -> None:
        self.request = request
        self.session = session
        self.signer = signer

    @property
    def actor(self) -> str:
        client = self.request.client
        return f"{ACTOR}@{client.host}" if client and client.host else ACTOR

    def page(self, template: str, code: int = 200, **values: Any) -> HTMLResponse:
        return render(template, code, csrf=self.signer.csrf(self.session), signed_in=True, **values)

    def csrf_refused(self, fields: Mapping[str, str]) -> HTMLResponse | None:
        """The 403 page for a form whose CSRF token is missing or wrong; None if it matches."""
        if self.signer.csrf_matches(self.session, fields.get("csrf")):
            return None
        return error_page(
            403,
            "the form's CSRF token is missing or wrong: nothing was changed",
            "reload the page and use its buttons",
        )


_templates = Environment(
    loader=PackageLoader("fleetkey.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["words"] = plain  # details, lists: as the CLI's tables say them
_templates.filters["readable"] = readable_details


def render(template: str, code: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**values), status_code=code)


def viewer(context: UiContext) -> Callable[[Request], Viewer]:
    """The dependency of every page with data: the request's session, or sign in first."""

    def signed_in(request: Request) -> Viewer:
        signer = context.signer()
        session = signer.check(request.cookies.get(COOKIE), context.clock.now())
        if session is None or context.signed_out(session.id):
            raise SignInNeededError
        return Viewer(request, session, signer)

    return signed_in


def error_page(status: int, message: str, hint: str | None = None) -> HTMLResponse:
    return render("error.html", status, status=status, message=message, hint=hint)


def status_of(error: FleetkeyError) -> int:
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ConflictError):
        return 409
    if isinstance(error, InputError):
        return 400
    return 500


class SecurityHeaders:
    """Adds the CSP and friends to every answer of the dashboard."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {bytes(name).lower() for name, _ in headers}
                headers += [(n, v) for n, v in HEADERS if n not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_ui(context: UiContext) -> FastAPI:
    from fleetkey.ui import fleet, operations, preflight, signin  # the routes need this module

    ui = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    ui.add_middleware(SecurityHeaders)

    @ui.exception_handler(SignInNeededError)
    async def sign_in_first(request: Request, _exc: SignInNeededError) -> Response:
        target = request.url.path
        if request.url.query and request.method == "GET":
            target += "?" + request.url.query
        return RedirectResponse("/ui/login?next=" + quote(target, safe="/"), status_code=303)

    @ui.exception_handler(FleetkeyError)
    async def refused(_request: Request, exc: FleetkeyError) -> Response:
        status = status_of(exc)
        if status == 500:
            log.error("dashboard: %s", exc.message)
        return error_page(status, exc.message, exc.hint)

    @ui.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_page(400, f"{where}: {first.get('msg', 'not acceptable')}")

    @ui.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> Response:
        return error_page(exc.status_code, str(exc.detail))

    @ui.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            return error_page(404, f"no static file {name!r}")
        body = resources.files("fleetkey.ui").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name], headers={"cache-control": "max-age=3600"})

    signin.routes(ui, context)
    fleet.routes(ui, context, viewer(context))
    preflight.routes(ui, context, viewer(context))  # before /licenses/{id}
    operations.routes(ui, context, viewer(context))

    @ui.get("/{anything:path}", include_in_schema=False, dependencies=[Depends(viewer(context))])
    def nowhere(anything: str) -> Response:
        """Past the routes: without a session the sign-in page too, so nothing tells a
        stranger which paths exist."""
        return error_page(404, "Not Found")

    return ui


def install(app: FastAPI, context: UiContext) -> None:
    """Mount the dashboard at ``/ui`` and send ``GET /`` to it."""
    app.mount("/ui", create_ui(context))

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui/", status_code=303)
