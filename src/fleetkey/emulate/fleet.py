"""Many emulated phones in one process: the license engine of each driven by real traffic.

Each phone has a loopback address of its own, derived from its MAC (``emulate.addresses``: the
server sees one address per phone, as on a real network, and the same one at every run), boots
over a ``Transport`` (HTTP, TFTP or FTP) as ``emulate.booting`` says, following
the master configuration it is served, with its model's User-Agent (``Type/Updater`` for the
updater's requests, ``Type/Application`` after; ``(SN:<mac>)`` only when its configuration has
``tag_serial``, as ``device.prov.tagSerialNo`` does on a phone), keeps its firmware image
across reboots, listens for SIP on its address (``emulate.sockets``), and keeps time by a
shared virtual clock. A busy server's back-pressure is real time: a 503's Retry-After (seconds,
or an HTTP-date less the wall clock's now) is waited in real seconds, never divided by the
virtual clock's speed (the server is no faster for the phones' clock running fast). License
files are parsed with the codec and judged by the engine (R5-R7); anything that does not parse
is ignored like a bad key. Configuration checks read the master it followed and its files again
and compare the SHA-256 of each with the boot's.

A NOTIFY check-sync is handed to the engine the moment it is answered, whatever the phone is
doing: while it boots, the engine absorbs it (a burst reboots the phone once); what the engine
decides is queued for the phone's own loop to carry out. Stopping (``Fleet.stopping``) cancels
every phone's loop; the loops wait with ``asyncio.timeout``, which never drops that cancellation
(Python 3.11's ``asyncio.wait_for`` does when what it waits for finishes at the same moment).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Final

from fleetkey.clock import Clock, SystemClock
from fleetkey.core.codec import parse_license_file
from fleetkey.core.device.boot import SITE_LICENSE, FileRequest, config_files
from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.engine import Action, Boot, CheckConfig, DeviceEngine
from fleetkey.core.license import LicenseKey
from fleetkey.core.rules import SignatureVerifier
from fleetkey.emulate.addresses import assign_addresses
from fleetkey.emulate.booting import Flash, RememberedVerdicts, run_boot, user_agent
from fleetkey.emulate.clock import VirtualClock
from fleetkey.emulate.connect import connector, send
from fleetkey.emulate.ftp import FtpLogins
from fleetkey.emulate.http import Login
from fleetkey.emulate.phone import EmulatedPhone, failure_reason, fetch_record
from fleetkey.emulate.sip import SipPhone
from fleetkey.emulate.sockets import SipSockets
from fleetkey.emulate.transport import Reply, Transport, retry_after_s
from fleetkey.emulate.words import (
    NOT_SENT,
    REFUSED_LOGIN,
    REFUSED_SESSION,
    answer_text,
    answer_word,
    method_word,
)
from fleetkey.errors import EmulationError, FleetkeyError

log = logging.getLogger(__name__)

RETRIES: Final = 5
__all__ = ["SITE_LICENSE", "EmulatedPhone", "Fleet", "user_agent"]


class Fleet:
    def __init__(
        self,
        configs: list[PhoneConfig],
        verifier: SignatureVerifier,
        clock: VirtualClock,
        *,
        host: str,
        port: int,
        prefix: str = "",
        tftp: bool = False,
        sip_port: int | None = 5060,
        calls_per_hour: float = 0.0,
        concurrency: int = 256,
        seed: int = 1,
        sip_logins: list[tuple[str, str] | None] | None = None,
        stopping: asyncio.Event | None = None,
        ftp: FtpLogins | None = None,  # boot over FTP, logging in as these say
        master: str | None = None,
        new_firmware: bool = False,
        http_logins: Mapping[str, tuple[str, str]] | None = None,
        connect: Callable[[EmulatedPhone], Transport] | None = None,  # else by the protocol
        wall: Clock | None = None,  # the real time a Retry-After date is read against
        tls: ssl.SSLContext | None = None,  # HTTPS, trusting what it trusts
    ) -> None:
        self.clock = clock
        self._wall = wall or SystemClock()  # a Retry-After date is the server's time
        self._host, self._port, self._prefix = host, port, prefix.rstrip("/")
        self._master = master  # a master configuration named in the server URL
        self._connector = connector(host, port, tftp=tftp, ftp=ftp, tls=tls)
        self._connect = connect
        self._sip_port = sip_port
        self._calls_per_hour = calls_per_hour
        self._gate = asyncio.Semaphore(concurrency)  # boots in progress at once
        self._random = random.Random(seed)  # noqa: S311  # call timing, not a secret
        verifier = RememberedVerdicts(verifier)
        addresses = assign_addresses([config.mac for config in configs])
        self.phones = [
            EmulatedPhone(
                DeviceEngine(config, verifier, seed=seed + i),
                address,
                flash=Flash(adopt=not new_firmware),
            )
            for i, (config, address) in enumerate(zip(configs, addresses, strict=True))
        ]
        for phone in self.phones:
            found = (http_logins or {}).get(phone.engine.config.mac)
            phone.login = Login(*found) if found else None
        self.requests: Counter[int] = Counter()  # answers by status (HTTP's, for every protocol)
        self.protocol = (
            "ftp" if ftp is not None else "tftp" if tftp else "https" if tls is not None else "http"
        )
        self.answers: Counter[str] = Counter()  # by request and answer, in the protocol's words
        self._logins = sip_logins or [None] * len(self.phones)
        self.all_booted = asyncio.Event()
        # set it (SIGTERM, Ctrl-C) to end the run early; given, it can be wired to signals
        # before the phones are built (that takes seconds for tens of thousands)
        self.stopping = stopping or asyncio.Event()
        self._booted_once = 0
        self._started = 0.0
        self.all_booted_after_s: float | None = None  # real seconds until every phone booted

    async def run(self, duration_s: float, *, until_booted: bool = False) -> None:
        """Power every phone on, then let the virtual clock run for ``duration_s`` real seconds
        (or, ``until_booted``, until every phone has finished its first boot, or until
        ``stopping`` is set); then stop every phone and close every port."""
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        sockets = SipSockets(self._sip_port) if self._sip_port is not None else None
        tasks: list[asyncio.Task[None]] = []
        try:
            if sockets is not None:
                await self._listen(sockets)
            if not self.stopping.is_set():
                tasks = [loop.create_task(self._live(phone)) for phone in self.phones]
            ends: list[asyncio.Task[bool]] = [loop.create_task(self.stopping.wait())]
            if until_booted:
                ends.append(loop.create_task(self.all_booted.wait()))
            _, waiting = await asyncio.wait(ends, timeout=duration_s, return_when="FIRST_COMPLETED")
            for end in waiting:
                end.cancel()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if sockets is not None:
                sockets.close()

    async def _listen(self, sockets: SipSockets) -> None:
        """Each phone's SIP port, UDP on its address, TCP through the fleet's listener."""
        makers = {
            phone.address: partial(SipPhone, partial(self._check_sync, phone), login)
            for phone, login in zip(self.phones, self._logins, strict=True)
        }
        handlers = await sockets.open(makers, self.stopping)
        for phone in self.phones:
            phone.sip = handlers.get(phone.address)

    async def _live(self, phone: EmulatedPhone) -> None:
        try:
            await self._lifetime(phone)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one phone's failure is reported, never silent, never shared
            log.exception("emulated phone %s failed", phone.engine.config.mac)
            phone.errors.append(f"the emulated phone stopped: {exc!r}")

    def _check_sync(self, phone: EmulatedPhone, reboot: bool) -> None:
        """A check-sync, answered 200: the engine judges it now, even mid-boot (R9)."""
        actions = phone.engine.check_sync(self.clock.now(), reboot)
        if actions:
            phone.decided.put_nowait(actions)

    async def _lifetime(self, phone: EmulatedPhone) -> None:
        engine = phone.engine
        actions = engine.power_on(self.clock.now())
        next_call = self._next_call()
        in_call_until: datetime | None = None
        while not self.stopping.is_set():
            pending, actions = actions, []
            for action in pending:
                await self._carry(phone, action)
            wake = [t for t in (engine.next_wakeup(), next_call, in_call_until) if t is not None]
            decided = await phone.next_decided(self.clock.real_s_until(min(wake)) if wake else None)
            if decided is not None:
                actions = decided
                continue
            now = self.clock.now()
            if in_call_until is not None and now >= in_call_until:
                in_call_until = None
                actions = engine.call_ended(now)
            elif next_call is not None and now >= next_call:
                engine.call_started(now)
                in_call_until = now + _minutes(self._random.uniform(1, 10))
                next_call = self._next_call()
            else:
                actions = engine.advance(now)

    def _next_call(self) -> datetime | None:
        if self._calls_per_hour <= 0:
            return None
        return self.clock.now() + _minutes(self._random.expovariate(self._calls_per_hour) * 60)

    async def _carry(self, phone: EmulatedPhone, action: Action) -> None:
        if isinstance(action, Boot):
            async with self._gate:
                transport = self._transport(phone)
                try:
                    site, own = await self._boot(phone, action, transport)
                    now = self.clock.now()
                    more = phone.engine.boot_completed(now, site, own)
                finally:  # once the phone is up: a server sees it leave only then
                    await transport.close()
            phone.boots_done += 1
            if phone.boots_done == 1:
                self._booted_once += 1
                if self._booted_once == len(self.phones):
                    self.all_booted_after_s = asyncio.get_running_loop().time() - self._started
                    self.all_booted.set()
            features = tuple(g.slot for g in phone.engine.features(now))
            phone.timeline.append((now, action.reason.value, features))
        else:
            changed = await self._check(phone, action)
            more = phone.engine.config_checked(self.clock.now(), changed, action.reason)
        for follow in more:
            await self._carry(phone, follow)

    async def _boot(
        self, phone: EmulatedPhone, boot: Boot, transport: Transport
    ) -> tuple[list[LicenseKey] | None, list[LicenseKey] | None]:
        config = phone.engine.config

        async def exchange(
            request: FileRequest, body: bytes, agent: str, first: int | None, keep: bool
        ) -> Reply | None:
            return await self._request(phone, transport, request, body, agent, first, keep)

        outcome = await run_boot(
            config,
            phone.flash,
            exchange,
            licenses=any(r.license for r in boot.requests),
            named_master=self._master,
            now=self.clock.now,
        )
        phone.errors.extend(outcome.problems)
        phone.seen = outcome.seen
        phone.image_bytes += outcome.image_bytes
        phone.image_downloads += outcome.image_bytes > 0
        phone.master = (
            (outcome.master, outcome.app)
            if outcome.master is not None and outcome.app is not None
            else None
        )
        found = {
            name.rpartition("/")[2]: self._keys(phone, name, body, status)
            for name, (status, body) in outcome.licenses.items()
        }
        return found.get(SITE_LICENSE), found.get(f"{config.mac}-license.cfg")

    async def _check(self, phone: EmulatedPhone, check: CheckConfig) -> bool:
        """The master configuration and its files again (what it followed at its boot)."""
        files = check.files
        if phone.master is not None:
            files = config_files(phone.engine.config, *phone.master)
        transport = self._transport(phone)
        agent = user_agent(phone.engine.config)
        changed = False
        try:
            for name in files:
                request = FileRequest("GET", name)
                reply = await self._request(phone, transport, request, b"", agent, None, True)
                if reply is None:
                    continue
                digest = hashlib.sha256(reply.body).hexdigest() if reply.status == 200 else None
                changed = changed or digest != phone.seen.get(name)
        finally:
            await transport.close()
        return changed

    def _transport(self, phone: EmulatedPhone) -> Transport:
        if self._connect is not None:
            return self._connect(phone)
        return self._connector(phone.engine.config, phone.address, phone.flash, phone.login)

    async def _request(
        self,
        phone: EmulatedPhone,
        transport: Transport,
        request: FileRequest,
        body: bytes,
        agent: str,
        first_bytes: int | None,
        keep: bool,
    ) -> Reply | None:
        """One request, retried after a 503's Retry-After; recorded in the phone's fetches."""
        path = f"{self._prefix}/{request.name}"
        method, name = request.method, request.name
        word = method_word(self.protocol, method)
        admission = False
        for _ in range(RETRIES):
            try:
                reply = await send(transport, path, request, body, agent, first_bytes, keep)
            except (OSError, EmulationError) as exc:  # TimeoutError, ConnectionError: OSErrors
                phone.errors.append(f"{word} {name}: {failure_reason(exc)}")
                self.requests[0] += 1
                self.answers[f"{word} no answer"] += 1
                return None
            admission = reply.admission
            if admission:  # the session was refused at connect: the request was never made
                self.answers[REFUSED_SESSION] += 1
            elif reply.unsent:  # its session's login was refused: counted apart, not sent
                if reply.logins_refused:  # the PASS, the server's 401
                    self.requests[403] += reply.logins_refused
                    self.answers[REFUSED_LOGIN] += reply.logins_refused
                self.answers[f"{word} {NOT_SENT}"] += 1
            else:
                self.requests[reply.status] += 1
                self.answers[answer_text(self.protocol, method, reply.status)] += 1
            if reply.challenged:  # a login's challenge came first: an answer too
                self.requests[401] += reply.challenged
                self.answers[answer_text(self.protocol, method, 401)] += reply.challenged
            if reply.status != 503:
                record = fetch_record(self.clock.now(), method, name, reply)
                record.method = word  # as the server's records name it
                phone.fetches.append(record)
                return reply
            wait = retry_after_s(reply.headers.get("retry-after"), self._wall.now())
            phone.busy_waits_s.append(wait)
            await asyncio.sleep(wait)  # real time: the server's, whatever the virtual clock's
        if admission:
            phone.errors.append(f"connect (for {word} {name}): still refused after {RETRIES} tries")
            return None
        busy = answer_word(self.protocol, 503)
        phone.errors.append(f"{word} {name}: still {busy} after {RETRIES} tries")
        return None

    def _keys(
        self, phone: EmulatedPhone, name: str, content: bytes, status: int
    ) -> list[LicenseKey] | None:
        if status != 200:
            return None  # R2: not found leaves the installed key in place
        try:
            return list(parse_license_file(content, source=name).keys)
        except FleetkeyError as exc:
            phone.errors.append(f"{name}: {exc}")
            return []  # a file that does not parse offers no acceptable key


def _minutes(value: float) -> timedelta:
    return timedelta(minutes=value)
