"""How a resolved Content is answered over HTTP: 200, 206, 304 or 416, and its headers.

Conditional requests (ETag, If-None-Match, If-Modified-Since) and single byte ranges. Most
requests in a boot storm are a plain GET of a license file; for those the whole status line and
header block is built once per content version and connection mode, then reused.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from typing import Final

from fleetkey.serve.content import Content
from fleetkey.serve.http.messages import (
    FileSlice,
    Request,
    Response,
    error_response,
    head_block,
)

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_TYPES: Final = {
    ".cfg": "application/xml",
    ".xml": "application/xml",
    ".log": "text/plain",
    ".txt": "text/plain",
}
# headers that make an answer depend on more than the content: conditionals and ranges
CONDITIONS: Final = frozenset(("if-none-match", "if-modified-since", "range"))
_HEADS_MAX: Final = 200_000  # cached header blocks; the cache starts over beyond


class Answers:
    """Builds answers, keeping the header blocks of plain 200s of in-memory content and the
    whole of a 404 (most of a boot's requests)."""

    def __init__(self) -> None:
        self._heads: dict[tuple[str, str, bool], bytes] = {}
        missing = error_response(404, "no such file")
        self._not_found = {
            keep_alive: (head_block(missing, keep_alive), missing.body)
            for keep_alive in (True, False)
        }

    def not_found(self, keep_alive: bool) -> Response:
        head, body = self._not_found[keep_alive]
        return Response(404, body=body, head=head)

    def answer(self, request: Request, content: Content) -> Response:
        headers = request.headers
        if content.body is not None and CONDITIONS.isdisjoint(headers):
            key = (content.etag, content.name, request.keep_alive)
            head = self._heads.get(key)
            response = Response(200, body=content.body, content=content)
            if head is None:
                if len(self._heads) >= _HEADS_MAX:
                    self._heads.clear()
                response.headers = _headers(content)
                head = self._heads[key] = head_block(response, request.keep_alive)
            response.head = head
            return response
        return answer(request, content)


def answer(request: Request, content: Content) -> Response:
    """The full answer: conditional requests and ranges considered."""
    headers = _headers(content)
    if _not_modified(request, content):
        return Response(304, headers, content=content)
    start, length, status = 0, content.size, 200
    wanted = request.header("range")
    if wanted is not None:
        bounds = byte_range(wanted, content.size)
        if bounds is None:
            return Response(416, [("content-range", f"bytes */{content.size}")], content=content)
        if bounds != (0, content.size):
            start, length, status = bounds[0], bounds[1] - bounds[0], 206
            headers.append(("content-range", f"bytes {start}-{start + length - 1}/{content.size}"))
    if content.body is not None:
        return Response(status, headers, body=content.body[start : start + length], content=content)
    assert content.path is not None  # noqa: S101  # a Content is bytes or a file
    return Response(status, headers, file=FileSlice(content.path, start, length), content=content)


def _headers(content: Content) -> list[tuple[str, str]]:
    return [
        ("content-type", _TYPES.get(_suffix(content.name), "application/octet-stream")),
        ("etag", content.etag),
        ("last-modified", _http_date(content.modified)),
        ("accept-ranges", "bytes"),
    ]


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


def byte_range(header: str, size: int) -> tuple[int, int] | None:
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
