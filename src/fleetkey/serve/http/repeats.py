"""Answers to repeated plain license GETs, remembered for the in-memory view they came from.

A boot storm is the same few requests from every phone, again and again: a plain GET (or HEAD)
of ``<mac>-license.cfg`` or ``000000000000-license.cfg`` with the phone's User-Agent. Deciding
the answer walks the path checks, the caller's identity, the site prefix, the unknown-MAC
policy, the resolver and the header block: about half the Python a license answer costs. Every
one of those steps is a pure function of the request's method, path, User-Agent and connection
mode, and of the posted view (``serve.cache.View``, replaced whole on every change). So the
outcome is remembered under that key and reused while the view is the same object.

Only what cannot change without a new view is remembered:

- a 200 of a posted license (bytes held in the view; files from the tree can change on disk
  at any time and are resolved every time);
- no conditional or range header (those answers depend on more than the key);
- no per-device authentication (the verdict depends on nonces and credentials; the service
  does not ask then);
- an admission that did nothing: the phone is in the inventory, or unknown MACs are served.
  A registration queued by the ``register`` policy is a side effect, so that answer is not.

What every request still does (admission limits, last seen, its fetch record) stays in the
service, for remembered answers too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fleetkey.serve.content import Content
from fleetkey.serve.http.answers import CONDITIONS
from fleetkey.serve.http.messages import Request

LIMIT: Final = 100_000  # remembered answers (~440 bytes each, 44 MB at most); starts over beyond


@dataclass(frozen=True, slots=True)
class Remembered:
    """What the service decided for one request shape: the 200 and whom it was for."""

    content: Content
    body: bytes  # the content's bytes (a posted license is held in memory)
    head: bytes  # status line and headers for this connection mode
    mac: str | None


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
    """Remembered answers, valid for one view; forgotten all at once when the view changes."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._view: object = None
        self._answers: dict[_Key, Remembered] = {}
        self.recalled = 0  # answers given from memory, for metrics

    def __len__(self) -> int:
        return len(self._answers)

    def recall(self, request: Request, view: object) -> Remembered | None:
        """The answer remembered for this request under ``view``, if any."""
        if view is not self._view:
            self._answers.clear()
            self._view = view
            return None
        if not CONDITIONS.isdisjoint(request.headers):
            return None
        found = self._answers.get(_key(request))
        if found is not None:
            self.recalled += 1
        return found

    def remember(self, request: Request, view: object, answer: Remembered) -> None:
        """Keep ``answer`` for this request's shape; the caller vouches it is pure (above)."""
        if not CONDITIONS.isdisjoint(request.headers):
            return  # a conditional request: never remembered
        if view is not self._view:
            self._answers.clear()
            self._view = view
        if len(self._answers) >= self._limit:
            self._answers.clear()
        self._answers[_key(request)] = answer
