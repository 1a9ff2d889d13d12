"""A small HTTP/1.1 client for emulated phones: one keep-alive connection per boot, from the
phone's own address, with a phone's User-Agent; httptools parses the answers.

Small on purpose: ten thousand phones share one process, and a general client (connection
pools, TLS, redirects) costs more per request than the whole server answer. Retries 503 after
its Retry-After (scaled by the clock's speed), as phones retry their provisioning server.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Final

import httptools

MAX_BODY: Final = 512 * 1024 * 1024


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _Collector:
    def __init__(self) -> None:
        self.body = bytearray()
        self.headers: dict[str, str] = {}
        self.done = False
        self.keep_alive = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        if len(self.body) + len(body) > MAX_BODY:
            raise ValueError("answer larger than the emulator takes")
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


class HttpClient:
    """Requests over one connection; reconnects when the server closed it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        local_address: str | None,
        user_agent: str,
        timeout_s: float = 30.0,
    ) -> None:
        self._host, self._port = host, port
        self._local = local_address
        self._user_agent = user_agent
        self._timeout = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", *, user_agent: str | None = None
    ) -> Reply:
        """One exchange; ``user_agent`` replaces the client's for this request (the updater's)."""
        agent = user_agent or self._user_agent
        for attempt in range(2):  # a kept-alive connection may have been closed by the server
            try:
                async with asyncio.timeout(self._timeout):  # wait_for could drop a stop (3.11)
                    return await self._exchange(method, path, body, agent)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(self, method: str, path: str, body: bytes, agent: str) -> Reply:
        if self._writer is None:
            local = (self._local, 0) if self._local else None
            self._reader, self._writer = await asyncio.open_connection(
                self._host, self._port, local_addr=local
            )
        assert self._reader is not None  # noqa: S101  # opened together
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"User-Agent: {agent}\r\n"
        )
        if method == "PUT":
            head += f"Content-Length: {len(body)}\r\n"
        self._writer.write((head + "\r\n").encode("latin-1") + body)
        collector = _Collector()
        parser = httptools.HttpResponseParser(collector)
        while not collector.done:
            chunk = await self._reader.read(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            parser.feed_data(chunk)
        reply = Reply(parser.get_status_code(), bytes(collector.body), collector.headers)
        if not parser.should_keep_alive():
            await self.close()
        return reply

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
