"""Remembered license answers: found again for the same request shape and view, never else."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetkey.serve.content import Content, ContentKind
from fleetkey.serve.http.messages import Request
from fleetkey.serve.http.repeats import Remembered, Repeats

PATH = b"/0004f2a1b2c3-license.cfg"
UA = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application"
BODY = b"<license/>"
CONTENT = Content(
    ContentKind.PHONE_LICENSE,
    "0004f2a1b2c3-license.cfg",
    len(BODY),
    '"abc"',
    datetime(2026, 11, 1, tzinfo=UTC),
    "ab" * 32,
    body=BODY,
)
ANSWER = Remembered(CONTENT, BODY, b"HTTP/1.1 200 OK\r\n\r\n", "0004f2a1b2c3")


def request(
    method: str = "GET",
    path: bytes = PATH,
    keep_alive: bool = True,
    **headers: str,
) -> Request:
    named = {"user-agent": UA, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return Request(method, path, named, "127.0.0.1", keep_alive, 0.0)


def test_the_same_request_under_the_same_view_gets_the_remembered_answer() -> None:
    repeats, view = Repeats(), object()
    assert repeats.recall(request(), view) is None
    repeats.remember(request(), view, ANSWER)
    assert repeats.recall(request(), view) is ANSWER


def test_a_new_view_forgets_every_remembered_answer() -> None:
    repeats, old, new = Repeats(), object(), object()
    repeats.remember(request(), old, ANSWER)
    repeats.remember(request(path=b"/other-license.cfg"), old, ANSWER)
    assert repeats.recall(request(), new) is None
    assert len(repeats) == 0
    assert repeats.recall(request(), old) is None  # the old view does not come back either


@pytest.mark.parametrize(
    "other",
    [
        request(method="HEAD"),
        request(path=b"/0004f2a1b2c4-license.cfg"),
        request(keep_alive=False),  # its header block says connection: close
        request(user_agent=UA.replace("5.9.7", "6.4.0")),  # (SN:) or not decides the phone
    ],
    ids=["method", "path", "connection-mode", "user-agent"],
)
def test_a_request_differing_in_any_part_of_the_key_is_not_answered_from_memory(
    other: Request,
) -> None:
    repeats, view = Repeats(), object()
    repeats.remember(request(), view, ANSWER)
    assert repeats.recall(other, view) is None


@pytest.mark.parametrize(
    "header",
    [
        {"if_none_match": '"abc"'},
        {"if_modified_since": "Sun, 01 Nov 2026 00:00:00 GMT"},
        {"range": "bytes=0-3"},
    ],
    ids=["if-none-match", "if-modified-since", "range"],
)
def test_conditional_and_range_requests_are_neither_remembered_nor_recalled(
    header: dict[str, str],
) -> None:
    repeats, view = Repeats(), object()
    repeats.remember(request(**header), view, ANSWER)
    assert len(repeats) == 0
    repeats.remember(request(), view, ANSWER)
    assert repeats.recall(request(**header), view) is None


def test_beyond_the_limit_the_memory_starts_over() -> None:
    repeats, view = Repeats(limit=3), object()
    for n in range(3):
        repeats.remember(request(path=b"/%d" % n), view, ANSWER)
    assert len(repeats) == 3
    repeats.remember(request(path=b"/3"), view, ANSWER)
    assert len(repeats) == 1
    assert repeats.recall(request(path=b"/3"), view) is ANSWER
    assert repeats.recall(request(path=b"/0"), view) is None
