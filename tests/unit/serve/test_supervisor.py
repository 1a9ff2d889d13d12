"""The supervisor of `serve --workers` (serve/workers.py) with real forked workers whose work
is a small function, and the listeners it binds."""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from collections.abc import Callable
from ipaddress import ip_network

import pytest

from fleetkey.errors import FleetkeyError, ListenError
from fleetkey.serve.workers import Sockets, Supervisor, bind_listeners, close_listeners


def until_terminated(index: int, sockets: Sockets, ready: Callable[[], None]) -> int:
    """A worker that listens, then waits for its SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    ready()
    signal.sigwait({signal.SIGTERM})
    return 0


class TestListeners:
    def test_each_worker_gets_its_own_socket_on_one_port(self) -> None:
        bound = bind_listeners({"http": ("127.0.0.1", 0), "tftp": ("127.0.0.1", 0)}, 3)
        try:
            http, tftp = bound["http"], bound["tftp"]
            assert len(http.sockets) == len(tftp.sockets) == 3
            assert {s.getsockname()[1] for s in http.sockets} == {http.port}
            assert {s.getsockname()[1] for s in tftp.sockets} == {tftp.port}
            assert all(s.type == socket.SOCK_DGRAM for s in tftp.sockets)
        finally:
            close_listeners(bound)

    def test_ftp_has_a_socket_per_worker_on_one_port(self) -> None:
        bound = bind_listeners({"ftp": ("127.0.0.1", 0), "https": None}, 4)
        try:
            assert list(bound) == ["ftp"]
            ftp = bound["ftp"]
            assert len(ftp.sockets) == 4
            assert {s.getsockname()[1] for s in ftp.sockets} == {ftp.port}
            assert all(s.type == socket.SOCK_STREAM for s in ftp.sockets)
        finally:
            close_listeners(bound)

    def test_a_port_in_use_is_refused_and_what_was_bound_is_let_go(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            with pytest.raises(ListenError, match="the port is already in use") as caught:
                bind_listeners({"http": ("127.0.0.1", 0), "tftp": ("127.0.0.1", port)}, 2)
        assert caught.value.field == "tftp"

    def test_a_host_this_machine_does_not_have_is_refused(self) -> None:
        with pytest.raises(ListenError, match=r"192\.0\.2\.1 is not an address of this machine"):
            bind_listeners({"http": ("192.0.2.1", 0)}, 2)


class TestSupervisor:
    def test_workers_start_and_stop_on_sigterm_and_each_is_retired(self) -> None:
        bound = bind_listeners({"http": ("127.0.0.1", 0)}, 2)
        retired: list[tuple[int, int]] = []
        supervisor = Supervisor(2, bound, until_terminated, lambda i, p: retired.append((i, p)))
        supervisor.run(lambda: os.kill(os.getpid(), signal.SIGTERM))
        assert sorted(index for index, _ in retired) == [0, 1]
        assert supervisor.workers == {}
        assert supervisor.restarts == 0
        assert all(s.fileno() == -1 for s in bound["http"].sockets)  # let go at the stop

    def test_a_worker_that_cannot_start_stops_the_others_and_its_error_is_raised(self) -> None:
        def failing(index: int, sockets: Sockets, ready: Callable[[], None]) -> int:
            if index == 1:
                raise FleetkeyError("the store is gone", hint="start PostgreSQL", field="db")
            return until_terminated(index, sockets, ready)

        bound = bind_listeners({"http": ("127.0.0.1", 0)}, 2)
        retired: list[tuple[int, int]] = []
        supervisor = Supervisor(2, bound, failing, lambda i, p: retired.append((i, p)))
        with pytest.raises(FleetkeyError, match="the store is gone") as caught:
            supervisor.run(lambda: pytest.fail("said started"))
        assert (caught.value.hint, caught.value.field) == ("start PostgreSQL", "db")
        assert supervisor.workers == {}  # the other one was stopped and reaped
        assert sorted(index for index, _ in retired) == [0, 1]

    def test_a_worker_that_dies_before_listening_is_said_so(self) -> None:
        def dying(index: int, sockets: Sockets, ready: Callable[[], None]) -> int:
            return 3

        bound = bind_listeners({"http": ("127.0.0.1", 0)}, 1)
        supervisor = Supervisor(1, bound, dying, lambda i, p: None)
        with pytest.raises(FleetkeyError, match="worker 1 ended before it listened"):
            supervisor.run(lambda: None)


def receiving(sockets: tuple[socket.socket, ...], source: str, port: int, sends: int) -> set[int]:
    """Which of ``sockets`` got the datagrams ``source`` sent from ``sends`` source ports."""
    for _ in range(sends):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
            phone.bind((source, 0))
            phone.sendto(b"x", ("127.0.0.1", port))
    got: set[int] = set()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        readable, _, _ = select.select(list(sockets), [], [], 0.1)
        for sock in readable:
            sock.recvfrom(16)
            got.add(sockets.index(sock))
        if not readable and got:
            break
    return got


class TestSteering:
    def test_every_datagram_of_an_address_goes_to_one_worker_and_addresses_spread(self) -> None:
        bound = bind_listeners({"tftp": ("127.0.0.1", 0)}, 2)
        try:
            tftp = bound["tftp"]
            chosen = []
            for last in range(2, 22):
                got = receiving(tftp.sockets, f"127.0.0.{last}", tftp.port, 8)
                assert len(got) == 1, f"127.0.0.{last} went to {got}"
                chosen.append(got.pop())
            assert set(chosen) == {0, 1}
        finally:
            close_listeners(bound)

    def test_every_connection_of_an_address_goes_to_one_worker(self) -> None:
        bound = bind_listeners({"http": ("127.0.0.1", 0)}, 2)
        try:
            http = bound["http"]
            for last in range(2, 8):
                accepted = set()
                for _ in range(6):
                    with socket.socket() as phone:
                        phone.bind((f"127.0.0.{last}", 0))
                        phone.connect(("127.0.0.1", http.port))
                        readable, _, _ = select.select(list(http.sockets), [], [], 2)
                        for sock in readable:
                            sock.accept()[0].close()
                            accepted.add(http.sockets.index(sock))
                assert len(accepted) == 1
        finally:
            close_listeners(bound)

    def test_a_trusted_proxys_connections_are_spread_by_the_kernel(self) -> None:
        bound = bind_listeners({"tftp": ("127.0.0.1", 0)}, 2, [ip_network("127.0.0.9/32")])
        try:
            tftp = bound["tftp"]
            assert receiving(tftp.sockets, "127.0.0.9", tftp.port, 40) == {0, 1}
            assert len(receiving(tftp.sockets, "127.0.0.10", tftp.port, 20)) == 1
        finally:
            close_listeners(bound)
