"""Addresses as operators write them, and the error for each way binding fails (the real binds
are in tests/integration/serve/test_listen.py; root may bind privileged ports, so that message
is checked here from the errno the kernel gives others)."""

from __future__ import annotations

import errno
import socket

import pytest

from fleetkey.errors import InputError
from fleetkey.serve.listen import listen_error, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18085", ("127.0.0.1", 18085)),
        (" 0 ", ("127.0.0.1", 0)),
        ("0.0.0.0:69", ("0.0.0.0", 69)),  # noqa: S104  # an operator's choice, parsed
        (":8081", ("127.0.0.1", 8081)),
        ("localhost", ("localhost", 8080)),
        ("[::1]:8443", ("::1", 8443)),
    ],
)
def test_addresses_parse_as_operators_write_them(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, 8080) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:65536", "host:port", "127.0.0.1:-1", "1:2:x"])
def test_a_malformed_address_names_itself_and_the_field(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_address(text, 6969, field="tftp")
    assert caught.value.message == (
        f"address {text!r} is not HOST:PORT, HOST or PORT (port 0-65535)"
    )
    assert caught.value.field == "tftp"
    assert caught.value.hint == "for example 127.0.0.1:6969, 6969, or 0 for any free port"


def test_a_privileged_port_says_how_to_get_the_capability() -> None:
    error = listen_error("TFTP", "0.0.0.0", 69, PermissionError(errno.EACCES, "Permission denied"))  # noqa: S104
    assert error.message == (
        "cannot listen for TFTP on 0.0.0.0:69: permission denied: ports below 1024 are privileged"
    )
    assert "CAP_NET_BIND_SERVICE" in (error.hint or "")
    assert (error.protocol, error.port, error.errno) == ("TFTP", 69, errno.EACCES)


def test_an_unresolvable_host_is_named() -> None:
    error = listen_error(
        "HTTP",
        "phones.example",
        80,
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    )
    assert error.message == (
        "cannot listen for HTTP on phones.example:80: the host 'phones.example' is not an "
        "address of this machine nor a name it can resolve"
    )


def test_an_ipv6_address_is_written_in_brackets() -> None:
    error = listen_error("HTTPS", "::1", 8443, OSError(errno.EADDRINUSE, "in use"), field="https")
    assert error.message == "cannot listen for HTTPS on [::1]:8443: the port is already in use"
    assert error.field == "https"
