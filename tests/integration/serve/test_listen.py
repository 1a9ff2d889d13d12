"""Where `fleetkey serve` listens: ``--http PORT`` is a port, and a listener that cannot bind
stops the server with an error that says which protocol, which address and what to do."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port
from tests.serving import fleet_env, fleetkey_command

BUSY_HINT = "stop it, or choose another port (0 picks a free one)"


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data, env = fleet_env(tmp_path_factory, "listen")
    subprocess.run([*fleetkey_command(), "init"], env=env, check=True, capture_output=True)
    return data, env


def serve(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`fleetkey serve ARGS` that is expected to stop by itself."""
    return subprocess.run(
        [*fleetkey_command(), "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def busy_tcp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


@pytest.fixture
def busy_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        yield int(taken.getsockname()[1])


def test_a_bare_number_is_a_port_on_the_default_address(
    place: tuple[Path, dict[str, str]],
) -> None:
    _, env = place
    port = free_port()
    process = subprocess.Popen(
        [*fleetkey_command(), "serve", "--http", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"fleetkey serving http://127.0.0.1:{port} ")
        reply = httpx.get(f"http://127.0.0.1:{port}/no-such-file.cfg", timeout=10)
        assert reply.status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_a_busy_http_port_is_an_error_with_a_hint(
    place: tuple[Path, dict[str, str]], busy_tcp: int
) -> None:
    _, env = place
    result = serve(env, "--http", f"127.0.0.1:{busy_tcp}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: cannot listen for HTTP on 127.0.0.1:{busy_tcp}: the port is already in use "
        "(--http)\n"
        f"hint: another program listens on HTTP port {busy_tcp} there (another fleetkey "
        f"serve?): {BUSY_HINT}\n"
    )


def test_a_busy_tftp_port_stops_the_http_listener_too(
    place: tuple[Path, dict[str, str]], busy_udp: int
) -> None:
    _, env = place
    result = serve(env, "--http", "127.0.0.1:0", "--tftp", str(busy_udp), timeout=30)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: cannot listen for TFTP on 127.0.0.1:{busy_udp}: the port is already in use "
        "(--tftp)",
        f"hint: another program listens on TFTP port {busy_udp} there (another fleetkey "
        f"serve?): {BUSY_HINT}",
    ]
    assert "stopped:" not in result.stdout


def test_an_address_this_machine_does_not_have(place: tuple[Path, dict[str, str]]) -> None:
    _, env = place
    result = serve(env, "--http", "192.0.2.1:0")  # TEST-NET-1 (RFC 5737): never local
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: cannot listen for HTTP on 192.0.2.1:0: 192.0.2.1 is not an address of this "
        "machine (--http)",
        "hint: give one it has (`ip -brief address`), 0.0.0.0 for all of them, or 127.0.0.1",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--http", "127.0.0.1:99999"),
            "error: address '127.0.0.1:99999' is not HOST:PORT, HOST or PORT (port 0-65535) "
            "(--http)\nhint: for example 127.0.0.1:8080, 8080, or 0 for any free port\n",
        ),
        (
            ("--http", "off", "--tftp", "host:port"),
            "error: address 'host:port' is not HOST:PORT, HOST or PORT (port 0-65535) "
            "(--tftp)\nhint: for example 127.0.0.1:6969, 6969, or 0 for any free port\n",
        ),
    ],
    ids=["port out of range", "port not a number"],
)
def test_a_malformed_address_is_refused_before_anything_listens(
    place: tuple[Path, dict[str, str]], args: tuple[str, ...], message: str
) -> None:
    _, env = place
    result = serve(env, *args)
    assert (result.returncode, result.stderr, result.stdout) == (1, message, "")
