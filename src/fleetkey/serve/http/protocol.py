"""HTTP/1.1 on asyncio: httptools parses, one task per connection answers in order.

Hand-written on two well-kept parts (uvloop's loop, httptools' parser) because the framework
layers cost 3-4x the throughput the provisioning server needs (docs/serve.md). The protocol
frames messages and enforces limits; what to answer (and when) is the service's business.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Final, cast

import httptools

from fleetkey.serve.http.connections import NEVER, Connections
from fleetkey.serve.http.messages import (
    Request,
    RequestLimits,
    Response,
    Service,
    error_response,
    head_block,
)

log = logging.getLogger(__name__)

CHUNK: Final = 256 * 1024  # file streaming: bytes read and written per step
LINGER_S: Final = 1.0  # after an error answer: how long to drain the client before closing
_METHODS: Final = {m.encode(): m for m in ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH")}
_BODILESS: Final = frozenset({"GET", "HEAD"})
_BODY_HEADERS: Final = frozenset({"content-length", "transfer-encoding"})


class _ClosedParser:
    """Stands in for the parser of a closed connection (nothing is fed to it any more)."""

    def feed_data(self, data: bytes) -> None:  # pragma: no cover  # never called after close
        return

    def should_keep_alive(self) -> bool:  # pragma: no cover
        return False

    def get_method(self) -> bytes:  # pragma: no cover
        return b""


_CLOSED_PARSER: Final = _ClosedParser()


class _AbortParsingError(Exception):
    """Raised from a parser callback to stop parsing a request already answered."""


class HttpProtocol(asyncio.Protocol):
    def __init__(
        self,
        service: Service,
        limits: RequestLimits,
        connections: Connections,
        *,
        secure: bool = False,
    ) -> None:
        self._service = service
        self._secure = secure
        self._limits = limits
        self._connections = connections
        self._times = connections.limits
        self.remote: str | None = None
        self.waiting_since = self.deadline = NEVER  # serve.http.connections
        self._stalled = NEVER
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpRequestParser | _ClosedParser = httptools.HttpRequestParser(
            self
        )
        self._pending: deque[Request | Response | tuple[Request, Response]] = deque()
        self._worker: asyncio.Task[None] | None = None
        # made on the first pause_writing: most connections never fill the socket buffer
        self._writable: asyncio.Event | None = None
        self._closing = False  # no more requests are read (framing error, or connection lost)
        self._stopping = False  # server shutdown: close after the answer in flight
        self._eof = False  # the client half-closed: close once every answer is written
        self._sent = 0  # body bytes of the answer being written
        self._reading_paused = False
        self._reset()
        self._begun = False  # bytes of a request have arrived (a timeout then answers 408)

    def _reset(self) -> None:
        self._begun = True
        self._url = b""  # nearly always one on_url call: no copy then
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._header_count = 0
        self._body_bytes = 0
        self._body: bytearray | None = None  # kept only when the service takes a body
        self._body_limit = self._limits.max_body_bytes
        self._method = ""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        peer = self._transport.get_extra_info("peername")
        self.remote = str(peer[0]) if peer else None
        now = time.monotonic()
        self.waiting_since, self.deadline = now, now + self._times.header_s
        if not self._connections.join(self):  # over a cap: no room for it
            self._closing = True
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.leave(self)
        self._closing = True
        self.deadline = self.waiting_since = NEVER
        if self._writable is not None:
            self._writable.set()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        # the parser holds this protocol's bound methods, and the transport holds the protocol:
        # cycles that only the cyclic garbage collector would free, a pause every few thousand
        # connections (measured: 13 % of a connection-close run). Cut them: freed right here.
        self._parser = _CLOSED_PARSER
        self._transport = None

    def eof_received(self) -> bool:
        """The client finished sending: answer what it asked for, then close."""
        self._eof = True
        # with answers in flight keep the transport open (_answer closes it when done);
        # with none, False lets asyncio close it now
        return self._worker is not None and not self._worker.done()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.Event()
        self._writable.clear()
        self._stalled = time.monotonic()

    def resume_writing(self) -> None:
        self._stalled = NEVER
        if self._writable is not None:
            self._writable.set()

    # serve.http.connections
    def stalled_since(self) -> float:
        return self._stalled

    def timed_out(self) -> None:
        self.deadline = self.waiting_since = NEVER
        if self._begun and not self._closing:
            self._refuse(408, "the request did not arrive in time")
        elif self._transport is not None:
            self._closing = True
            self._transport.close()

    def abandon(self) -> None:
        self.deadline = self.waiting_since = NEVER
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _wait_for_next(self) -> None:
        """An answer is written and nothing else is asked: the next request may come."""
        now = time.monotonic()
        self.waiting_since, self.deadline = now, now + self._times.idle_s
        self._begun = False

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self._closing:  # not one of our own aborts (_fail): the bytes are not HTTP
                self._refuse(400, f"malformed request ({exc})")

    def _fail(self, status: int, detail: str) -> None:
        """Answer ``status`` now, read nothing more, close: raised from a parser callback."""
        self._refuse(status, detail)
        raise _AbortParsingError

    def _refuse(self, status: int, detail: str) -> None:
        """A request the framing refuses: the service records it, then it is answered."""
        response = error_response(status, detail, close=True)
        self._service.refused(self._method or "-", self._url, self.remote, self._secure, response)
        self._enqueue(response)

    # httptools callbacks
    on_message_begin = _reset

    def on_url(self, url: bytes) -> None:
        if len(self._url) + len(url) > self._limits.max_url_bytes:
            self._url = (self._url + url)[: self._limits.max_url_bytes]  # for the record
            self._fail(414, "request target too long")
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        if (
            self._header_count > self._limits.max_headers
            or self._header_bytes > self._limits.max_header_bytes
        ):
            self._fail(431, "request headers too large")
        key = name.decode("latin-1").lower()
        if key in ("x-forwarded-for", "x-forwarded-proto") and key in self._headers:  # one
            value = f"{self._headers.pop(key)}, ".encode("latin-1") + value  # list (RFC 9110):
        self._headers.setdefault(key, value.decode("latin-1"))  # a proxy's line counts too

    def on_headers_complete(self) -> None:
        raw = self._parser.get_method()
        method = _METHODS.get(raw) or raw.decode("ascii", "replace")
        self._method = method
        # GET and HEAD (nearly every request) carry no body the service takes
        headers = self._headers
        if "upgrade" in headers and "upgrade" in headers.get("connection", "").lower():
            self._fail(400, "protocol upgrades are not supported")  # before it is answered
        if method in _BODILESS and _BODY_HEADERS.isdisjoint(headers):
            return  # the common case: a GET without a body, nothing to check
        taken = 0 if method in _BODILESS else self._service.body_limit(method, self._url)
        if taken > 0:
            self._body, self._body_limit = bytearray(), taken
        declared = headers.get("content-length", "")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if declared.isdigit() and int(declared) > self._body_limit:
            self._fail(413, f"body of {declared} bytes, the limit is {self._body_limit}")
        if taken > 0 and not declared.isdigit() and not chunked and method == "PUT":
            # RFC 9112 §6.3: without either header a request's body is empty. An API DELETE
            # or POST is then taken as sent; an upload would empty the stored file: refused
            self._fail(411, "an upload needs a length")
        self.deadline = time.monotonic() + self._times.body_s

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._body_limit:
            self._fail(413, f"body larger than the limit of {self._body_limit} bytes")
        if self._body is not None:
            self._body += body

    def on_message_complete(self) -> None:
        self.waiting_since = self.deadline = NEVER  # answering: no time limit on the client
        self._enqueue(
            Request(
                self._method,
                self._url,
                self._headers,
                self.remote,
                self._parser.should_keep_alive(),
                time.perf_counter(),
                bytes(self._body) if self._body is not None else b"",
                self._secure,
            )
        )

    # answering
    def _enqueue(self, item: Request | Response) -> None:
        if isinstance(item, Request):
            if self._closing:
                return
            if not self._pending and (self._worker is None or self._worker.done()):
                ready = self._answer_now(item)
                if ready is not None and ready.file is None and ready.committed is None:
                    self._answer_inline(item, ready)  # the common case: no task, one write
                    return
                if ready is not None:  # a file to stream or a commit to wait for: a task
                    self._pending.append((item, ready))
                    self._start_worker()
                    return
        self._pending.append(item)
        if isinstance(item, Response):  # a framing error: stop reading, answer, close
            self._closing = True
        if len(self._pending) >= self._limits.max_pipelined and self._transport:
            self._transport.pause_reading()
            self._reading_paused = True
        self._start_worker()

    def _start_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._answer())

    def _answer_inline(self, request: Request, response: Response) -> None:
        transport = self._transport
        if transport is None:  # pragma: no cover
            return
        body = b"" if request.method == "HEAD" or response.status == 304 else response.body
        transport.write(head_block(response, request.keep_alive) + body)
        self._finished(request, response, len(body))
        if self._stopping or not request.keep_alive or response.close:
            self._closing = True
            transport.close()
        else:
            self._wait_for_next()

    async def _answer(self) -> None:
        transport = self._transport
        if transport is None:  # pragma: no cover
            return
        while self._pending:
            item = self._pending.popleft()
            if self._reading_paused and len(self._pending) < self._limits.max_pipelined // 2:
                transport.resume_reading()
                self._reading_paused = False
            if isinstance(item, Response):
                transport.write(head_block(item, keep_alive=False) + item.body)
                self._linger(transport)
                return
            item, response = item if isinstance(item, tuple) else (item, await self._handle(item))
            self._sent = 0
            try:
                if response.committed is not None:
                    await response.committed  # its record is committed first (commits.py)
                await self._send(transport, item, response)
            finally:  # recorded even when the client went away mid-answer
                self._finished(item, response, self._sent)
            if self._stopping or not item.keep_alive or response.close:
                transport.close()
                return
        if self._eof:
            transport.close()
        elif not self._closing:
            self._wait_for_next()

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close after an error without losing the answer to a TCP reset.

        Closing with unread request bytes (an oversized body) makes the kernel reset the
        connection, and the client may never read the error. Like nginx's lingering close:
        send FIN, keep discarding what arrives, close after LINGER_S.
        """
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_S, transport.close)
        else:  # pragma: no cover  # TCP transports can
            transport.close()

    def _answer_now(self, request: Request) -> Response | None:
        """The service's ready answer; its failure is a logged 500, never a framing error.

        It runs inside a parser callback, where any exception would reach ``data_received``
        as a parse error and be answered 400 as the client's fault.
        """
        try:
            return self._service.answer_now(request)
        except Exception:  # one request's failure must not kill the server: log, answer 500
            log.exception("request %r failed", request.raw_path[:200])
            return error_response(500, "internal error")

    def _finished(self, request: Request, response: Response, sent: int) -> None:
        """Tell the service an answer went out; the answer stands if that fails."""
        try:
            self._service.finished(request, response, sent)
        except Exception:  # the answer is written: log the failure, keep the connection
            log.exception("recording the answer to %r failed", request.raw_path[:200])

    async def _handle(self, request: Request) -> Response:
        try:
            return await self._service.handle(request)
        except asyncio.CancelledError:
            raise
        except Exception:  # one request's failure must not kill the server: log, answer 500
            log.exception("request %r failed", request.raw_path[:200])
            return error_response(500, "internal error")

    async def _send(
        self, transport: asyncio.Transport, request: Request, response: Response
    ) -> None:
        """Write the answer; ``self._sent`` counts the body bytes handed to the transport."""
        head = head_block(response, request.keep_alive)
        if request.method == "HEAD" or response.status == 304:
            transport.write(head)
            return
        if response.file is None:
            transport.write(head + response.body)  # one write, one system call
            self._sent = len(response.body)
            return
        transport.write(head)
        with response.file.path.open("rb") as handle:
            handle.seek(response.file.start)
            remaining = response.file.length
            while remaining > 0:
                if self._writable is not None:
                    await self._writable.wait()
                if transport.is_closing():
                    break
                block = handle.read(min(CHUNK, remaining))
                if not block:  # the file shrank under us: the length we promised is a lie
                    transport.close()
                    break
                transport.write(block)
                self._sent += len(block)
                remaining -= len(block)

    def close_when_idle(self) -> None:
        """Graceful stop: close now if nothing is in flight, else after the current answer."""
        self._stopping = True
        if self._transport is not None and (self._worker is None or self._worker.done()):
            self._transport.close()
