"""Answers to repeated requests whose ruling did not depend on who sent them, remembered.

A boot storm repeats a handful of requests: every phone GETs its ``<mac>-license.cfg`` and,
when it tags its serial, ``000000000000-license.cfg`` with the same User-Agent, boot after
boot. When the phone is known by its request alone (the User-Agent's ``(SN:…)`` or the MAC in
the file name) the whole ruling is a pure function of the request's method, path, User-Agent
and connection mode and of the in-memory view and the tree's layout (``serve.view``,
``serve.layout``: each replaced whole on every change). So the answer is remembered under that
key and reused while both are the same objects; a new one forgets everything at once.

Only what cannot change without a new view is remembered:

- a 200 of a posted license (bytes held in the view; files from the tree can change on disk
  at any time and are checked at every request);
- a phone known by its own request, never by its address (the address's MAC changes with
  what else was asked from it);
- no conditional or range header (those answers depend on more than the key);
- no per-device authentication (the verdict depends on nonces and credentials);
- an admission that did nothing: no phone queued for registration (a side effect).

What every request still does: the address learns the MAC again, admission limits, last seen
and the fetch record stay in the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fleetkey.serve.content import Content
from fleetkey.serve.fetching import Ruling
from fleetkey.serve.http.answers import CONDITIONS
from fleetkey.serve.http.messages import Request

LIMIT: Final = 100_000  # remembered answers (~500 bytes each, 50 MB at most); starts over beyond


@dataclass(frozen=True, slots=True)
class Remembered:
    """A 200 decided for one request shape, and the ruling it was recorded with."""

    ruling: Ruling
    content: Content
    body: bytes  # the content's bytes (a posted license is held in memory)
    head: bytes  # status line and headers for this connection mode


_Key = tuple[str, bytes, str | None, bool]


def _key(request: Request) -> _Key:
    """The request's shape: all an answer remembered here depends on, besides the view."""
    return (
        request.method,
        request.raw_path,
        request.headers.get("user-agent"),
        request.keep_alive,
    )


class Repeats:
    """Remembered answers, valid for one view and layout; forgotten when either changes."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._view: object = None
        self._layout: object = None
        self._answers: dict[_Key, Remembered] = {}
        self.recalled = 0  # answers given from memory, for metrics

    def __len__(self) -> int:
        return len(self._answers)

    def recall(self, request: Request, view: object, layout: object) -> Remembered | None:
        """The answer remembered for this request under ``view`` and ``layout``, if any."""
        if view is not self._view or layout is not self._layout:
            self._answers.clear()
            self._view, self._layout = view, layout
            return None
        if not CONDITIONS.isdisjoint(request.headers):
            return None
        found = self._answers.get(_key(request))
        if found is not None:
            self.recalled += 1
        return found

    def remember(self, request: Request, view: object, layout: object, answer: Remembered) -> None:
        """Keep ``answer`` for this request's shape; the caller vouches it is pure (above)."""
        if not CONDITIONS.isdisjoint(request.headers):
            return  # a conditional request: never remembered
        if view is not self._view or layout is not self._layout:
            self._answers.clear()
            self._view, self._layout = view, layout
        if len(self._answers) >= self._limit:
            self._answers.clear()
        self._answers[_key(request)] = answer
