"""Signing in to the dashboard with the admin token, and out.

The sign-in form carries its own CSRF token (a nonce in a short-lived cookie, its HMAC in the
form), so another site cannot sign a browser in to a session of its choosing. A wrong token
is answered 401 with the form again; the right one sets the session cookie (``HttpOnly``,
``SameSite=Strict``, ``Secure`` over HTTPS, ``Max-Age`` the session's life) and goes on to
the page asked for (a dashboard path only: never another site).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from fleetkey.authority.tokens import token_matches
from fleetkey.store import dashboard
from fleetkey.ui.app import UiContext, error_page, render
from fleetkey.ui.params import form_fields
from fleetkey.ui.session import COOKIE, LOGIN_COOKIE, LOGIN_S

log = logging.getLogger(__name__)

TOKEN_CHARS: Final = 200
SIGN_IN_FIELDS: Final = frozenset({"token", "csrf", "next"})
SIGN_OUT_FIELDS: Final = frozenset({"csrf"})


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path, or the overview."""
    if (
        target
        and target.startswith("/ui/")
        and not target.startswith("/ui//")
        and "\\" not in target
        and target.isprintable()
        and len(target) <= 2000
    ):
        return target
    return "/ui/"


def _form(
    context: UiContext, request: Request, target: str, status: int, message: str | None
) -> Response:
    signer = context.signer()
    nonce = signer.login_nonce()
    answer = render(
        "signin.html",
        status,
        csrf=signer.login_csrf(nonce),
        next=safe_next(target),
        message=message,
    )
    answer.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_S,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


def routes(ui: FastAPI, context: UiContext) -> None:
    @ui.get("/login", include_in_schema=False)
    def sign_in_form(request: Request) -> Response:
        target = request.query_params.get("next")
        return _form(context, request, target or "/ui/", 200, None)

    @ui.post("/login", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        fields = form_fields(await request.body(), SIGN_IN_FIELDS)
        target = safe_next(fields.get("next"))
        signer = context.signer()
        if not signer.login_csrf_matches(request.cookies.get(LOGIN_COOKIE), fields.get("csrf")):
            return error_page(
                403,
                "the sign-in form is stale or was not sent by this dashboard",
                "open the sign-in page again and sign in from it",
            )
        token = fields.get("token", "").strip()
        if (
            not token
            or len(token) > TOKEN_CHARS
            or not token_matches(context.data.api_token, token)
        ):
            log.warning("dashboard: a sign-in with a wrong token from %s", _client(request))
            return _form(
                context,
                request,
                target,
                401,
                "that is not the admin token (fleetkey init or fleetkey token made it)",
            )
        answer = RedirectResponse(target, status_code=303)
        answer.set_cookie(
            COOKIE,
            signer.issue(context.clock.now(), context.session_s),
            max_age=context.session_s,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        answer.delete_cookie(LOGIN_COOKIE, path="/ui/login")
        return answer

    @ui.post("/logout", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        fields = form_fields(await request.body(), SIGN_OUT_FIELDS)
        signer = context.signer()
        session = signer.check(request.cookies.get(COOKIE), context.clock.now())
        if session is not None and not signer.csrf_matches(session, fields.get("csrf")):
            return error_page(403, "the sign-out form's CSRF token is missing or wrong")
        if session is not None:  # refused from now on, wherever the cookie was copied

            def record() -> None:
                with context.store.transaction() as stored:
                    ends = datetime.fromtimestamp(session.expires, UTC)
                    dashboard.sign_out(stored, context.clock, session.id, ends)

            await run_in_threadpool(record)
        answer = RedirectResponse("/ui/login", status_code=303)
        answer.delete_cookie(COOKIE, path="/ui")
        return answer


def _client(request: Request) -> str:
    return request.client.host if request.client else "an unknown address"
