"""The admin API in process, through httpx.ASGITransport: an app on an initialized data
directory, its store, and a caller that sends the bearer token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fleetkey.api.app import ApiContext, create_app
from fleetkey.authority.datadir import DataDir
from fleetkey.authority.tokens import create_token
from fleetkey.clock import FixedClock
from fleetkey.store.database import default_url
from fleetkey.store.store import Store


@dataclass
class Api:
    app: FastAPI
    token: str
    store: Store
    data: DataDir

    def ask(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``method path`` with the bearer token (another ``token``, or None for none)."""
        bearer = self.token if token == "" else token
        headers = dict(headers or {})
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://fleetkey") as c:
                return await c.request(method, path, headers=headers, **kwargs)

        return asyncio.run(send())


@pytest.fixture
def api(initialized: Path) -> Iterator[Api]:
    data = DataDir(initialized)
    token = create_token(data.api_token)
    store = Store(default_url(data.root))
    context = ApiContext(data, store, FixedClock(), None, dict, bytes)
    yield Api(create_app(context), token, store, data)
    store.close()
