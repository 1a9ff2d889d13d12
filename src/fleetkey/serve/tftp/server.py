"""TFTP framing of the fetch pipeline: requests on the listening port, each transfer on a
fresh port of its own.

What a request gets is ``serve.fetching``'s ruling, exactly as over HTTP (TFTP has no
User-Agent and no login: the phone is known by the file name or its address); every transfer
goes to ``serve.recorder`` with protocol ``tftp``. Outcomes are recorded with the HTTP status of
the same meaning: 200 sent, 201/204 upload stored, 400 malformed or refused options, 403 access
violation, 404 not found, 408 timed out, 413 upload too large, 499 the phone gave up, 503 busy,
507 (500) an upload the disk had no room (or another error) for: the phone gets error 3, never
the final ACK, which is sent only once the upload is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, cast

from fleetkey.core import tftp as packets
from fleetkey.core.requestpath import filename_segments
from fleetkey.core.tftp import ErrorCode, Opcode, OptionLimits, PacketError, Request
from fleetkey.errors import RequestPathError
from fleetkey.serve.content import Content
from fleetkey.serve.fetching import Decider, Ruling
from fleetkey.serve.listen import bind_datagrams
from fleetkey.serve.recorder import ADMIT, Recorder, confirms
from fleetkey.serve.tftp.deadlines import Deadlines
from fleetkey.serve.tftp.held import HeldReadTransfer, read_transfer
from fleetkey.serve.tftp.poller import Poller
from fleetkey.serve.tftp.sources import NetasciiFileSource, Source, netascii_size, source_for
from fleetkey.serve.tftp.transfer import (
    RETRIES,
    Address,
    ReadTransfer,
    Terms,
    TransferResult,
    WriteTransfer,
)
from fleetkey.serve.trash import Trash
from fleetkey.serve.uploads import store_status

log = logging.getLogger(__name__)

_segments = filename_segments  # not cached: a fleet asks for too many distinct names
_parse = lru_cache(maxsize=65536)(packets.parse_request)  # phones repeat their requests


@dataclass(frozen=True, slots=True)
class TftpSettings:
    limits: OptionLimits = field(default_factory=OptionLimits)
    max_transfers: int = 512  # beyond: error 0 "busy", the phone retries later
    per_client: int = 16  # transfers at once from one address
    uploads: bool = False  # WRQ of the files phones write
    retries: int = RETRIES


# a refusing ruling's status → the TFTP error code of the same meaning
_CODES: Final = {
    400: ErrorCode.ACCESS_VIOLATION,
    403: ErrorCode.ACCESS_VIOLATION,
    404: ErrorCode.FILE_NOT_FOUND,
    503: ErrorCode.NOT_DEFINED,
}


@dataclass
class TftpCounters:
    """For /metrics: plain numbers bumped on the event loop (outcomes: the recorder's)."""

    options: Counter[str] = field(default_factory=Counter)  # option names requested
    retransmits: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    malformed: int = 0
    active: int = 0


class TftpServer(asyncio.DatagramProtocol):
    def __init__(
        self,
        pipeline: Decider,
        recorder: Recorder,
        uploads: Path,
        settings: TftpSettings,
        bind_host: str,
        trash: Trash | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._recorder = recorder
        self._uploads = uploads
        self._trash = trash  # the server's, for replaced uploads (serve.trash, serve.spares)
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
            self._record(request, addr, refused.status, time.perf_counter(), refused.ruling)
        except Exception:  # one request's failure must not go unanswered or unsaid
            log.exception("TFTP request %r from %s failed", request.filename[:200], addr[0])
            self._reply(addr, ErrorCode.NOT_DEFINED, "internal error")
            try:
                self._record(request, addr, 500, time.perf_counter(), None)
            except Exception:  # recording is what failed: said above, nothing more to do
                log.exception("recording the failed TFTP request failed too")

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
        if self._recorder.admits(addr[0], started) is not ADMIT:  # no pushing back on UDP: busy
            raise _RefusedError(503, ErrorCode.NOT_DEFINED, "server busy: retry later")
        try:
            segments = _segments(request.filename)
        except RequestPathError as exc:
            raise _RefusedError(400, ErrorCode.ACCESS_VIOLATION, exc.reason) from exc
        write = request.opcode is Opcode.WRQ
        ruling = self._pipeline.decide(segments, addr[0], None, started, write=write)
        if write and not settings.uploads:
            raise _RefusedError(403, ErrorCode.ACCESS_VIOLATION, "uploads are off here", ruling)
        if ruling.status != 200:
            code = _CODES.get(ruling.status, ErrorCode.ACCESS_VIOLATION)
            message = "file not found" if ruling.status == 404 else ruling.reason
            raise _RefusedError(ruling.status, code, message, ruling)
        if write:
            self._start_upload(request, addr, ruling, started)
            return
        content = ruling.content
        assert content is not None  # noqa: S101  # a 200 of a read carries its content
        if request.mode == "netascii" and content.body is None:  # counted off the loop first
            self._later(self._start_netascii(request, addr, ruling, content, started))
            return
        try:
            source, size = source_for(content, request.mode)
        except OSError as exc:
            raise _RefusedError(404, ErrorCode.FILE_NOT_FOUND, "file not found", ruling) from exc
        self._send(request, addr, ruling, content, started, source, size)

    def _send(
        self,
        request: Request,
        addr: Address,
        ruling: Ruling,
        content: Content,
        started: float,
        source: Source,
        size: int,
    ) -> None:
        """Negotiate the options and start sending ``size`` bytes of ``source``."""
        settings = self._settings
        if not request.options:  # plain RFC 1350: nothing to negotiate
            options, oack = self._plain, None
        else:
            try:
                options, oack = packets.offer(
                    request.opcode,
                    tuple(request.options.items()),
                    settings.limits,
                    size if "tsize" in request.options else None,
                )
            except PacketError as exc:
                source.close()
                raise _RefusedError(400, exc.code, exc.message, ruling) from exc

        def done(result: TransferResult) -> None:
            self.counters.sent_bytes += result.sent
            self._finished(transfer, request, addr, result, started, ruling, content.digest)

        def hold() -> asyncio.Future[bool] | None:  # before the last block: committed first
            return self._record(request, addr, 200, started, ruling, size, content.digest, True)

        terms = Terms(addr, options, oack, settings.retries)
        held = hold if confirms(200, content, ruling.mac) else None
        transfer = read_transfer(terms, done, source, size, held)
        self._open(transfer, addr)

    async def _start_netascii(
        self, request: Request, addr: Address, ruling: Ruling, content: Content, started: float
    ) -> None:
        """A file sent in netascii: its converted size counted on a worker thread, then sent
        as it is converted (never whole in memory)."""
        assert content.path is not None  # noqa: S101  # a Content is bytes or a file
        path = str(content.path)
        limits = self._settings.limits
        try:
            size = await asyncio.get_running_loop().run_in_executor(None, netascii_size, path)
            source = NetasciiFileSource(path, keep=limits.max_window * limits.max_blksize)
            self._send(request, addr, ruling, content, started, source, size)
        except OSError:
            self._reply(addr, ErrorCode.FILE_NOT_FOUND, "file not found")
            self._record(request, addr, 404, started, ruling)
        except _RefusedError as refused:
            self._reply(addr, refused.code, refused.message)
            self._record(request, addr, refused.status, started, ruling)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_upload(
        self, request: Request, addr: Address, ruling: Ruling, started: float
    ) -> None:
        assert ruling.upload is not None  # noqa: S101  # a 200 of a write names its upload
        cap, name = ruling.upload.cap_bytes, ruling.upload.name
        try:
            options, oack = packets.offer(
                request.opcode, tuple(request.options.items()), self._settings.limits, None
            )
        except PacketError as exc:
            raise _RefusedError(400, exc.code, exc.message, ruling) from exc
        if options.tsize is not None and options.tsize > cap:
            raise _RefusedError(413, ErrorCode.DISK_FULL, f"larger than {cap} bytes", ruling)

        def done(result: TransferResult) -> None:
            self.counters.received_bytes += result.sent
            if result.payload is None:
                self._finished(transfer, request, addr, result, started, ruling, None)
                return
            self._later(self._store(transfer, request, addr, result, started, ruling, name))

        terms = Terms(addr, options, oack, self._settings.retries)
        transfer = WriteTransfer(terms, done, cap)
        self._open(transfer, addr)

    async def _store(
        self,
        transfer: WriteTransfer,
        request: Request,
        addr: Address,
        outcome: TransferResult,
        started: float,
        ruling: Ruling,
        name: str,
    ) -> None:
        body = outcome.payload or b""
        if request.mode == "netascii":
            body = packets.from_netascii(body)
        loop = asyncio.get_running_loop()
        outcome.status = await loop.run_in_executor(
            None, store_status, self._uploads, name, body, self._trash
        )
        if outcome.status >= 500:
            outcome.detail = "the upload could not be stored"
        transfer.stored(outcome.detail if outcome.status >= 500 else None)
        outcome.payload = None
        digest = hashlib.sha256(body).hexdigest()
        self._finished(transfer, request, addr, outcome, started, ruling, digest)

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
            transfer.finish(TransferResult(503, detail="no port for the transfer"), notify=False)

    def _finished(
        self,
        transfer: ReadTransfer | WriteTransfer,
        request: Request,
        addr: Address,
        outcome: TransferResult,
        started: float,
        ruling: Ruling,
        digest: str | None,
    ) -> None:
        if transfer in self._transfers:
            self._transfers.discard(transfer)
            self.counters.active -= 1
            left = self._per_client.pop(addr[0], 1) - 1
            if left > 0:
                self._per_client[addr[0]] = left
        self.counters.retransmits += outcome.retransmits
        if not (isinstance(transfer, HeldReadTransfer) and transfer.recorded):
            self._record(request, addr, outcome.status, started, ruling, outcome.sent, digest)

    def _record(
        self,
        request: Request,
        addr: Address,
        status: int,
        started: float,
        ruling: Ruling | None,
        sent: int = 0,
        digest: str | None = None,
        first: bool = False,
    ) -> asyncio.Future[bool] | None:
        write = request.opcode is Opcode.WRQ
        content = ruling.content if ruling is not None else None
        return self._recorder.record(
            "tftp",
            "WRQ" if write else "RRQ",
            request.filename.decode("latin-1"),
            status,
            sent,
            (time.perf_counter() - started) * 1000,
            addr[0],
            None,
            None,
            ruling,
            content.kind if content is not None else ("upload" if write else "other"),
            digest,
            first,
        )

    async def drain(self, grace_s: float) -> None:
        """Graceful stop: stop taking requests, let transfers finish, then end the rest."""
        if self._transport is not None:
            self._transport.close()
        deadline = time.monotonic() + grace_s
        while self._transfers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for transfer in list(self._transfers):
            transfer.finish(TransferResult(503, detail="server stopping"))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._deadlines is not None:
            self._deadlines.close()  # closes what still dallies
        if self._poller is not None:
            self._poller.close()


class _RefusedError(Exception):
    def __init__(
        self, status: int, code: ErrorCode, message: str, ruling: Ruling | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.ruling = status, code, message, ruling


async def serve_tftp(
    server: TftpServer,
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    ready: Callable[[str, int], None],
    grace_s: float = 10.0,
    sock: socket.socket | None = None,
) -> None:
    """Listen (at ``sock`` if bound already: serve --workers) until ``stop``; then drain."""
    ready(host, await bind_datagrams(lambda: server, host, port, protocol="TFTP", sock=sock))
    await stop.wait()
    await server.drain(grace_s)
