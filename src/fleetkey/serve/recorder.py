"""One recorder for every protocol: fetch records, phone sightings, back-pressure, counters.

Every answer a server gives a phone (refusals and errors included) becomes one fetch record,
queued for the store's batched writer without ever blocking the event loop. The queue is the
server's measure of overload, and the heaviest clients give way first: from half full, an
address that sent more than its fair share in the current second (the average over the
addresses heard from, at least ``FAIR_SHARE_MIN``) waits: HTTP reads nothing more from its
connection until its request is admitted (TCP pushes back on it, and no answer, no record,
is made meanwhile), TFTP answers it busy; from 90 % full only addresses quieter than
``QUIET_SHARE`` a second are answered (the phones that arrive after a flood filled the queue
alone), and from 98 % everyone is answered busy (HTTP 503 with Retry-After, a TFTP error),
so an answer is never given that cannot be recorded. A record that still finds the queue
full is counted as not recorded and logged once per episode. One client's flood used to turn
half of everyone's answers into 503s: a busy answer costs a record like any other, so giving
it to the flood would not have relieved the queue.

A record that confirms a delivery (``confirms``: a posted license answered 200, 206 or 304)
is made before its answer is sent and committed first (``record(first=True)``, serve/commits.py).

Sightings (last seen, address, User-Agent, firmware) are kept in memory, the newest per phone,
and written once a second in one transaction (``flush``, off the event loop), with the phones
the ``register`` policy queued.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from fleetkey.clock import Clock
from fleetkey.core.useragent import PhoneAgent
from fleetkey.errors import QueueFullError
from fleetkey.serve.commits import CommitGate
from fleetkey.serve.content import Content
from fleetkey.serve.fetching import Ruling
from fleetkey.serve.view import ViewSource
from fleetkey.store import sightings
from fleetkey.store.confirmation import ANSWERED
from fleetkey.store.records import FetchRecord
from fleetkey.store.sightings import NewPhone, Sighting
from fleetkey.store.store import Store

log = logging.getLogger(__name__)

ACTOR: Final = "fleetkey serve"
FAIR_FRACTION: Final = 0.5  # of the record queue: beyond it, clients over their fair share wait
BUSY_FRACTION: Final = 0.9  # beyond it, only quiet addresses are still answered
FULL_FRACTION: Final = 0.98  # beyond it, everyone is answered busy
FAIR_SHARE_MIN: Final = 100  # requests a second any address may send under pressure
QUIET_SHARE: Final = 20  # requests a second an address may send when the queue is nearly full:
# a booting phone sends ~11 in a few seconds (domain.md §5.1), a flood thousands
MAX_USER_AGENT: Final = 255  # characters stored
MAX_METHOD: Final = 8  # fetches.method is String(8): httptools takes MKCALENDAR and longer
MAX_PATH: Final = 1024
LOG_EVERY_S: Final = 10.0  # records not queued: one log line per episode, not per record


class Admission(enum.Enum):
    """What ``Recorder.admits`` says of a request (compared with ``is``)."""

    ADMIT = "admit"
    WAIT = "wait"  # over its fair share under pressure: not read on for a moment
    BUSY = "busy"  # the queue is nearly full: answered busy


# bound once: the check runs for every request, and on Python 3.11 reading a member through
# its class costs ~0.2 us (a property), a module global ~0.03 us
ADMIT: Final = Admission.ADMIT
WAIT: Final = Admission.WAIT
BUSY: Final = Admission.BUSY
CONFIRMING: Final = frozenset(ANSWERED)  # statuses a rollout confirms a phone from


def confirms(status: int, content: Content | None, mac: str | None) -> bool:
    """Whether an answer confirms a delivery to a rollout's executor: a posted license (phone
    or site) answered 200, 206 or 304 to a phone the server knows (``mac``), whatever the
    protocol (``store/confirmation.py``; a record naming no phone confirms nothing)."""
    return (
        mac is not None
        and content is not None
        and content.license_id is not None
        and status in CONFIRMING
    )


class RecordQueue(Protocol):
    """Where the recorder queues fetch records (a port: the server's is ``store.writer``'s
    ``FetchWriter``; ``fleetkey.testing.InMemoryRecordQueue`` keeps them in a list)."""

    @property
    def depth(self) -> int:
        """Records queued and not yet in the store: the server's measure of overload."""
        ...

    def submit(self, record: FetchRecord, timeout: float | None = None) -> None:
        """Queue ``record``, waiting at most ``timeout`` seconds for room (0: not at all), then
        raise QueueFullError; a queue that is not running raises FleetkeyError."""
        ...


@dataclass(frozen=True, slots=True)
class FlushResult:
    updated: int
    registered: list[str]


class Sightings:
    """The newest request of each phone since the last flush, and phones to register.

    Filled on the event loop (a dict assignment per request), emptied by ``flush`` on a worker
    thread: the two swap whole dicts, which is atomic under the GIL.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[datetime, str | None, str | None, PhoneAgent | None]] = {}
        self._new: dict[str, NewPhone] = {}
        self.registered = 0

    def watches(self, mac: str, known: bool) -> bool:
        """Whether a sighting of ``mac`` would change anything: it is in the inventory (as the
        caller's view has it) or queued to be registered. Other MACs are not looked up: a
        sighting of them would only cost a batch lookup that finds nothing."""
        return known or mac in self._new

    def seen(
        self,
        mac: str,
        known: bool,
        at: datetime,
        address: str | None,
        user_agent: str | None,
        agent: PhoneAgent | None,
    ) -> None:
        """A request from ``mac`` was answered; kept for the next flush when it can change
        something (``watches``)."""
        if known or mac in self._new:
            self._seen[mac] = (at, address, user_agent, agent)

    def queue(self, phone: NewPhone) -> None:
        """Register ``phone`` at the next flush (once, whatever it asks meanwhile)."""
        if phone.mac not in self._new:
            self._new[phone.mac] = phone

    def flush(self, store: Store, clock: Clock) -> FlushResult:
        """Write what was collected (blocking: call it off the event loop)."""
        seen, self._seen = self._seen, {}
        new, self._new = self._new, {}
        # list() copies in C, holding the GIL: a write the event loop makes to the old dict
        # right after the swap cannot break the iteration below
        latest = list(seen.items())
        newcomers = list(new.values())
        rows = [
            Sighting(
                mac,
                at,
                address,
                user_agent,
                agent.model if agent else None,
                # an emulated phone's firmware is what the emulator was told: never the
                # inventory's (a made-up MAC, or --models on a real phone's)
                agent.firmware if agent and not agent.emulated else None,
            )
            for mac, (at, address, user_agent, agent) in latest
        ]
        try:
            with store.transaction() as session:
                registered = sightings.register(session, clock, ACTOR, newcomers)
                updated = sightings.record(session, rows) if rows else 0
        except BaseException:  # keep them for the next flush; newer sightings win
            self._seen = seen | self._seen
            self._new = new | self._new
            raise
        if registered:
            self.registered += len(registered)
            log.info("registered %d new phones", len(registered))
        return FlushResult(updated, registered)


class Recorder:
    """Records answers: the fetch record, the sighting, the counters."""

    def __init__(
        self,
        queue: RecordQueue,
        clock: Clock,
        view: ViewSource,
        *,
        queue_capacity: int,
        sightings: Sightings | None = None,
        gate: CommitGate | None = None,
    ) -> None:
        self._queue = queue
        self.gate = gate
        self._clock = clock
        self._live = view
        self.sightings = sightings or Sightings()
        self._busy_at = int(queue_capacity * BUSY_FRACTION)
        self._full_at = int(queue_capacity * FULL_FRACTION)
        self._fair_at = int(queue_capacity * FAIR_FRACTION)
        self._window: dict[str | None, int] = {}  # requests per address this second, under pressure
        self._window_began = float("-inf")
        self._window_total = 0
        self.answers: dict[tuple[str, int, str], int] = {}  # (protocol, status, kind) → count
        self.identified: dict[str, int] = {}  # answers by how the phone was known ("none")
        self.unrecorded = 0
        self._logged_at = float("-inf")

    @property
    def busy_at(self) -> int:
        """The queue depth from which phones are answered busy."""
        return self._busy_at

    @property
    def congested(self) -> bool:
        """The record queue is nearly full: answer busy rather than queue more."""
        return self._queue.depth >= self._busy_at

    def admits(self, address: str | None, now: float) -> Admission:
        """Whether a request from ``address`` may be answered now, must wait, or is answered
        busy. From half full, an address over its fair share this second waits; from 90 %,
        one over ``QUIET_SHARE`` waits (a flood that filled the queue alone, when nobody else
        was heard, must not shut out the phones that come after it); from 98 % all are busy.

        ``now``: monotonic seconds (``time.perf_counter()``, as every adapter passes), for the
        one-second window.
        """
        depth = self._queue.depth
        if depth < self._fair_at:
            return ADMIT  # nearly always: one comparison
        if depth >= self._full_at:
            return BUSY
        if now - self._window_began >= 1.0:
            self._window.clear()
            self._window_began, self._window_total = now, 0
        sent = self._window.get(address, 0) + 1
        if depth >= self._busy_at:
            if sent > QUIET_SHARE:
                return WAIT
        else:
            heard = len(self._window) + (address not in self._window)
            if sent > max(FAIR_SHARE_MIN, (self._window_total + 1) / heard):
                return WAIT
        self._window[address] = sent
        self._window_total += 1
        return ADMIT

    def record(
        self,
        protocol: str,
        method: str,
        path: str,
        status: int,
        size: int,
        duration_ms: float,
        address: str | None,
        user_agent: str | None,
        agent: PhoneAgent | None,
        ruling: Ruling | None,
        kind: str,
        digest: str | None,
        first: bool = False,
    ) -> asyncio.Future[bool] | None:
        """One answer given: ``size`` bytes sent (or received, for an upload).

        ``first``: an answer about to be sent that confirms a delivery (``confirms``),
        recorded as what it will send and committed at once; the future to await before
        sending it (None: send now: no gate, or the record could not be queued)."""
        key = (protocol, status, kind)
        answers = self.answers
        answers[key] = answers.get(key, 0) + 1
        now = self._clock.now()
        mac = via = None
        if ruling is not None:
            mac = ruling.mac
            via = ruling.via
            if status < 400:
                if ruling.register is not None:
                    self.sightings.queue(ruling.register)
                if mac is not None:
                    known = mac in self._live.view.phone_sites
                    self.sightings.seen(mac, known, now, address, user_agent, agent)
        identified = self.identified
        counted = via or "none"
        identified[counted] = identified.get(counted, 0) + 1
        record = FetchRecord(  # positional: a keyword call costs twice as much, per request
            path if len(path) <= MAX_PATH else path[:MAX_PATH],
            protocol,
            status,
            size,
            duration_ms,
            now,
            method if len(method) <= MAX_METHOD else method[:MAX_METHOD],
            mac,
            digest,
            address,
            user_agent[:MAX_USER_AGENT] if user_agent else None,
            via,
        )
        try:
            if first and self.gate is not None:
                return self.gate.submit(record)
            self._queue.submit(record, timeout=0)
        except QueueFullError:
            self._not_queued(protocol, path)
        return None

    def _not_queued(self, protocol: str, path: str) -> None:
        self.unrecorded += 1
        moment = time.monotonic()
        if moment - self._logged_at >= LOG_EVERY_S:
            log.error(  # a counted condition, not a bug: no traceback
                "fetch records not queued: the queue is full (%d so far; latest %s %s)",
                self.unrecorded,
                protocol,
                path[:200],
            )
            self._logged_at = moment
