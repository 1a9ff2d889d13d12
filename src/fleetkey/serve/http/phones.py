"""HTTP framing of the fetch pipeline: GET and HEAD of files, PUT of the files phones write.

What a request gets is ``serve.fetching``'s ruling; this module turns HTTP into the
pipeline's facts (the path decoded once, the User-Agent, the client's address after trusted
proxies, the per-device login) and the ruling back into HTTP (200/206/304/416 from
``answers``, 401 with challenges, 403, 404, 503 with Retry-After), and hands every answer to the
recorder. Admission limits (answers in flight, large downloads) are per connection-level
resource, so they live here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Final

from fleetkey.core.requestpath import url_path_segments
from fleetkey.core.useragent import MAX_LENGTH as USER_AGENT_MAX
from fleetkey.core.useragent import PhoneAgent, parse_user_agent
from fleetkey.errors import RequestPathError
from fleetkey.serve.fetching import AGENT, NAME, Pipeline, Ruling, shape_of
from fleetkey.serve.http.answers import Answers
from fleetkey.serve.http.asgi import AsgiMount
from fleetkey.serve.http.auth import DeviceAuth, Verdict
from fleetkey.serve.http.messages import Request, Response, error_response
from fleetkey.serve.http.putting import (
    INLINE_UPLOAD_BYTES,
    store_later,
    store_now,
    upload_place,
)
from fleetkey.serve.http.repeats import Remembered, Repeats
from fleetkey.serve.metrics import Latency
from fleetkey.serve.proxies import ForwardedProtoError, TrustedProxies
from fleetkey.serve.recorder import BUSY, WAIT, Recorder, confirms

log = logging.getLogger(__name__)

RETRY_AFTER_S: Final = 5
FAIR_WAIT_STEP_S: Final = 0.05  # a request over its address's fair share asks again after this
FAIR_WAIT_MAX_S: Final = 10.0  # and is answered busy after waiting this long
# phones repeat their paths and User-Agents: check and parse each once
_segments = url_path_segments  # not cached: a fleet asks for too many distinct paths
_parsed_agent = lru_cache(maxsize=65536)(parse_user_agent)


def _agent(text: str | None) -> PhoneAgent | None:
    """A phone's parsed User-Agent; only phone-sized strings are cached (distinct 15 KB
    User-Agents once held 1.7 GB in the cache's keys)."""
    if text is None or len(text) > USER_AGENT_MAX:
        return None
    return _parsed_agent(text)


_ANONYMOUS: Final = Verdict()
_WAIT: Final = Response(0)  # stands for "not now": never sent
_OWN_REQUEST: Final = frozenset({AGENT, NAME})  # known by the request itself, not its address
_SERVED: Final = frozenset({"GET", "HEAD", "PUT"})


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """When to answer 503 + Retry-After instead of queueing work without bound."""

    max_in_flight: int = 1024  # answers being prepared or written at once
    max_downloads: int = 32  # of those, large files (firmware): licenses are never starved
    large_bytes: int = 1024 * 1024  # a download this large counts as large
    retry_after_s: int = RETRY_AFTER_S


@dataclass(frozen=True, slots=True)
class Policies:
    """Who may fetch over HTTP: per-device authentication, whose X-Forwarded-For to believe."""

    auth: DeviceAuth | None = None
    proxies: TrustedProxies = field(default_factory=TrustedProxies)


class PhoneService:
    """The HTTP protocol's service (``serve.http.protocol.Service``) for phones."""

    def __init__(
        self,
        pipeline: Pipeline,
        recorder: Recorder,
        *,
        uploads: Path,
        admission: AdmissionLimits | None = None,
        policies: Policies | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._recorder = recorder
        self._admission = admission or AdmissionLimits()
        chosen = policies or Policies()
        self._auth = chosen.auth if chosen.auth is not None and chosen.auth.enabled else None
        self._proxies = chosen.proxies
        self._operator: AsgiMount | None = None
        self._in_flight = 0
        self._streams = 0
        self._answers = Answers()
        self._repeats = Repeats()
        self._uploads = uploads
        self.trash, self.threaded_uploads = upload_place(uploads)  # where renames wait
        self.requests = 0
        self.rejected = 0  # 503 answers: in-flight cap, download cap, record back-pressure
        self.operator_answers: dict[int, int] = {}  # admin API and /metrics, by status
        self.latency = Latency()
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def repeats(self) -> Repeats:
        """The remembered answers (for metrics: how many, how often used)."""
        return self._repeats

    def mount(self, operator: AsgiMount) -> None:
        """Hand the paths ``operator`` wants (the admin API, /metrics) to it: not fetches."""
        self._operator = operator

    def body_limit(self, method: str, target: bytes) -> int:
        """PUT bodies of the files phones upload are kept, up to their cap; API bodies too."""
        if self._operator is not None and self._operator.wants(target):
            return self._operator.body_limit
        if method != "PUT":
            return 0
        try:  # the name as the pipeline will see it: decoded once, exactly as it is stored
            segments = _segments(target)
        except RequestPathError:
            return 0
        upload = shape_of(segments).upload
        return upload.cap_bytes if upload is not None else 0

    def answer_now(self, request: Request) -> Response | None:
        """The answer when it needs no waiting (everything but uploads, first Basic logins
        (scrypt) and operator requests: for those the protocol awaits ``handle``)."""
        if self._operator is not None and self._operator.wants(request.raw_path):
            return None
        threaded = self.threaded_uploads or len(request.body) > INLINE_UPLOAD_BYTES
        if request.method == "PUT" and threaded:  # handle() admits and authenticates it, once
            return None  # (a Digest answer checked twice is a replay the second time: 401)
        refused = self._scheme(request) or self._gate(request, request.started)  # made just now
        if refused is _WAIT:
            return None  # handle() waits for its turn
        if refused is not None:
            return refused
        if self._auth is None:
            remembered = self._repeats.recall(request, self._pipeline.view, self._pipeline.layout)
            if remembered is not None:
                return self._first(request, self._admitted(self._recalled(request, remembered)))
        verdict = self._authenticate(request)
        if verdict.slow_basic is not None:
            return None
        if request.method == "PUT":
            return self._admitted(
                store_now(
                    self._uploads, request, self._rule(request, verdict, write=True), self.trash
                )
            )
        return self._first(request, self._admitted(self._lookup(request, verdict)))

    async def handle(self, request: Request) -> Response:
        if self._operator is not None and self._operator.wants(request.raw_path):
            response = await self._operator(request)
            response.operator = True
            return response
        refused = self._scheme(request) or self._gate(request, time.perf_counter())
        waited = 0.0
        while refused is _WAIT and waited < FAIR_WAIT_MAX_S:  # over its share: it waits
            await asyncio.sleep(FAIR_WAIT_STEP_S)
            waited += FAIR_WAIT_STEP_S
            refused = self._gate(request, time.perf_counter())
        if refused is _WAIT:
            refused = self._busy(f"more than a fair share of requests for {waited:.0f} s")
        if refused is not None:
            return refused
        verdict = self._authenticate(request)
        if verdict.slow_basic is not None and self._auth is not None:
            address = self._address(request)
            user, password = verdict.slow_basic
            held = self._auth.reserve_slow_check(user, address)
            if held is not None:
                verdict = held
            else:
                verdict = await asyncio.get_running_loop().run_in_executor(
                    None, self._auth.check_basic_slowly, user, password, address
                )
        if request.method != "PUT":
            return self._first(request, self._admitted(self._lookup(request, verdict)))
        self._in_flight += 1
        try:
            response = await store_later(
                self._uploads, request, self._rule(request, verdict, write=True)
            )
        finally:
            self._in_flight -= 1
        return self._admitted(response)

    def _gate(self, request: Request, now: float) -> Response | None:
        """405 (a method not served), 503 (pressure), _WAIT (over a fair share), None: go on."""
        if request.method not in _SERVED:
            response = error_response(405, f"{request.method} is not served here")
            response.headers.append(("allow", "GET, HEAD, PUT"))
            return response
        admission = self._recorder.admits(self._address(request), now)
        if admission is WAIT:
            return _WAIT
        if admission is BUSY:
            return self._busy("fetch records are waiting to be written")
        if self._in_flight >= self._admission.max_in_flight:
            return self._busy(f"{self._in_flight} requests in flight")
        return None

    def _scheme(self, request: Request) -> Response | None:
        """Its scheme, as it comes in: TLS here (protocol.py's), or ended at a trusted proxy
        (X-Forwarded-Proto: recorded as https); 400 for a header that says no scheme."""
        if self._proxies and not request.secure:
            try:
                proto = self._proxies.scheme(
                    request.remote_addr, request.header("x-forwarded-proto")
                )
            except ForwardedProtoError as exc:
                return error_response(400, str(exc))
            request.secure = proto == "https"
        return None

    def _authenticate(self, request: Request) -> Verdict:
        if self._auth is None:
            return _ANONYMOUS
        return self._auth.check(
            request.method,
            request.raw_path.decode("latin-1"),
            request.headers.get("authorization"),
            self._address(request),
        )

    def _admitted(self, response: Response) -> Response:
        """Count the answer in flight (and as a large download) until ``finished``."""
        if response.file is not None and response.file.length >= self._admission.large_bytes:
            if self._streams >= self._admission.max_downloads:
                return self._busy(f"{self._streams} large downloads running")
            self._streams += 1
            response.streaming = True
        self._in_flight += 1
        response.admitted = True
        return response

    def _busy(self, why: str) -> Response:
        self.rejected += 1
        response = error_response(503, f"busy ({why}): try again shortly")
        response.headers.append(("retry-after", str(self._admission.retry_after_s)))
        return response

    def _rule(self, request: Request, verdict: Verdict, *, write: bool) -> Ruling | Response:
        """The pipeline's ruling on this request, or the HTTP answer refusing it before."""
        if self._auth is not None and verdict.mac is None:
            if verdict.retry_after_s is not None:  # too many failures from this address
                response = error_response(429, verdict.reason)
                response.headers.append(("retry-after", str(math.ceil(verdict.retry_after_s))))
                return response
            response = error_response(401, verdict.reason or "credentials required")
            response.headers.extend(self._auth.challenges(stale=verdict.stale))
            return response
        try:
            segments = _segments(request.raw_path)
        except RequestPathError as exc:
            return error_response(400, exc.reason)
        return self._pipeline.decide(
            segments,
            self._address(request),
            _agent(request.headers.get("user-agent")),
            request.started,
            login=verdict.mac,
            write=write,
        )

    def _recalled(self, request: Request, remembered: Remembered) -> Response:
        """A remembered answer; the address still learns which phone it stands for."""
        ruling = remembered.ruling
        address = self._address(request)
        if address is not None and ruling.mac is not None:
            self._pipeline.addresses.named(address, ruling.mac, request.started)
        return Response(
            200,
            body=remembered.body,
            content=remembered.content,
            head=remembered.head,
            ruling=ruling,
        )

    def _address(self, request: Request) -> str | None:
        """The client's address: the peer's, or X-Forwarded-For's from a trusted proxy."""
        return self._proxies.client(request.remote_addr, request.headers.get("x-forwarded-for"))

    def _lookup(self, request: Request, verdict: Verdict) -> Response:
        """GET/HEAD: the pipeline's ruling as an HTTP answer; nothing here waits."""
        view, layout = self._pipeline.view, self._pipeline.layout  # before ruling from them
        ruling = self._rule(request, verdict, write=False)
        if isinstance(ruling, Response):
            return ruling
        content = ruling.content
        if content is not None:
            response = self._answers.answer(request, content)
            if (
                response.head is not None  # a plain 200 of in-memory content (answers.py)
                and content.license_id is not None  # a posted license, from the view
                and ruling.via in _OWN_REQUEST
                and ruling.register is None
                and self._auth is None
                and view is self._pipeline.view  # not replaced while ruling
            ):
                self._repeats.remember(
                    request, view, layout, Remembered(ruling, content, response.body, response.head)
                )
        elif ruling.status == 404:
            response = self._answers.not_found(request.keep_alive)
        else:
            response = error_response(ruling.status, ruling.reason)
        response.ruling = ruling
        return response

    def refused(
        self, method: str, target: bytes, remote: str | None, secure: bool, response: Response
    ) -> None:
        """Record a request the framing refused: it reached the server, so it is a fetch."""
        self._recorder.record(
            "https" if secure else "http", method, target.decode("latin-1"), response.status,
            0, 0.0, remote, None, None, None, "other", None,
        )  # fmt: skip

    def _first(self, request: Request, response: Response) -> Response:
        """An answer that confirms a delivery is recorded now, as sent whole, and waits for
        its record's commit (``response.committed``) before it is sent (serve/commits.py)."""
        content, ruling = response.content, response.ruling
        if not confirms(response.status, content, ruling.mac if ruling is not None else None):
            return response
        assert content is not None  # noqa: S101  # confirms() checked it
        user_agent = request.headers.get("user-agent")
        body = 0 if request.method == "HEAD" or response.status == 304 else response.length
        response.committed = self._recorder.record(
            "https" if request.secure else "http",
            request.method,
            request.raw_path.decode("latin-1"),
            response.status,
            body,
            (time.perf_counter() - request.started) * 1000,
            self._address(request),
            user_agent,
            _agent(user_agent),
            response.ruling,
            content.kind,
            content.digest,
            first=True,
        )
        response.recorded = True
        return response

    def finished(self, request: Request, response: Response, sent: int) -> None:
        """Record the answer (called once it was written) and release its admission."""
        self.requests += 1
        self.bytes_sent += sent
        self.bytes_received += response.received
        elapsed = time.perf_counter() - request.started
        self.latency.observe(elapsed)
        status = response.status
        if response.operator:  # operator requests are not phone fetches
            self.operator_answers[status] = self.operator_answers.get(status, 0) + 1
            return
        if response.admitted:
            self._in_flight -= 1
        if response.streaming:
            self._streams -= 1
        if response.recorded:  # before it was sent (_first)
            return
        content = response.content
        if content is not None:
            kind: str = content.kind
            digest = content.digest
        else:
            kind = "upload" if request.method == "PUT" else "other"
            digest = response.digest
        user_agent = request.headers.get("user-agent")
        self._recorder.record(
            "https" if request.secure else "http",
            request.method,
            request.raw_path.decode("latin-1"),
            status,
            sent or response.received,
            elapsed * 1000,
            self._address(request),
            user_agent,
            _agent(user_agent),
            response.ruling,
            kind,
            digest,
        )
