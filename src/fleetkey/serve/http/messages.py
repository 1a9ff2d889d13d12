"""Requests and responses as the protocol and the phone service exchange them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Final, Protocol

from fleetkey.serve.content import Content
from fleetkey.serve.fetching import Ruling

REASONS: Final = {status.value: status.phrase for status in HTTPStatus}


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """What the framing takes from a request before it refuses it."""

    max_url_bytes: int = 4096  # 414 beyond
    max_header_bytes: int = 16 * 1024  # 431 beyond (all header lines together)
    max_headers: int = 64  # 431 beyond
    max_body_bytes: int = 64 * 1024  # bodies the service does not take are read and dropped
    max_pipelined: int = 16  # parsed requests waiting for their answer; reading pauses beyond


@dataclass(slots=True)
class Request:
    method: str
    raw_path: bytes
    headers: dict[str, str]
    remote_addr: str | None
    keep_alive: bool
    started: float  # time.perf_counter() when the request was complete
    body: bytes = b""
    secure: bool = False  # came over TLS

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(slots=True)
class FileSlice:
    """Part of a file to stream: ``length`` bytes from ``start``."""

    path: Path
    start: int
    length: int


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: FileSlice | None = None
    content: Content | None = None  # what was resolved, for the fetch record
    ruling: Ruling | None = None  # what the pipeline decided, for the fetch record
    received: int = 0  # body bytes taken (uploads), for the fetch record
    digest: str | None = None  # SHA-256 of an upload
    admitted: bool = False  # counted in the service's in-flight requests until finished
    streaming: bool = False  # counted as a large download until finished
    head: bytes | None = None  # the status line and headers, when already built
    operator: bool = False  # answered by the admin API or /metrics, not a phone fetch
    close: bool = False  # carries "connection: close": the connection ends after it
    # recorded before it is sent: sent once this resolves (its record committed: commits.py)
    committed: asyncio.Future[bool] | None = None
    recorded: bool = False  # its fetch record was made before it was sent

    @property
    def length(self) -> int:
        return self.file.length if self.file is not None else len(self.body)


def error_response(status: int, detail: str, *, close: bool = False) -> Response:
    """A short plain-text error; phones only look at the status."""
    body = f"{status} {REASONS.get(status, '')}: {detail}\n".encode()
    headers = [("content-type", "text/plain; charset=utf-8")]
    if close:
        headers.append(("connection", "close"))
    return Response(status, headers, body, close=close)


def head_block(response: Response, keep_alive: bool) -> bytes:
    """Status line and headers, Content-Length included, ready for the wire."""
    if response.head is not None:
        return response.head
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    if response.status != 304:  # RFC 9110 §8.6: a 304 carries no Content-Length of its own
        lines.append(f"content-length: {response.length}")
    if not keep_alive and not response.close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Service(Protocol):
    """What the HTTP protocol asks of the service it frames requests for."""

    def answer_now(self, request: Request) -> Response | None:
        """The answer if it is ready without waiting, else None (then ``handle`` is awaited)."""
        ...

    def body_limit(self, method: str, target: bytes) -> int:
        """Bytes of body this request may carry and the service will read (0: none kept)."""
        ...

    async def handle(self, request: Request) -> Response: ...

    def finished(self, request: Request, response: Response, sent: int) -> None: ...

    def refused(
        self, method: str, target: bytes, remote: str | None, secure: bool, response: Response
    ) -> None:
        """A request refused by the framing (400, 411, 413, 414, 431) before it was complete."""
        ...
