"""A small TFTP client for emulated phones (RFC 1350 with blksize, RFC 2348): RRQ and WRQ from
the phone's own address, one transfer at a time, lock-step, 1 s timeout, 5 tries.

Answers are mapped to the HTTP statuses the rest of the emulator speaks: 200 read, 201 written,
404 file not found, 403 access violation, 503 busy (error 0 "retry"), 500 anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Final

from fleetkey.emulate.http import MAX_BODY, Reply

BLKSIZE: Final = 1428
TIMEOUT_S: Final = 1.0
TRIES: Final = 5
_STATUS: Final = {1: 404, 2: 403, 3: 413}


class TftpClient:
    def __init__(self, host: str, port: int, *, local_address: str | None) -> None:
        self._server = (host, port)
        self._local = local_address

    async def request(
        self, method: str, path: str, body: bytes = b"", *, user_agent: str | None = None
    ) -> Reply:
        """RRQ for GET, WRQ for PUT; TFTP carries no User-Agent, so ``user_agent`` is unused."""
        name = path.lstrip("/").encode()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind((self._local or "0.0.0.0", 0))  # noqa: S104  # the phone's address when given
            if method == "PUT":
                return await self._write(sock, name, body)
            return await self._read(sock, name)
        finally:
            sock.close()

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

    async def _read(self, sock: socket.socket, name: bytes) -> Reply:
        request = b"\x00\x01" + name + b"\0octet\0blksize\0" + str(BLKSIZE).encode() + b"\0"
        got = await self._exchange(sock, request, self._server)
        blksize, parts, expected = 512, bytearray(), 1
        while got is not None:
            data, peer = got
            opcode = data[1] if len(data) >= 4 else 0
            if opcode == 5:
                return _error(data)
            if opcode == 6:  # OACK
                options = data[2:].split(b"\0")
                found = dict(zip(options[::2], options[1::2], strict=False))
                blksize = int(found.get(b"blksize", b"512"))
                got = await self._exchange(sock, b"\x00\x04\x00\x00", peer)
                continue
            if opcode != 3:
                return Reply(500)
            if int.from_bytes(data[2:4], "big") == expected & 0xFFFF:
                parts += data[4:]
                if len(parts) > MAX_BODY:
                    return Reply(500)
                expected += 1
                if len(data) - 4 < blksize:
                    with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                        sock.sendto(b"\x00\x04" + data[2:4], peer)
                    return Reply(200, bytes(parts))
            got = await self._exchange(
                sock, b"\x00\x04" + ((expected - 1) & 0xFFFF).to_bytes(2, "big"), peer
            )
        return Reply(408)

    async def _write(self, sock: socket.socket, name: bytes, body: bytes) -> Reply:
        got = await self._exchange(sock, b"\x00\x02" + name + b"\0octet\0", self._server)
        block, last, chunk = 0, b"", b"x" * 512
        while got is not None:
            data, peer = got
            opcode = data[1] if len(data) >= 4 else 0
            if opcode == 5:
                return _error(data)
            if opcode != 4:
                return Reply(500)
            if int.from_bytes(data[2:4], "big") != block & 0xFFFF:  # a stale ACK: send again
                got = await self._exchange(sock, last, peer)
                continue
            if block > 0 and len(chunk) < 512:
                return Reply(201)
            block += 1
            chunk = body[(block - 1) * 512 : block * 512]
            last = b"\x00\x03" + (block & 0xFFFF).to_bytes(2, "big") + chunk
            got = await self._exchange(sock, last, peer)
        return Reply(408)

    async def close(self) -> None:
        """Nothing to close between transfers: each has its own socket."""


async def _receive(sock: socket.socket, timeout: float) -> tuple[bytes, tuple[str, int]] | None:
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
    except (BlockingIOError, ConnectionRefusedError):
        return None
    return data, (addr[0], addr[1])


def _error(data: bytes) -> Reply:
    code = int.from_bytes(data[2:4], "big")
    message = data[4:].rstrip(b"\0").decode("ascii", "replace")
    if code == 0 and "retry" in message:
        return Reply(503, headers={"retry-after": "1"})
    return Reply(_STATUS.get(code, 500), message.encode())
