"""Running an ASGI application (the admin API, /metrics) inside the phone server's protocol.

The phone path stays hand-written for speed; operator requests are few and go to a FastAPI
app through this small bridge, on the same port, so one listener (and one TLS setup) serves
both. The request body is already read (bounded by the protocol's limits); the answer is
collected whole, which suits JSON and metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import unquote

from fleetkey.serve.http.messages import Request, Response, error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
App = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024  # an API answer larger than this is an error


class AsgiMount:
    """Requests whose path starts with one of ``prefixes``, or is one of ``exact``, go to
    ``app``."""

    def __init__(
        self,
        app: App,
        prefixes: tuple[bytes, ...],
        body_limit: int,
        exact: tuple[bytes, ...] = (),
    ) -> None:
        self._app = app
        self._prefixes = prefixes
        self._exact = exact  # a target equal to one, or to one followed by a query
        self.body_limit = body_limit

    def wants(self, target: bytes) -> bool:
        if target.startswith(self._prefixes):
            return True
        return bool(self._exact) and target.partition(b"?")[0] in self._exact

    async def __call__(self, request: Request) -> Response:
        path, _, query = request.raw_path.partition(b"?")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "https" if request.secure else "http",
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": [
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers.items()
            ],
            "client": (request.remote_addr or "", 0),
            "server": None,
        }
        done = asyncio.Event()
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        size = 0

        async def send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers.extend(
                    (bytes(n).decode("latin-1").lower(), bytes(v).decode("latin-1"))
                    for n, v in message.get("headers", [])
                )
            elif message["type"] == "http.response.body":
                body = bytes(message.get("body", b""))
                size += len(body)
                if size > MAX_ANSWER_BYTES:
                    raise ValueError("API answer too large")
                chunks.append(body)
                if not message.get("more_body", False):
                    done.set()

        try:
            await self._app(scope, receive, send)
        finally:
            done.set()
        if not headers and not chunks:
            return error_response(500, "the API gave no answer")
        kept = [(n, v) for n, v in headers if n not in ("content-length", "connection")]
        return Response(status, kept, body=b"".join(chunks))
