"""The TFTP transfer sockets' poller: real UDP sockets on loopback, one epoll set."""

from __future__ import annotations

import asyncio
import socket

import uvloop

from fleetkey.serve.tftp.poller import Poller


def _pair() -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return receiver, sender


async def _calls_back_until_forgotten() -> tuple[list[bytes], int]:
    poller = Poller(asyncio.get_running_loop())
    receiver, sender = _pair()
    got: list[bytes] = []
    poller.add(receiver.fileno(), lambda: got.append(receiver.recv(100)))
    sender.sendto(b"one", receiver.getsockname())
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    poller.forget(receiver.fileno())
    sender.sendto(b"two", receiver.getsockname())  # forgotten but still open: never read
    await asyncio.sleep(0.1)
    left = len(poller)
    poller.close()
    receiver.close()
    sender.close()
    return got, left


def test_a_socket_is_read_while_watched_and_not_after_it_is_forgotten() -> None:
    got, left = uvloop.run(asyncio.wait_for(_calls_back_until_forgotten(), 10))
    assert got == [b"one"]
    assert left == 0


async def _many_ready_at_once(count: int) -> int:
    poller = Poller(asyncio.get_running_loop())
    pairs = [_pair() for _ in range(count)]
    read = 0

    def reader(sock: socket.socket) -> None:
        nonlocal read
        sock.recv(100)
        read += 1

    for receiver, _ in pairs:
        poller.add(receiver.fileno(), lambda sock=receiver: reader(sock))
    for receiver, sender in pairs:
        sender.sendto(b"x", receiver.getsockname())
    for _ in range(200):
        if read == count:
            break
        await asyncio.sleep(0.01)
    poller.close()
    for receiver, sender in pairs:
        receiver.close()
        sender.close()
    return read


def test_more_ready_sockets_than_one_batch_are_all_read() -> None:
    assert uvloop.run(asyncio.wait_for(_many_ready_at_once(600), 10)) == 600
