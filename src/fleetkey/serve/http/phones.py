"""What the HTTP server answers phones: GET and HEAD of license files and the provisioning tree.

Conditional requests (ETag, If-None-Match, If-Modified-Since), single byte ranges, identity from
the User-Agent and the file name, and a fetch record for every answer, refused ones included.
When the fetch-record queue is nearly full the phone gets 503 with Retry-After rather than an
unrecorded answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Final

from fleetkey.clock import Clock
from fleetkey.core.requestpath import RequestPathError, url_path_segments
from fleetkey.core.useragent import parse_user_agent
from fleetkey.serve.content import Content, ContentResolver, Requester, mac_in_name
from fleetkey.serve.http.messages import FileSlice, Request, Response, error_response
from fleetkey.serve.uploads import store_upload, upload_rule
from fleetkey.store.fetches import FetchWriter, QueueFullError
from fleetkey.store.records import FetchRecord

log = logging.getLogger(__name__)

RETRY_AFTER_S: Final = 5
BUSY_FRACTION: Final = 0.9  # of the record queue: beyond it, answer 503 instead of serving
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_TYPES: Final = {
    ".cfg": "application/xml",
    ".xml": "application/xml",
    ".log": "text/plain",
    ".txt": "text/plain",
}


@dataclass(frozen=True, slots=True)
class Admission:
    """When to answer 503 + Retry-After instead of queueing work without bound."""

    max_in_flight: int = 1024  # answers being prepared or written at once
    max_downloads: int = 32  # of those, large files (firmware): licenses are never starved
    large_bytes: int = 1024 * 1024  # a download this large counts as large
    retry_after_s: int = RETRY_AFTER_S


class PhoneService:
    def __init__(
        self,
        resolver: ContentResolver,
        writer: FetchWriter,
        clock: Clock,
        *,
        queue_capacity: int,
        uploads: Path,
        admission: Admission | None = None,
    ) -> None:
        self._admission = admission or Admission()
        self._in_flight = 0
        self._streams = 0
        if resolver.posted is None:
            raise ValueError(
                "PhoneService answers from the resolver's in-memory view "
                "(fleetkey.serve.cache.PostedLicenses); give the resolver one"
            )
        self._resolver = resolver
        self._uploads = uploads
        self._writer = writer
        self._clock = clock
        self._busy_at = int(queue_capacity * BUSY_FRACTION)
        self.requests = 0
        self.unrecorded = 0
        self.rejected = 0  # 503 answers: in-flight cap, download cap, record back-pressure

    def body_limit(self, method: str, target: bytes) -> int:
        """PUT bodies of the files phones upload are kept, up to their cap; nothing else."""
        if method != "PUT":
            return 0
        name = target.split(b"?", 1)[0].rsplit(b"/", 1)[-1].decode("latin-1")
        rule = upload_rule(name)
        return rule[1] if rule is not None else 0

    def answer_now(self, request: Request) -> Response | None:
        """The answer when it needs no waiting (refusals, lookups in the in-memory view).

        None for uploads, which write a file: then the protocol calls ``handle``.
        """
        refused = self._gate(request)
        if refused is not None:
            return refused
        if request.method == "PUT":
            return None
        self._in_flight += 1
        try:
            response = self._lookup(request)
        except BaseException:
            self._in_flight -= 1
            raise
        return self._admitted(response)

    async def handle(self, request: Request) -> Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        self._in_flight += 1
        try:
            if request.method == "PUT":
                response = await self._upload(request)
            else:
                response = self._lookup(request)
        except BaseException:  # failed or cancelled: the protocol answers 500 or nothing
            self._in_flight -= 1
            raise
        return self._admitted(response)

    def _gate(self, request: Request) -> Response | None:
        """405 for methods not served, 503 under pressure; None to go on."""
        if request.method not in ("GET", "HEAD", "PUT"):
            response = error_response(405, f"{request.method} is not served here")
            response.headers.append(("allow", "GET, HEAD, PUT"))
            return response
        if self._writer.depth >= self._busy_at:
            return self._busy("fetch records are waiting to be written")
        if self._in_flight >= self._admission.max_in_flight:
            return self._busy(f"{self._in_flight} requests in flight")
        return None

    def _admitted(self, response: Response) -> Response:
        """Count the answer in flight (and as a large download) until ``finished``."""
        if response.file is not None and response.file.length >= self._admission.large_bytes:
            if self._streams >= self._admission.max_downloads:
                self._in_flight -= 1
                return self._busy(f"{self._streams} large downloads running")
            self._streams += 1
            response.streaming = True
        response.admitted = True
        return response

    def _busy(self, why: str) -> Response:
        self.rejected += 1
        response = error_response(503, f"busy ({why}): try again shortly")
        response.headers.append(("retry-after", str(self._admission.retry_after_s)))
        return response

    def _lookup(self, request: Request) -> Response:
        """GET/HEAD: resolve in the in-memory view and answer; nothing here waits."""
        try:
            segments = url_path_segments(request.raw_path)
        except RequestPathError as exc:
            return error_response(400, exc.reason)
        agent = parse_user_agent(request.header("user-agent"))
        mac = agent.mac if agent is not None and agent.mac else mac_in_name(segments[-1])
        content = self._resolve(segments, mac)
        response = (
            error_response(404, "no such file") if content is None else _answer(request, content)
        )
        response.mac = mac
        return response

    async def _upload(self, request: Request) -> Response:
        try:
            segments = url_path_segments(request.raw_path)
        except RequestPathError as exc:
            return error_response(400, exc.reason)
        name = segments[-1]
        rule = upload_rule(name)
        if rule is None:
            return error_response(403, f"{name!r} is not a file phones upload")
        loop = asyncio.get_running_loop()
        created = await loop.run_in_executor(None, store_upload, self._uploads, name, request.body)
        response = Response(201 if created else 204)
        response.mac = rule[0]
        response.received = len(request.body)
        response.digest = hashlib.sha256(request.body).hexdigest()
        return response

    def _resolve(self, segments: tuple[str, ...], mac: str | None) -> Content | None:
        site, rest = self._resolver.split_site(segments)
        return self._resolver.resolve(rest, Requester(mac=mac, site=site))

    def finished(self, request: Request, response: Response, sent: int) -> None:
        """Record the answer (called once it was written) and release its admission."""
        self.requests += 1
        if response.admitted:
            self._in_flight -= 1
        if response.streaming:
            self._streams -= 1
        content = response.content
        digest = content.digest if content is not None else response.digest
        record = FetchRecord(
            path=request.raw_path.decode("latin-1")[:1024],
            protocol="http",
            status=response.status,
            bytes=sent or response.received,
            duration_ms=(time.perf_counter() - request.started) * 1000,
            at=self._clock.now(),
            method=request.method[:8],
            mac=response.mac,
            digest=digest,
            remote_addr=request.remote_addr,
            user_agent=(request.header("user-agent") or "")[:255] or None,
        )
        try:
            self._writer.submit(record, timeout=0)
        except QueueFullError:
            self.unrecorded += 1
            log.error(  # noqa: TRY400  # a counted condition, not a bug: no traceback
                "fetch record for %s %s not queued: the queue is full", request.method, record.path
            )


def _answer(request: Request, content: Content) -> Response:
    headers = [
        ("content-type", _TYPES.get(_suffix(content.name), "application/octet-stream")),
        ("etag", content.etag),
        ("last-modified", _http_date(content.modified)),
        ("accept-ranges", "bytes"),
    ]
    if _not_modified(request, content):
        return Response(304, headers, content=content)
    start, length, status = 0, content.size, 200
    wanted = request.header("range")
    if wanted is not None:
        bounds = _byte_range(wanted, content.size)
        if bounds is None:
            response = Response(
                416, [("content-range", f"bytes */{content.size}")], content=content
            )
            return response
        if bounds != (0, content.size):
            start, length, status = bounds[0], bounds[1] - bounds[0], 206
            headers.append(("content-range", f"bytes {start}-{start + length - 1}/{content.size}"))
    if content.body is not None:
        return Response(status, headers, body=content.body[start : start + length], content=content)
    assert content.path is not None  # noqa: S101  # a Content is bytes or a file
    return Response(status, headers, file=FileSlice(content.path, start, length), content=content)


@lru_cache(maxsize=65536)
def _http_date(moment: datetime) -> str:
    """RFC 9110 date of a content version; versions repeat, so format each once."""
    return format_datetime(moment, usegmt=True)


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot >= 0 else ""


def _not_modified(request: Request, content: Content) -> bool:
    tags = request.header("if-none-match")
    if tags is not None:
        return tags.strip() == "*" or content.etag in [t.strip() for t in tags.split(",")]
    since = request.header("if-modified-since")
    if since is None:
        return False
    try:
        moment: datetime = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    return int(content.modified.timestamp()) <= int(moment.timestamp())


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end-exclusive) of one ``bytes=`` range; None when unsatisfiable.

    Several ranges, or a header that is not a byte range, get the whole file (RFC 9110 §14.2
    lets a server ignore Range).
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return (0, size)
    first, last = match.groups()
    if not first and not last:
        return (0, size)
    if not first:  # the last N bytes
        count = int(last)
        return None if count == 0 or size == 0 else (max(size - count, 0), size)
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or (last and int(last) < start):
        return None
    return (start, end)
