"""Clients that connect and send nothing, or send slowly, cannot keep phones from being served."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving import RunningServer, fleet_env, make_fleet, start_server


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data, env = fleet_env(tmp_path_factory, "slow")
    make_fleet(data, env)
    return data, env


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_server(sock: socket.socket, within_s: float) -> bytes:
    """What the server sent before closing (b'' if nothing); fails if it stays open."""
    sock.settimeout(within_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        return received
    except TimeoutError:
        raise AssertionError(f"still open after {within_s} s") from None
    return received


def phone_answered(server: RunningServer) -> int:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(f"{server.url}/000000000000.cfg").status_code


def test_1100_idle_connections_cannot_use_up_the_servers_files(
    fleet: tuple[Path, dict[str, str]], sockets: list[socket.socket]
) -> None:
    server = start_server(*fleet, "--http", "127.0.0.1:0", files=512)  # room for ~384 connections
    try:
        for _ in range(1100):
            sockets.append(connect(server.port))
        assert phone_answered(server) == 200
    finally:
        server.stop()


def test_a_request_sent_too_slowly_gets_408_and_is_closed(
    fleet: tuple[Path, dict[str, str]], sockets: list[socket.socket]
) -> None:
    server = start_server(*fleet, "--http", "127.0.0.1:0", "--header-timeout", "1")
    try:
        slow = connect(server.port)
        sockets.append(slow)
        slow.sendall(b"GET /000000000000.cfg HTTP/1.1\r\nHost: x\r\nX-Drip: ")
        answer = closed_by_server(slow, within_s=5)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        silent = connect(server.port)
        sockets.append(silent)
        assert closed_by_server(silent, within_s=5) == b""  # nothing begun: closed, no answer
        assert phone_answered(server) == 200
    finally:
        summary = server.stop()
    assert "0 not recorded" in summary


def test_an_idle_keep_alive_connection_is_closed(
    fleet: tuple[Path, dict[str, str]], sockets: list[socket.socket]
) -> None:
    server = start_server(*fleet, "--http", "127.0.0.1:0", "--idle-timeout", "1")
    try:
        sock = connect(server.port)
        sockets.append(sock)
        sock.sendall(b"GET /000000000000.cfg HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        answer = closed_by_server(sock, within_s=5)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert time.monotonic() - started >= 1.0
    finally:
        server.stop()


def test_one_address_cannot_hold_more_than_its_share(
    fleet: tuple[Path, dict[str, str]], sockets: list[socket.socket]
) -> None:
    server = start_server(*fleet, "--http", "127.0.0.1:0", "--max-connections-per-address", "5")
    try:
        for _ in range(5):
            sockets.append(connect(server.port))
        extra = connect(server.port)
        sockets.append(extra)
        assert closed_by_server(extra, within_s=5) == b""
        assert phone_answered(server) == 200  # another address
    finally:
        server.stop()
