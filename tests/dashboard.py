"""Helpers for tests of the dashboard: the admin API app with ``/ui`` installed, called in
process through ``httpx.ASGITransport`` with a cookie jar that lives across requests, and the
sign-in a browser does (the form's CSRF token read from the page)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from fleetkey.authority.datadir import DataDir
from fleetkey.clock import FixedClock
from fleetkey.store.store import Store

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@dataclass
class Dashboard:
    app: FastAPI
    token: str
    store: Store
    data: DataDir
    clock: FixedClock
    cookies: httpx.Cookies = field(default_factory=httpx.Cookies)
    base_url: str = "http://fleetkey"

    def ask(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method path`` with the cookies set so far (redirects not followed)."""

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url=self.base_url, cookies=self.cookies
            ) as client:
                answer = await client.request(method, path, **kwargs)
                self.cookies = httpx.Cookies(client.cookies)
                return answer

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.ask("GET", path, **kwargs)

    def sign_in(self, token: str | None = None, next_page: str = "/ui/") -> httpx.Response:
        form = self.get("/ui/login")
        assert form.status_code == 200
        return self.ask(
            "POST",
            "/ui/login",
            data={
                "token": self.token if token is None else token,
                "csrf": csrf_of(form.text),
                "next": next_page,
            },
        )

    def csrf(self) -> str:
        """The session's CSRF token, as the overview's sign-out form carries it."""
        return csrf_of(self.get("/ui/").text)
