"""Helpers for tests of the dashboard: the admin API app with ``/ui`` installed, called in
process through ``httpx.ASGITransport`` with a cookie jar that lives across requests, and the
sign-in a browser does (the form's CSRF token read from the page)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from fleetkey.authority.datadir import DataDir
from fleetkey.authority.keyring import Keyring
from fleetkey.clock import FixedClock
from fleetkey.core.codec import serialize_keys
from fleetkey.core.license import LicenseType
from fleetkey.core.signing import Algorithm
from fleetkey.core.terms import Term
from fleetkey.store.store import Store
from fleetkey.testing import make_license, signing_key_for

from tests.helpers import PASSPHRASE

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SITE_FILE = "000000000000-license.cfg"


def site_file(data: DataDir, serial: str, days: int, *, ours: bool = True) -> bytes:
    """A site key granting corporate-directory for ``days`` from today, new to the store:
    signed by the data directory's active key (``ours``), or with RSA, as vendors sign, by a
    key fleetkey does not hold (its signature: unverifiable)."""
    slot = data.catalog().slot_of("corporate-directory")
    if ours:
        signer = Keyring(data.keys).signer(PASSPHRASE.encode())[1]
    else:
        signer = signing_key_for(Algorithm.RSA2048)
    terms: dict[int, Term] = {slot: date.today() + timedelta(days=days)}
    key = make_license(serial=serial, type=LicenseType.SITE, terms=terms, signer=signer)
    return serialize_keys([key])


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
