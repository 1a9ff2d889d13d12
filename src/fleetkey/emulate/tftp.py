"""A small TFTP client for emulated phones (a ``Transport``; RFC 1350 with blksize, RFC 2348,
and tsize, RFC 2349): RRQ and WRQ from the phone's own address, one transfer at a time,
lock-step, 1 s timeout, 5 tries. Reading only a file's first bytes asks its ``tsize`` and ends
the transfer with an error packet after the first block, as an updater reading an image header.

Answers are mapped to the HTTP statuses the rest of the emulator speaks: 200 read, 201 written,
404 file not found, 403 access violation, 503 busy (error 0 "retry"), 500 anything else.
Packets are built and read by ``core.tftp``, the server's codec: one codec for both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Final

from fleetkey.core import tftp
from fleetkey.core.tftp import ErrorCode, Opcode, PacketError
from fleetkey.emulate.transport import Reply, Sink, busy
from fleetkey.errors import EmulationError

BLKSIZE: Final = 1428
TIMEOUT_S: Final = 1.0
TRIES: Final = 5
_STATUS: Final[dict[int, int]] = {
    ErrorCode.FILE_NOT_FOUND: 404,
    ErrorCode.ACCESS_VIOLATION: 403,
    ErrorCode.DISK_FULL: 413,
}


class TftpClient:
    def __init__(self, host: str, port: int, *, local_address: str | None) -> None:
        self._server = (host, port)
        self._local = local_address

    async def fetch(
        self, path: str, *, user_agent: str, first_bytes: int | None = None, keep: bool = True
    ) -> Reply:
        """RRQ; TFTP carries no User-Agent, so ``user_agent`` is unused."""
        sock = self._socket()
        try:
            return await self._read(sock, path.lstrip("/").encode(), first_bytes, keep)
        finally:
            sock.close()

    async def put(self, path: str, body: bytes, *, user_agent: str) -> Reply:
        """WRQ."""
        sock = self._socket()
        try:
            return await self._write(sock, path.lstrip("/").encode(), body)
        finally:
            sock.close()

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind((self._local or "0.0.0.0", 0))  # noqa: S104  # the phone's address when given
        except OSError:
            sock.close()
            raise
        return sock

    async def _exchange(
        self, sock: socket.socket, packet: bytes, to: tuple[str, int]
    ) -> tuple[bytes, tuple[str, int]] | None:
        """Send ``packet`` (again after each silent second) until ``to`` answers."""
        loop = asyncio.get_running_loop()
        for _ in range(TRIES):
            if packet:
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    sock.sendto(packet, to)
            deadline = loop.time() + TIMEOUT_S
            while (left := deadline - loop.time()) > 0:
                got = await _receive(sock, left)
                if got is not None and (to == self._server or got[1] == to):
                    return got
        return None

    async def _read(
        self, sock: socket.socket, name: bytes, first_bytes: int | None, keep: bool
    ) -> Reply:
        options = {"blksize": str(BLKSIZE)} | ({"tsize": "0"} if first_bytes else {})
        got = await self._exchange(sock, tftp.request(Opcode.RRQ, name, options), self._server)
        sink = Sink(keep, name.decode("utf-8", "replace"))
        blksize, expected, size = tftp.DEFAULT_BLKSIZE, 1, None
        while got is not None:
            data, peer = got
            opcode = _opcode(data)
            if opcode == Opcode.ERROR:
                return _error(data)
            if opcode == Opcode.OACK:
                try:
                    found = tftp.parse_oack(data)
                except PacketError:
                    return Reply(500)
                blksize = int(found.get("blksize", "512") or 512)
                tsize = found.get("tsize", "")
                size = int(tsize) if tsize.isdigit() else None
                got = await self._exchange(sock, tftp.ack(0), peer)
                continue
            if opcode != Opcode.DATA:
                return Reply(500)
            if int.from_bytes(data[2:4], "big") == expected & 0xFFFF:
                sink.add(data[4:])  # over the cap: raised, the transfer left to time out
                expected += 1
                last = len(data) - 4 < blksize
                if first_bytes and not last:  # the header is read: end the transfer
                    with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                        sock.sendto(tftp.error(ErrorCode.NOT_DEFINED, "header read"), peer)
                    reply = sink.reply(206)
                    reply.size = size
                    return reply
                if last:
                    with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                        sock.sendto(tftp.ack(expected - 1), peer)
                    reply = sink.reply(200)
                    if first_bytes:
                        reply.size = sink.size
                    return reply
            got = await self._exchange(sock, tftp.ack(expected - 1), peer)
        return Reply(408)

    async def _write(self, sock: socket.socket, name: bytes, body: bytes) -> Reply:
        got = await self._exchange(sock, tftp.request(Opcode.WRQ, name), self._server)
        block, last, chunk = 0, b"", b"x" * 512
        while got is not None:
            data, peer = got
            opcode = _opcode(data)
            if opcode == Opcode.ERROR:
                return _error(data)
            if opcode != Opcode.ACK:
                return Reply(500)
            if int.from_bytes(data[2:4], "big") != block & 0xFFFF:  # a stale ACK: send again
                got = await self._exchange(sock, last, peer)
                continue
            if block > 0 and len(chunk) < 512:
                return Reply(201)
            block += 1
            chunk = body[(block - 1) * 512 : block * 512]
            last = tftp.data(block, chunk)
            got = await self._exchange(sock, last, peer)
        return Reply(408)

    async def close(self) -> None:
        """Nothing to close between transfers: each has its own socket."""


async def _receive(
    sock: socket.socket, timeout: float, *, raise_refused: bool = False
) -> tuple[bytes, tuple[str, int]] | None:
    """One datagram within ``timeout`` (uvloop has no sock_recvfrom: a reader and a future)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        async with asyncio.timeout(timeout):  # wait_for could drop a stop (3.11)
            await ready
    except TimeoutError:
        return None
    finally:
        loop.remove_reader(sock.fileno())
    try:
        data, addr = sock.recvfrom(70000)
    except BlockingIOError:
        return None
    except ConnectionRefusedError:
        if raise_refused:
            raise
        return None
    return data, (addr[0], addr[1])


def _opcode(data: bytes) -> int:
    found = tftp.head(data)
    return found[0] if found is not None else 0


def _error(data: bytes) -> Reply:
    code, message = tftp.parse_error(data)
    if code == ErrorCode.NOT_DEFINED and "retry" in message:
        return busy(message)
    return Reply(_STATUS.get(code, 500), message.encode())


async def check_reachable(host: str, port: int, timeout_s: float = 3.0) -> None:
    """Raise EmulationError, saying why, when no TFTP server answers there. The probe is an
    ACK outside any transfer: a server answers it with an error packet (unknown transfer ID)
    and records no fetch."""
    where = f"tftp://{host}:{port}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect((host, port))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            try:
                sock.send(tftp.ack(0))
                if await _receive(sock, min(left, 0.5), raise_refused=True) is not None:
                    return
            except ConnectionRefusedError as exc:
                raise EmulationError(f"nothing listens at {where} (port unreachable)") from exc
            except OSError as exc:
                raise EmulationError(f"cannot reach {where}: {exc.strerror or exc}") from exc
    finally:
        sock.close()
    raise EmulationError(f"{where} does not answer: nothing came back in {timeout_s:g} s")
