"""The TFTP server: requests on the listening port, each transfer on a fresh port of its own.

Content, identity and records are shared with HTTP: the same resolver (license files per phone
and site, the provisioning tree), the same unknown-MAC policy and sightings, the same upload
rules, and one fetch record per transfer with protocol ``tftp``. TFTP outcomes are recorded with
the HTTP status of the same meaning: 200 sent, 201/204 upload stored, 400 malformed or refused
options, 403 access violation, 404 not found, 408 timed out, 413 upload too large, 499 the
phone gave up, 503 busy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Final, cast

from fleetkey.clock import Clock
from fleetkey.core.requestpath import RequestPathError, filename_segments
from fleetkey.serve.content import Content, ContentResolver, Requester, mac_in_name
from fleetkey.serve.identity import Sightings
from fleetkey.serve.tftp import packets
from fleetkey.serve.tftp.deadlines import Deadlines
from fleetkey.serve.tftp.packets import ErrorCode, Limits, Opcode, PacketError, Request
from fleetkey.serve.tftp.poller import Poller
from fleetkey.serve.tftp.transfer import (
    RETRIES,
    Address,
    BytesSource,
    FileSource,
    Outcome,
    ReadTransfer,
    Source,
    WriteTransfer,
)
from fleetkey.serve.uploads import store_upload, upload_rule
from fleetkey.store.fetches import FetchWriter, QueueFullError
from fleetkey.store.records import FetchRecord

log = logging.getLogger(__name__)

NETASCII_MAX_BYTES: Final = 16 * 1024 * 1024  # converted in memory
_segments = lru_cache(maxsize=65536)(filename_segments)  # phones repeat their file names
_parse = lru_cache(maxsize=65536)(packets.parse_request)  # ... and their requests, byte for byte


@lru_cache(maxsize=4096)
def _offer(
    opcode: Opcode, given: tuple[tuple[str, str], ...], limits: Limits, size: int | None
) -> tuple[packets.Negotiated, bytes | None]:
    """What the server takes of ``given`` options, and the OACK saying so (None: no OACK).

    Phones of a model send the same options: negotiated once, not per transfer. ``size``
    matters only for tsize (the caller passes None otherwise).
    """
    request = Request(opcode, b"", "octet", dict(given))
    options = packets.negotiate(request, limits, size)
    return options, packets.oack(options.acknowledged) if options.acknowledged else None


@dataclass(frozen=True, slots=True)
class TftpSettings:
    limits: Limits = field(default_factory=Limits)
    max_transfers: int = 512  # beyond: error 0 "busy", the phone retries later
    per_client: int = 16  # transfers at once from one address
    uploads: bool = False  # WRQ of the files phones write
    retries: int = RETRIES


@dataclass
class TftpCounters:
    """For /metrics: plain numbers bumped on the event loop."""

    outcomes: Counter[int] = field(default_factory=Counter)  # by status
    options: Counter[str] = field(default_factory=Counter)  # option names requested
    retransmits: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    malformed: int = 0
    active: int = 0


class TftpServer(asyncio.DatagramProtocol):
    def __init__(
        self,
        resolver: ContentResolver,
        writer: FetchWriter,
        clock: Clock,
        sightings: Sightings | None,
        uploads: Path,
        settings: TftpSettings,
        bind_host: str,
    ) -> None:
        if resolver.posted is None:
            raise ValueError("TftpServer answers from the resolver's in-memory view")
        self._posted = resolver.posted
        self._resolver = resolver
        self._writer = writer
        self._clock = clock
        self._sightings = sightings
        self._uploads = uploads
        self._settings = settings
        self._bind_host = bind_host
        self._transport: asyncio.DatagramTransport | None = None
        self._poller: Poller | None = None  # made with the listening socket, on the loop
        self._deadlines: Deadlines | None = None  # likewise
        self._per_client: dict[str, int] = {}  # address → transfers in progress
        self._transfers: set[ReadTransfer | WriteTransfer] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters = TftpCounters()
        self._plain = packets.Negotiated(timeout_s=settings.limits.default_timeout_s)
        self.unrecorded = 0

    # the listening socket
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        loop = asyncio.get_running_loop()
        self._poller = Poller(loop)
        self._deadlines = Deadlines(loop)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if len(data) < 2:
            self.counters.malformed += 1
            return
        opcode = int.from_bytes(data[:2], "big")
        if opcode == Opcode.ERROR:
            return  # never answer an error with an error
        if opcode in (Opcode.DATA, Opcode.ACK, Opcode.OACK):
            self.counters.malformed += 1
            self._reply(addr, ErrorCode.UNKNOWN_TID, "no transfer on this port: send RRQ or WRQ")
            return
        try:
            request = _parse(data)
        except PacketError as exc:
            self.counters.malformed += 1
            self._reply(addr, exc.code, exc.message)
            return
        if request.options:
            self.counters.options.update(request.options.keys())
        try:
            self._start(request, addr)
        except _RefusedError as refused:
            self._reply(addr, refused.code, refused.message)
            self._record(request, addr, refused.status, 0, time.perf_counter(), None, None)

    def _reply(self, addr: Address, code: ErrorCode, message: str) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(packets.error(code, message), addr)

    def _start(self, request: Request, addr: Address) -> None:
        started = time.perf_counter()
        settings = self._settings
        if self.counters.active >= settings.max_transfers:
            raise _RefusedError(503, ErrorCode.NOT_DEFINED, "server busy: retry later")
        if self._per_client.get(addr[0], 0) >= settings.per_client:
            raise _RefusedError(503, ErrorCode.NOT_DEFINED, "too many transfers: retry later")
        try:
            segments = _segments(request.filename)
        except RequestPathError as exc:
            raise _RefusedError(400, ErrorCode.ACCESS_VIOLATION, exc.reason) from None
        site, rest = self._resolver.split_site(segments)
        if request.opcode is Opcode.WRQ:
            self._start_upload(request, addr, segments[-1], site, started)
            return
        mac = mac_in_name(segments[-1])
        self._admit(mac, site)
        content = self._resolver.resolve(rest, Requester(mac=mac, site=site))
        if content is None:
            raise _RefusedError(404, ErrorCode.FILE_NOT_FOUND, "file not found")
        source, size = self._source(content, request.mode)
        if not request.options:  # plain RFC 1350: nothing to negotiate
            options, oack = self._plain, None
        else:
            try:
                options, oack = _offer(
                    request.opcode,
                    tuple(request.options.items()),
                    settings.limits,
                    size if "tsize" in request.options else None,
                )
            except PacketError as exc:
                source.close()
                raise _RefusedError(400, exc.code, exc.message) from None

        def done(outcome: Outcome) -> None:
            self.counters.sent_bytes += outcome.sent
            self._finished(transfer, request, addr, outcome, started, mac, content.digest)

        transfer = ReadTransfer(addr, options, oack, done, source, size, settings.retries)
        self._open(transfer, addr)

    def _start_upload(
        self, request: Request, addr: Address, name: str, site: str | None, started: float
    ) -> None:
        if not self._settings.uploads:
            raise _RefusedError(403, ErrorCode.ACCESS_VIOLATION, "uploads are off here")
        rule = upload_rule(name)
        if rule is None:
            raise _RefusedError(403, ErrorCode.ACCESS_VIOLATION, f"{name!r} is not a phone file")
        mac, cap = rule
        self._admit(mac, site)
        try:
            options, oack = _offer(
                request.opcode, tuple(request.options.items()), self._settings.limits, None
            )
        except PacketError as exc:
            raise _RefusedError(400, exc.code, exc.message) from None
        if options.tsize is not None and options.tsize > cap:
            raise _RefusedError(413, ErrorCode.DISK_FULL, f"larger than {cap} bytes")

        def done(outcome: Outcome) -> None:
            self.counters.received_bytes += outcome.sent
            if outcome.payload is None:
                self._finished(transfer, request, addr, outcome, started, mac, None)
                return
            task = asyncio.get_running_loop().create_task(
                self._store(transfer, request, addr, outcome, started, mac, name)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        transfer = WriteTransfer(addr, options, oack, done, cap, self._settings.retries)
        self._open(transfer, addr)

    async def _store(
        self,
        transfer: WriteTransfer,
        request: Request,
        addr: Address,
        outcome: Outcome,
        started: float,
        mac: str,
        name: str,
    ) -> None:
        body = outcome.payload or b""
        if request.mode == "netascii":
            body = packets.from_netascii(body)
        loop = asyncio.get_running_loop()
        try:
            created = await loop.run_in_executor(None, store_upload, self._uploads, name, body)
        except OSError:
            log.exception("storing the TFTP upload %s failed", name)
            outcome.status = 500
        else:
            outcome.status = 201 if created else 204
        outcome.payload = None
        digest = hashlib.sha256(body).hexdigest()
        self._finished(transfer, request, addr, outcome, started, mac, digest)

    def _admit(self, mac: str | None, site: str | None) -> None:
        if mac is None or self._sightings is None:
            return
        if not self._sightings.admit(mac, self._posted.is_known(mac), site, None):
            raise _RefusedError(403, ErrorCode.ACCESS_VIOLATION, f"phone {mac} is not known")

    def _source(self, content: Content, mode: str) -> tuple[Source, int]:
        if mode == "netascii":
            if content.size > NETASCII_MAX_BYTES:
                raise _RefusedError(
                    400, ErrorCode.ILLEGAL_OPERATION, "netascii only for files up to 16 MiB"
                )
            raw = content.body
            if raw is None:
                assert content.path is not None  # noqa: S101  # a Content is bytes or a file
                raw = content.path.read_bytes()
            converted = packets.netascii(raw)
            return BytesSource(converted), len(converted)
        if content.body is not None:
            return BytesSource(content.body), content.size
        assert content.path is not None  # noqa: S101
        try:
            return FileSource(str(content.path)), content.size
        except OSError:
            raise _RefusedError(404, ErrorCode.FILE_NOT_FOUND, "file not found") from None

    def _open(self, transfer: ReadTransfer | WriteTransfer, addr: Address) -> None:
        self.counters.active += 1
        self._per_client[addr[0]] = self._per_client.get(addr[0], 0) + 1
        self._transfers.add(transfer)
        assert self._poller is not None  # noqa: S101  # requests come after connection_made
        assert self._deadlines is not None  # noqa: S101
        try:
            transfer.open(self._bind_host, self._poller, self._deadlines)
        except OSError as exc:
            log.error("no port for a TFTP transfer: %s", exc)  # noqa: TRY400  # counted, recorded
            transfer.finish(Outcome(503, detail="no port for the transfer"), notify=False)

    def _finished(
        self,
        transfer: ReadTransfer | WriteTransfer,
        request: Request,
        addr: Address,
        outcome: Outcome,
        started: float,
        mac: str | None,
        digest: str | None,
    ) -> None:
        if transfer in self._transfers:
            self._transfers.discard(transfer)
            self.counters.active -= 1
            left = self._per_client.pop(addr[0], 1) - 1
            if left > 0:
                self._per_client[addr[0]] = left
        self.counters.retransmits += outcome.retransmits
        self._record(request, addr, outcome.status, outcome.sent, started, mac, digest)

    def _record(
        self,
        request: Request,
        addr: Address,
        status: int,
        sent: int,
        started: float,
        mac: str | None,
        digest: str | None,
    ) -> None:
        self.counters.outcomes[status] += 1
        now = self._clock.now()
        if mac is not None and self._sightings is not None and status < 400:
            self._sightings.seen(mac, self._posted.is_known(mac), now, addr[0], None, None)
        record = FetchRecord(
            request.filename.decode("latin-1")[:1024],
            "tftp",
            status,
            sent,
            (time.perf_counter() - started) * 1000,
            now,
            "RRQ" if request.opcode is Opcode.RRQ else "WRQ",
            mac,
            digest,
            addr[0],
            None,
        )
        try:
            self._writer.submit(record, timeout=0)
        except QueueFullError:
            self.unrecorded += 1
            log.error("fetch record for TFTP %s not queued: the queue is full", record.path)  # noqa: TRY400

    async def drain(self, grace_s: float) -> None:
        """Graceful stop: stop taking requests, let transfers finish, then end the rest."""
        if self._transport is not None:
            self._transport.close()
        deadline = time.monotonic() + grace_s
        while self._transfers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for transfer in list(self._transfers):
            transfer.finish(Outcome(503, detail="server stopping"))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._deadlines is not None:
            self._deadlines.close()  # closes what still dallies
        if self._poller is not None:
            self._poller.close()


class _RefusedError(Exception):
    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def serve_tftp(
    server: TftpServer,
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    ready: Callable[[str, int], None],
    grace_s: float = 10.0,
) -> None:
    """Listen until ``stop``; then drain. ``ready(host, port)`` once listening."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=(host, port))
    bound = transport.get_extra_info("sockname")
    ready(host, int(bound[1]))
    await stop.wait()
    await server.drain(grace_s)
