"""Passive FTP listeners bind a port of their range with SO_REUSEADDR (serve.ftp.server).

Real sockets on 127.0.0.1: a download's data connection is ended by the server, so its port
waits out TIME_WAIT on the server's side; these check that such a port is bound again, which
a listener bound to port 0 (the kernel's choice) never gets.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from fleetkey.serve.ftp.passive import PORT_RANGE_FILE, bind_passive, ephemeral_ports


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_pair() -> int:
    """A port that, with the next one, bind_passive can bind now. The port after a free one
    may be another program's (on a busy host, a TIME_WAIT left by a socket without
    SO_REUSEADDR: the test below failed 2 runs of 6 so, naming no free port in the pair)."""
    for _ in range(100):
        first = free_port()
        socks = [socket.socket(), socket.socket()]
        try:
            for offset, sock in enumerate(socks):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return first
    raise AssertionError("no two free ports in a row on 127.0.0.1")


@pytest.fixture
def port_in_time_wait() -> int:
    """A port whose last connection the server side closed first (TIME_WAIT there)."""
    listener = socket.socket()
    port = free_port()
    bind_passive(listener, "127.0.0.1", (port, port))
    listener.listen()
    client = socket.create_connection(("127.0.0.1", port), source_address=("127.77.0.1", 0))
    accepted, _ = listener.accept()
    listener.close()
    accepted.close()  # the server's end first, as after a RETR
    assert client.recv(1) == b""  # its FIN arrived: the server side is in TIME_WAIT now
    client.close()
    return port


class TestBindPassive:
    def test_a_port_in_time_wait_is_bound_again(self, port_in_time_wait: int) -> None:
        plain = socket.socket()
        with pytest.raises(OSError, match="Address already in use"):
            plain.bind(("127.0.0.1", port_in_time_wait))  # what port 0 would skip
        plain.close()
        again = socket.socket()
        bind_passive(again, "127.0.0.1", (port_in_time_wait, port_in_time_wait))
        assert again.getsockname()[1] == port_in_time_wait
        again.close()

    def test_the_port_is_one_of_the_range(self) -> None:
        first = free_port()
        with socket.socket() as sock:
            bind_passive(sock, "127.0.0.1", (first, first + 3))
            assert first <= sock.getsockname()[1] <= first + 3

    def test_a_taken_port_is_passed_over_for_a_free_one(self) -> None:
        first = free_pair()
        taken = socket.socket()
        taken.bind(("127.0.0.1", first))
        taken.listen()
        try:
            for _ in range(20):
                with socket.socket() as sock:
                    bind_passive(sock, "127.0.0.1", (first, first + 1))
                    assert sock.getsockname()[1] == first + 1
        finally:
            taken.close()

    def test_a_range_with_every_port_taken_is_refused_naming_it(self) -> None:
        port = free_port()
        taken = socket.socket()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        try:
            refused_with = pytest.raises(OSError, match="no free passive port")
            with socket.socket() as sock, refused_with as refused:
                bind_passive(sock, "127.0.0.1", (port, port))
            assert refused.value.errno == errno.EADDRINUSE
            assert refused.value.strerror == f"no free passive port in {port}-{port}"
        finally:
            taken.close()


def test_the_default_range_is_the_kernels_ephemeral_range() -> None:
    first, last = (int(part) for part in Path(PORT_RANGE_FILE).read_text().split())
    assert ephemeral_ports() == (first, last)
