"""What the HTTP server answers phones: GET and HEAD of license files and the tree, PUT of logs.

Identity (User-Agent, credentials, the file name), per-device authentication, the unknown-MAC
policy, admission control, and a fetch record for every answer, refused ones included. When the
fetch-record queue is nearly full the phone gets 503 with Retry-After rather than an
unrecorded answer. HTTP semantics of serving a resolved file live in ``answers``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Final

from fleetkey.clock import Clock
from fleetkey.core.requestpath import RequestPathError, url_path_segments
from fleetkey.core.useragent import parse_user_agent
from fleetkey.serve.content import ContentResolver, Requester, mac_in_name
from fleetkey.serve.http.answers import Answers
from fleetkey.serve.http.asgi import AsgiMount
from fleetkey.serve.http.auth import DeviceAuth, Verdict
from fleetkey.serve.http.forwarded import TrustedProxies
from fleetkey.serve.http.messages import Request, Response, error_response
from fleetkey.serve.http.repeats import Remembered, Repeats
from fleetkey.serve.identity import Sightings, UnknownPolicy
from fleetkey.serve.metrics import Latency
from fleetkey.serve.uploads import store_upload, upload_rule
from fleetkey.store.fetches import FetchWriter, QueueFullError
from fleetkey.store.records import FetchRecord

log = logging.getLogger(__name__)

RETRY_AFTER_S: Final = 5
BUSY_FRACTION: Final = 0.9  # of the record queue: beyond it, answer 503 instead of serving
# phones repeat their paths and User-Agents: check and parse each once
_segments = lru_cache(maxsize=65536)(url_path_segments)
_agent = lru_cache(maxsize=65536)(parse_user_agent)
_ANONYMOUS: Final = Verdict()


@dataclass(frozen=True, slots=True)
class Admission:
    """When to answer 503 + Retry-After instead of queueing work without bound."""

    max_in_flight: int = 1024  # answers being prepared or written at once
    max_downloads: int = 32  # of those, large files (firmware): licenses are never starved
    large_bytes: int = 1024 * 1024  # a download this large counts as large
    retry_after_s: int = RETRY_AFTER_S


@dataclass(frozen=True, slots=True)
class Policies:
    """Who may fetch: authentication, unknown MACs, whose X-Forwarded-For to believe."""

    auth: DeviceAuth | None = None
    sightings: Sightings | None = None  # None: last seen not tracked, every MAC served
    proxies: TrustedProxies = field(default_factory=TrustedProxies)


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
        policies: Policies | None = None,
    ) -> None:
        if resolver.posted is None:
            raise ValueError(
                "PhoneService answers from the resolver's in-memory view "
                "(fleetkey.serve.cache.PostedLicenses); give the resolver one"
            )
        self._posted = resolver.posted
        self._admission = admission or Admission()
        chosen = policies or Policies()
        self._auth = chosen.auth if chosen.auth is not None and chosen.auth.enabled else None
        self._sightings = chosen.sightings
        self._proxies = chosen.proxies
        self._operator: AsgiMount | None = None
        self._in_flight = 0
        self._streams = 0
        self._resolver = resolver
        self._answers = Answers()
        self._repeats = Repeats()
        self._uploads = uploads
        self._writer = writer
        self._clock = clock
        self._busy_at = int(queue_capacity * BUSY_FRACTION)
        self.requests = 0
        self.unrecorded = 0
        self.rejected = 0  # 503 answers: in-flight cap, download cap, record back-pressure
        self.answers: dict[tuple[int, str], int] = {}  # (status, kind) → count, for metrics
        self.latency = Latency()
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def repeats(self) -> Repeats:
        """The remembered answers (for metrics: how many, how often used)."""
        return self._repeats

    @property
    def resolver(self) -> ContentResolver:
        """The content resolver, to share with the TFTP server."""
        return self._resolver

    def mount(self, operator: AsgiMount) -> None:
        """Hand the paths ``operator`` wants (the admin API, /metrics) to it: not fetches."""
        self._operator = operator

    def body_limit(self, method: str, target: bytes) -> int:
        """PUT bodies of the files phones upload are kept, up to their cap; API bodies too."""
        if self._operator is not None and self._operator.wants(target):
            return self._operator.body_limit
        if method != "PUT":
            return 0
        name = target.split(b"?", 1)[0].rsplit(b"/", 1)[-1].decode("latin-1")
        rule = upload_rule(name)
        return rule[1] if rule is not None else 0

    def answer_now(self, request: Request) -> Response | None:
        """The answer when it needs no waiting (refusals, lookups in the in-memory view).

        None for uploads (they write a file) and first Basic logins (scrypt): then the
        protocol awaits ``handle``.
        """
        if self._operator is not None and self._operator.wants(request.raw_path):
            return None
        refused = self._gate(request)
        if refused is not None:
            return refused
        if request.method == "PUT":
            return None
        if self._auth is None:
            known = self._repeats.recall(request, self._posted.view)
            if known is not None:
                self._in_flight += 1
                return Response(
                    200,
                    body=known.body,
                    content=known.content,
                    mac=known.mac,
                    admitted=True,
                    head=known.head,
                )
        verdict = self._authenticate(request)
        if verdict.slow_basic is not None:
            return None
        return self._run(request, verdict)

    async def handle(self, request: Request) -> Response:
        if self._operator is not None and self._operator.wants(request.raw_path):
            response = await self._operator(request)
            response.operator = True
            return response
        refused = self._gate(request)
        if refused is not None:
            return refused
        verdict = self._authenticate(request)
        if verdict.slow_basic is not None and self._auth is not None:
            loop = asyncio.get_running_loop()
            verdict = await loop.run_in_executor(
                None, self._auth.check_basic_slowly, *verdict.slow_basic
            )
        if request.method != "PUT":
            return self._run(request, verdict)
        self._in_flight += 1
        try:
            response = await self._upload(request, verdict)
        except BaseException:  # failed or cancelled: the protocol answers 500 or nothing
            self._in_flight -= 1
            raise
        return self._admitted(response)

    def _run(self, request: Request, verdict: Verdict) -> Response:
        self._in_flight += 1
        try:
            response = self._lookup(request, verdict)
        except BaseException:
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

    def _authenticate(self, request: Request) -> Verdict:
        if self._auth is None:
            return _ANONYMOUS
        return self._auth.check(
            request.method,
            request.raw_path.decode("latin-1"),
            request.headers.get("authorization"),
        )

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

    def _caller(
        self, request: Request, verdict: Verdict, named: str | None
    ) -> tuple[str | None, Response | None]:
        """The phone asking (or None), or the refusal to answer with instead."""
        agent = _agent(request.headers.get("user-agent"))
        if self._auth is not None:
            if verdict.mac is None:
                response = error_response(401, verdict.reason or "credentials required")
                response.headers.extend(self._auth.challenges(stale=verdict.stale))
                return None, response
            if named is not None and named != verdict.mac:
                return verdict.mac, error_response(403, "that file belongs to another phone")
            return verdict.mac, None
        return (agent.mac if agent is not None and agent.mac else named), None

    def _admit(self, request: Request, mac: str, site: str | None) -> Response | None:
        """The unknown-MAC policy: None to go on, or a 403."""
        if self._sightings is None:
            return None
        agent = _agent(request.headers.get("user-agent"))
        if self._sightings.admit(mac, self._posted.is_known(mac), site, agent):
            return None
        return error_response(403, f"phone {mac} is not in the inventory")

    def _lookup(self, request: Request, verdict: Verdict) -> Response:
        """GET/HEAD: resolve in the in-memory view and answer; nothing here waits."""
        view = self._posted.view  # taken before anything is decided from it (serve.http.repeats)
        try:
            segments = _segments(request.raw_path)
        except RequestPathError as exc:
            return error_response(400, exc.reason)
        mac, refused = self._caller(request, verdict, mac_in_name(segments[-1]))
        site, rest = self._resolver.split_site(segments)
        if refused is None and mac is not None:
            refused = self._admit(request, mac, site)
        if refused is not None:
            refused.mac = mac
            return refused
        content = self._resolver.resolve(rest, Requester(mac=mac, site=site))
        response = (
            error_response(404, "no such file")
            if content is None
            else self._answers.answer(request, content)
        )
        response.mac = mac
        # a header block is built ahead only for a plain 200 of in-memory content (answers.py)
        if (
            content is not None
            and content.body is not None
            and response.head is not None
            and self._repeatable(mac)
        ):
            self._repeats.remember(
                request, view, Remembered(content, content.body, response.head, mac)
            )
        return response

    def _repeatable(self, mac: str | None) -> bool:
        """Whether this answer's decision was pure (``serve.http.repeats``): no credentials
        were checked, and the admission changed nothing."""
        if self._auth is not None:
            return False
        sightings = self._sightings
        return (
            mac is None
            or sightings is None
            or sightings.policy is UnknownPolicy.SERVE
            or self._posted.is_known(mac)
        )

    async def _upload(self, request: Request, verdict: Verdict) -> Response:
        try:
            segments = url_path_segments(request.raw_path)
        except RequestPathError as exc:
            return error_response(400, exc.reason)
        name = segments[-1]
        rule = upload_rule(name)
        if rule is None:
            return error_response(403, f"{name!r} is not a file phones upload")
        mac, refused = self._caller(request, verdict, rule[0])
        if refused is None and mac is not None:
            refused = self._admit(request, mac, self._resolver.split_site(segments)[0])
        if refused is not None:
            refused.mac = mac
            return refused
        loop = asyncio.get_running_loop()
        created = await loop.run_in_executor(None, store_upload, self._uploads, name, request.body)
        response = Response(201 if created else 204)
        response.mac = rule[0]
        response.received = len(request.body)
        response.digest = hashlib.sha256(request.body).hexdigest()
        return response

    def finished(self, request: Request, response: Response, sent: int) -> None:
        """Record the answer (called once it was written) and release its admission."""
        self.requests += 1
        self.bytes_sent += sent
        self.bytes_received += response.received
        self.latency.observe(time.perf_counter() - request.started)
        status = response.status
        content = response.content
        if content is not None:
            kind: str = content.kind
        elif response.operator:
            kind = "api"
        else:
            kind = "upload" if request.method == "PUT" else "other"
        key = (status, kind)
        self.answers[key] = self.answers.get(key, 0) + 1
        if response.operator:
            return  # operator requests are not phone fetches
        if response.admitted:
            self._in_flight -= 1
        if response.streaming:
            self._streams -= 1
        digest = content.digest if content is not None else response.digest
        user_agent = request.headers.get("user-agent")
        address = request.remote_addr
        if self._proxies:
            address = self._proxies.client(address, request.headers.get("x-forwarded-for"))
        now = self._clock.now()
        mac = response.mac
        if mac is not None and self._sightings is not None and status < 400:
            known = self._posted.is_known(mac)
            self._sightings.seen(mac, known, now, address, user_agent, _agent(user_agent))
        record = FetchRecord(  # positional: a keyword call costs twice as much, per request
            request.raw_path.decode("latin-1")[:1024],
            "https" if request.secure else "http",
            status,
            sent or response.received,
            (time.perf_counter() - request.started) * 1000,
            now,
            request.method[:8],
            response.mac,
            digest,
            address,
            user_agent[:255] if user_agent else None,
        )
        try:
            self._writer.submit(record, timeout=0)
        except QueueFullError:
            self.unrecorded += 1
            log.error(  # noqa: TRY400  # a counted condition, not a bug: no traceback
                "fetch record for %s %s not queued: the queue is full", request.method, record.path
            )
