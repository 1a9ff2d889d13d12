"""Public helpers for tests of code built on fleetkey: keys, licenses and clocks made to order,
and fakes for the serving and recording ports (httpx's ``MockTransport`` is the model: a real
implementation of the port, in memory, rather than a mock of the caller).

- :class:`FixedView`: a ``serve.view.ViewSource`` that holds one view;
- :class:`InMemoryRecordQueue`: a ``serve.recorder.RecordQueue`` that keeps what it is given;
- :class:`InMemorySink`: a ``store.fetches.RecordSink`` that keeps batches, each once;
- :class:`RefusingSink`: wraps a sink as a store that refuses for a while, or crashes;
- :class:`InMemoryTransport`: an ``emulate.transport.Transport`` over files in memory, for
  emulated phones' boots without a socket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any

from fleetkey.clock import FixedClock
from fleetkey.core.issuing import issue_key
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.signing import Algorithm, SigningKey, TrustedKeys
from fleetkey.core.terms import NEVER, Term
from fleetkey.emulate.transport import Reply
from fleetkey.errors import FleetkeyError, QueueFullError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from fleetkey.emulate.transport import Transport
    from fleetkey.serve.recorder import RecordQueue
    from fleetkey.serve.view import View, ViewSource
    from fleetkey.store.fetches import RecordSink
    from fleetkey.store.records import FetchRecord

__all__ = [
    "FixedClock",
    "FixedView",
    "InMemoryRecordQueue",
    "InMemorySink",
    "InMemoryTransport",
    "RefusingSink",
    "make_license",
    "record_license",
    "signing_key_for",
    "trusted_keys_for",
]

TEST_MAC = "0004f2000001"


def signing_key_for(algorithm: Algorithm = Algorithm.ED25519) -> SigningKey:
    """One signing key per algorithm and process, generated on first use."""
    return _generated(algorithm)


@cache
def _generated(algorithm: Algorithm) -> SigningKey:
    return SigningKey.generate(algorithm)


def trusted_keys_for(*algorithms: Algorithm) -> TrustedKeys:
    """TrustedKeys holding the test signing keys (Ed25519 when no algorithm is named)."""
    chosen = algorithms or (Algorithm.ED25519,)
    return TrustedKeys((f"test-{a.value}", signing_key_for(a).public) for a in chosen)


def make_license(
    *,
    serial: str = TEST_MAC,
    type: LicenseType = LicenseType.PHONE,  # mirrors the Type attribute
    terms: Mapping[int, Term] | None = None,
    expires: Term = NEVER,
    signer: SigningKey | None = None,
    **overrides: Any,
) -> LicenseKey:
    """A signed license key; every field can be overridden (overrides apply after signing).

    By default: a phone license for 0004f2000001 granting slot 0 with no expiry, signed by the
    test Ed25519 key. ``terms`` (slot → term) wins over ``expires`` (the term of slot 0).
    """
    granted = dict(terms) if terms is not None else {0: expires}
    key = issue_key(serial, type, granted, signer or signing_key_for())
    if overrides:
        fields = {name: getattr(key, name) for name in LicenseKey.__slots__}
        fields.update(overrides)
        key = LicenseKey(**fields)
    return key


def day(text: str) -> date:
    """``date.fromisoformat``, shorter in tables."""
    return date.fromisoformat(text)


def record_license(
    session: Session, key: LicenseKey, *, post: bool = True, clock: FixedClock | None = None
) -> int:
    """Store ``key`` (signed by :func:`make_license`'s test key) as a license file, posted
    unless ``post`` is false (forced: setting up a state, not judging a post); returns its
    license id."""
    from fleetkey.core.codec import serialize_keys  # keeps core imports lean
    from fleetkey.store import posting, registry  # only tests that store need the store

    name = (
        "000000000000-license.cfg" if key.type is LicenseType.SITE else f"{key.serial}-license.cfg"
    )
    stored = registry.record(
        session,
        clock or FixedClock(),
        "tester",
        key,
        trusted_keys_for().check(key),
        content=serialize_keys([key]),
        file_name=name,
    )
    if post:
        posting.post(session, clock or FixedClock(), "tester", stored.id, force=True)
    return stored.id


class FixedView:
    """A ``ViewSource`` that never refreshes: rulings and records read ``view`` (assign a new
    one to change what they see, as a refresh would)."""

    def __init__(self, view: View) -> None:
        self.view = view


class InMemoryRecordQueue:
    """A ``RecordQueue`` that keeps every record in ``records``: at ``capacity`` records a
    submit raises ``QueueFullError``; one not ``running`` refuses every record, as a stopped
    writer does."""

    def __init__(self, capacity: int = 1_000_000, *, running: bool = True) -> None:
        self.capacity = capacity
        self.running = running
        self.records: list[FetchRecord] = []

    @property
    def depth(self) -> int:
        return len(self.records)

    def submit(self, record: FetchRecord, timeout: float | None = None) -> None:
        if not self.running:
            raise FleetkeyError("the fetch writer is not running")
        if len(self.records) >= self.capacity:
            raise QueueFullError(f"fetch-record queue full ({self.capacity} waiting)")
        self.records.append(record)


class InMemorySink:
    """A ``RecordSink`` in memory: ``records`` in the order their batches came, each batch
    (writer name, sequence number) marked in ``batches`` as a store marks it committed."""

    def __init__(self) -> None:
        self.records: list[FetchRecord] = []
        self.batches: list[tuple[str, int]] = []

    def insert_batch(self, records: Sequence[FetchRecord], batch: tuple[str, int]) -> None:
        self.records.extend(records)
        self.batches.append(batch)

    def batch_written(self, writer: str, seq: int) -> bool:
        return (writer, seq) in self.batches


class RefusingSink:
    """A ``RecordSink`` around ``inner`` that goes away for a while: the next ``refusals``
    batches raise ``error`` with nothing written, the ``lost_commits`` after them are written
    and still raise it (a connection lost during COMMIT), the rest go to ``inner``.

    ``error`` decides what the writer sees: by default an ``OSError`` (the store away: held
    and tried again); ``sqlalchemy.exc.OperationalError`` for a database that refuses, any
    other exception for a bug in the sink. ``calls`` counts the batches offered.
    """

    def __init__(
        self,
        inner: RecordSink,
        refusals: int,
        *,
        lost_commits: int = 0,
        error: Exception | None = None,
    ) -> None:
        self.inner = inner
        self.refusals = refusals
        self.lost_commits = lost_commits
        self.error = error if error is not None else OSError("the store is away (RefusingSink)")
        self.calls = 0

    def insert_batch(self, records: Sequence[FetchRecord], batch: tuple[str, int]) -> None:
        self.calls += 1
        if self.refusals > 0:
            self.refusals -= 1
            raise self.error.with_traceback(None)
        self.inner.insert_batch(records, batch)
        if self.lost_commits > 0:
            self.lost_commits -= 1
            raise self.error.with_traceback(None)

    def batch_written(self, writer: str, seq: int) -> bool:
        return self.inner.batch_written(writer, seq)


class InMemoryTransport:
    """A ``Transport`` answering from ``files`` (path without its leading ``/`` → bytes): a
    GET is 200 with the file (206, its first bytes and its size, for ``first_bytes``; its
    size and SHA-256 only, when not ``keep``), 404 without one; a PUT is stored in ``files``,
    201. ``script`` answers a path with its replies first, one per request, in order (a 503,
    then the file). Every request is in ``requests`` as (method, path, User-Agent, first
    bytes); ``closed`` counts the passes that closed it."""

    def __init__(
        self,
        files: Mapping[str, bytes] | None = None,
        *,
        script: Mapping[str, Sequence[Reply]] | None = None,
    ) -> None:
        self.files = dict(files or {})
        self._script = {path: list(replies) for path, replies in (script or {}).items()}
        self.requests: list[tuple[str, str, str, int | None]] = []
        self.closed = 0

    async def fetch(
        self, path: str, *, user_agent: str, first_bytes: int | None = None, keep: bool = True
    ) -> Reply:
        name = path.lstrip("/")
        self.requests.append(("GET", name, user_agent, first_bytes))
        scripted = self._script.get(name)
        if scripted:
            return scripted.pop(0)
        body = self.files.get(name)
        if body is None:
            return Reply(404)
        if first_bytes is not None and len(body) > first_bytes:
            return Reply(206, body[:first_bytes], size=len(body))
        if not keep:
            return Reply(200, b"", size=len(body), digest=hashlib.sha256(body).hexdigest())
        return Reply(200, body, size=len(body) if first_bytes is not None else None)

    async def put(self, path: str, body: bytes, *, user_agent: str) -> Reply:
        name = path.lstrip("/")
        self.requests.append(("PUT", name, user_agent, None))
        scripted = self._script.get(name)
        if scripted:
            return scripted.pop(0)
        self.files[name] = body
        return Reply(201)

    async def close(self) -> None:
        self.closed += 1


if TYPE_CHECKING:  # mypy checks that each fake is a real implementation of its port

    def _ports(
        view: FixedView,
        queue: InMemoryRecordQueue,
        sink: InMemorySink,
        refusing: RefusingSink,
        transport: InMemoryTransport,
    ) -> tuple[ViewSource, RecordQueue, RecordSink, RecordSink, Transport]:
        return view, queue, sink, refusing, transport
