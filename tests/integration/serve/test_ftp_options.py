"""`fleetkey serve`'s FTP options: bad ones are refused with what is wrong, and nothing runs."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PASSPHRASE
from tests.serving import fleetkey_command


def serve(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fleetkey serve` with ``args`` on ``data``, a copy of the session's initialized one."""
    env = {
        "FLEETKEY_DATA": str(data),
        "FLEETKEY_KEY_PASSPHRASE": PASSPHRASE,
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [*fleetkey_command(), "serve", "--http", "off", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=data.parent,
    )


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (("--ftps",), "error: the --ftp… options need --ftp [HOST:PORT]", None),
        (("--ftp", ":0", "--ftps"), "error: --ftps needs --cert and --key", "openssl req -x509"),
        (
            ("--ftp", ":0", "--ftps", "--cert", "server.crt"),
            "error: --ftps needs --cert and --key (--key not given)",
            "--cert server.crt --key server.key",
        ),
        (("--ftp", ":0", "--ftps-required"), "error: --ftps-required goes with --ftps", "--ftps"),
        (("--ftp", "127.0.0.1:70000"), "error: address '127.0.0.1:70000' is not HOST:PORT", "2121"),
        (("--ftp", ":0", "--ftp-passive", "3000"), "is not FIRST-LAST", "30000-30999"),
        (("--ftp", ":0", "--ftp-passive", "40000-30000"), "the first not above the last", "30000"),
        (("--ftp", ":0", "--ftp-passive", "21-30"), "ports must be 1024-65535", "30000-30999"),
        (("--ftp", ":0", "--ftp-masquerade", "nat.example"), "is not an IPv4 address", "PASV"),
        (("--ftp", ":0", "--ftp-shared-login", "PlcmSpIp"), "is not USER:PASSWORD", "PlcmSpIp"),
        (("--ftp-proxy-protocol", "10.0.0.10"), "the --ftp… options need --ftp", None),
        (
            ("--ftp", ":0", "--ftp-proxy-protocol", "balancer.example"),
            "error: --ftp-proxy-protocol 'balancer.example' is not an IP address or network",
            "10.0.0.10",
        ),
        (("--ftp", ":0", "--ftp-proxy-protocol", "10.0.0.0/33"), "is not an IP address", "10.0"),
        (("--ftp", ":0", "--ftp-shared-login", "anonymous:x"), "never accepted", "PlcmSpIp"),
        (
            ("--ftp", ":0", "--ftps", "--cert", "missing.crt", "--key", "missing.key"),
            "error: cannot read missing.crt: no such file",
            None,
        ),
    ],
)
def test_bad_ftp_options_are_refused_clearly(
    initialized: Path, args: tuple[str, ...], message: str, hint: str | None
) -> None:
    serve(initialized, "--ftp", "127.0.0.1:70000")  # what a refused start may leave, first
    before = files(initialized)
    result = serve(initialized, *args)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    if hint is not None:
        assert "hint:" in result.stderr
        assert hint in result.stderr.split("hint:", 1)[1]
    assert "fleetkey serving" not in result.stdout
    assert files(initialized) == before  # nothing written: no state changed


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root`` with its size and modification time (ns)."""
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    "args",
    [
        ("--ftp", ":0", "--ftp-max-connections", "many"),
        ("--ftp", ":0", "--ftp-max-logins", "0"),
        ("--ftp", ":0", "--ftp-max-connections", "0"),
        ("--ftp", ":0", "--ftp-data-timeout", "0.5"),
        ("--ftp", ":0", "--ftp-data-timeout", "soon"),
        ("--ftp", ":0", "--ftp-proxy-header-timeout", "0.5"),
        ("--ftp", ":0", "--ftp-proxy-header-timeout", "soon"),
    ],
)
def test_malformed_ftp_numbers_are_usage_errors(initialized: Path, args: tuple[str, ...]) -> None:
    result = serve(initialized, *args)
    assert result.returncode == 2
    assert "Invalid value for" in result.stderr


def test_an_ftp_port_in_use_is_said_with_what_to_do(initialized: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(initialized, "--ftp", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"error: cannot listen for FTP on 127.0.0.1:{port}: the port is already in use" in (
        result.stderr
    )
    assert "hint:" in result.stderr
