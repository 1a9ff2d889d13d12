"""Public helpers for tests of code built on fleetkey: keys, licenses and clocks made to order,
and fakes for the serving and recording ports (httpx's ``MockTransport`` is the model: a real
implementation of the port, in memory, rather than a mock of the caller).

- :class:`FixedView`: a ``serve.view.ViewSource`` that holds one view;
- :class:`InMemoryRecordQueue`: a ``serve.recorder.RecordQueue`` that keeps what it is given;
- :class:`InMemorySink`: a ``store.fetches.RecordSink`` that keeps batches, each once;
- :class:`RefusingSink`: wraps a sink as a store that refuses for a while, or crashes;
- :class:`InMemoryTransport`: an ``emulate.transport.Transport`` over files in memory, for
  emulated phones' boots without a socket;
- :class:`ScenarioBuilder`: a simulation scenario's TOML, built in code (sites, licenses,
  events), parsed by ``simulate.scenario.parse_scenario`` like any file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
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

    from fleetkey.core.features import FeatureCatalog
    from fleetkey.emulate.transport import Transport
    from fleetkey.serve.recorder import RecordQueue
    from fleetkey.serve.view import View, ViewSource
    from fleetkey.simulate.scenario import Scenario
    from fleetkey.store.fetches import RecordSink
    from fleetkey.store.records import FetchRecord

__all__ = [
    "FixedClock",
    "FixedView",
    "InMemoryRecordQueue",
    "InMemorySink",
    "InMemoryTransport",
    "RefusingSink",
    "ScenarioBuilder",
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


@dataclass
class ScenarioBuilder:
    """A scenario for ``fleetkey simulate``, built in code and written as the TOML an operator
    writes (docs/simulate.md), so that it goes through the parser's checks like a file.

    ``site`` takes the ``[[sites]]`` keys as keyword arguments; ``fleet`` spreads a number of
    phones over a number of sites exactly (the first sites take one more phone when it does not
    divide); ``license`` and ``event`` add ``[[licenses]]`` and ``[[events]]``."""

    start: datetime | str = "2027-01-01T00:00:00Z"
    days: int = 365
    name: str | None = None
    server: dict[str, float] = field(default_factory=dict)
    sites: list[dict[str, Any]] = field(default_factory=list)
    licenses: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def site(self, serial: str, phones: int, **keys: Any) -> ScenarioBuilder:
        self.sites.append({"serial": serial, "phones": phones, **keys})
        return self

    def fleet(self, serial: str, phones: int, sites: int, **keys: Any) -> ScenarioBuilder:
        """``phones`` phones at ``sites`` sites whose serials count up from ``serial``."""
        if phones < sites:
            raise ValueError(f"{phones} phones cannot fill {sites} sites")
        each, more = divmod(phones, sites)
        first = int(serial, 16)
        if more:
            self.site(serial, each + 1, count=more, **keys)
        self.site(f"{first + more:012x}", each, count=sites - more, **keys)
        return self

    def license(self, name: str, features: Sequence[str], expires: date | str) -> ScenarioBuilder:
        self.licenses.append({"name": name, "features": list(features), "expires": expires})
        return self

    def event(self, at: datetime | str, **what: Any) -> ScenarioBuilder:
        self.events.append({"at": at, **what})
        return self

    def serials(self) -> list[str]:
        """Every site's serial, in order."""
        return [
            f"{int(s['serial'], 16) + i:012x}" for s in self.sites for i in range(s.get("count", 1))
        ]

    def toml(self) -> str:
        simulation: dict[str, Any] = {"start": self.start, "days": self.days}
        if self.name is not None:
            simulation["name"] = self.name
        lines = ["[simulation]", *_toml_keys(simulation)]
        if self.server:
            lines += ["[server]", *_toml_keys(self.server)]
        for table, entries in (
            ("sites", self.sites),
            ("licenses", self.licenses),
            ("events", self.events),
        ):
            for entry in entries:
                lines += [f"[[{table}]]", *_toml_keys(entry)]
        return "\n".join(lines) + "\n"

    def scenario(self, catalog: FeatureCatalog | None = None) -> Scenario:
        from fleetkey.core.features import default_catalog
        from fleetkey.simulate.scenariofile import parse_scenario

        return parse_scenario(self.toml(), "built.toml", catalog or default_catalog())


def _toml_keys(table: Mapping[str, Any]) -> list[str]:
    return [f"{key} = {_toml_value(value)}" for key, value in table.items()]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, str):
        if _BARE_TOML.fullmatch(value):
            return value  # a date, a date-time written as TOML reads it
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


_BARE_TOML = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2}))?")

if TYPE_CHECKING:  # mypy checks that each fake is a real implementation of its port

    def _ports(
        view: FixedView,
        queue: InMemoryRecordQueue,
        sink: InMemorySink,
        refusing: RefusingSink,
        transport: InMemoryTransport,
    ) -> tuple[ViewSource, RecordQueue, RecordSink, RecordSink, Transport]:
        return view, queue, sink, refusing, transport
