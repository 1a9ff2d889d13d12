"""``fleetkey serve``'s FTP options: parsed here, so the serve command stays one screen."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fleetkey.errors import InputError
from fleetkey.serve.ftp.logins import parse_shared_login
from fleetkey.serve.ftp.proxied import HEADER_S
from fleetkey.serve.ftp.server import FtpSettings
from fleetkey.serve.listen import parse_address

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_AT = "127.0.0.1:2121"
FTPS_HINT = (
    "pass the PEM certificate (chain) and its key, as for --https: --cert server.crt --key "
    "server.key; a self-signed pair for a trial: openssl req -x509 -newkey rsa:2048 -nodes "
    "-days 365 -subj /CN=provisioning.example -keyout server.key -out server.crt"
)


def _count(flag: str, default: int, minimum: int, help_text: str) -> Callable[[F], F]:
    """A whole-number limit of at least ``minimum`` (click refuses others, exit 2)."""
    return click.option(
        flag, default=default, show_default=True, type=click.IntRange(minimum), help=help_text
    )


_OPTIONS = [
    click.option(
        "--ftp",
        "ftp",
        is_flag=False,
        flag_value=DEFAULT_AT,
        metavar="[HOST:PORT|PORT]",
        help=f"Serve FTP as well (alone: {DEFAULT_AT}; port 21 needs CAP_NET_BIND_SERVICE).",
    ),
    click.option(
        "--ftps",
        is_flag=True,
        help="Offer explicit FTPS on the FTP port (AUTH TLS, PBSZ, PROT P); needs --cert, --key.",
    ),
    click.option(
        "--ftps-required",
        is_flag=True,
        help="With --ftps: refuse logins and data connections that are not TLS.",
    ),
    click.option(
        "--ftp-passive",
        metavar="FIRST-LAST",
        help="Ports for passive data connections, e.g. 30000-30999 (default: any free port).",
    ),
    click.option(
        "--ftp-masquerade",
        metavar="ADDRESS",
        help="The IPv4 address PASV tells clients to connect to (this server behind NAT).",
    ),
    click.option(
        "--ftp-shared-login",
        metavar="USER:PASSWORD",
        help="Accept this shared login too (Polycom's factory PlcmSpIp:PlcmSpIp); the phone is "
        "the MAC its first per-phone file names. Off by default; anonymous is never accepted.",
    ),
    click.option(
        "--ftp-proxy-protocol",
        "ftp_proxy_protocol",
        multiple=True,
        metavar="CIDR",
        help="Read the PROXY protocol header (v1 or v2: HAProxy's send-proxy) on FTP control "
        "connections from this proxy address or network (repeatable): the session is the "
        "client's it names; a connection from there without a valid one is closed.",
    ),
    click.option(
        "--ftp-proxy-header-timeout",
        default=HEADER_S,
        show_default=True,
        type=click.FloatRange(1),
        metavar="SECONDS",
        help="With --ftp-proxy-protocol: a connection whose PROXY header is not whole within "
        "this long is closed.",
    ),
    _count(
        "--ftp-max-connections",
        512,
        1,
        "FTP control and data connections at once; beyond it 421 with a retry hint.",
    ),
    _count(
        "--ftp-per-address",
        32,
        1,
        "FTP connections at once from one address (a NAT may hide several phones).",
    ),
    _count(
        "--ftp-max-logins",
        256,
        1,
        "FTP sessions connected but not logged in yet; beyond it 421 with a retry hint.",
    ),
    click.option(
        "--ftp-idle-timeout",
        default=60.0,
        show_default=True,
        type=click.FloatRange(1),
        metavar="SECONDS",
        help="An FTP session with no command for this long is closed (421).",
    ),
    click.option(
        "--ftp-data-timeout",
        default=30.0,
        show_default=True,
        type=click.FloatRange(1),
        metavar="SECONDS",
        help="An FTP data connection that moves no byte, or does not come, for this long is "
        "closed (421; the transfer is recorded as cut).",
    ),
]


def ftp_options(command: F) -> F:
    """Adds the FTP options to ``command``."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def ftp_settings(
    *,
    ftp: str | None,
    ftps: bool,
    ftps_required: bool,
    ftp_passive: str | None,
    ftp_masquerade: str | None,
    ftp_shared_login: str | None,
    ftp_proxy_protocol: tuple[str, ...],
    ftp_proxy_header_timeout: float,
    ftp_max_connections: int,
    ftp_per_address: int,
    ftp_max_logins: int,
    ftp_idle_timeout: float,
    ftp_data_timeout: float,
    cert: Path | None,
    key: Path | None,
) -> tuple[tuple[str, int] | None, FtpSettings]:
    """Where FTP listens (None: not at all) and how; InputError names the option at fault."""
    given = any((ftps, ftps_required, ftp_passive, ftp_masquerade, ftp_shared_login,
                 ftp_proxy_protocol))  # fmt: skip
    if ftp is None:
        if given:
            raise InputError("the --ftp… options need --ftp [HOST:PORT]", field="ftp")
        return None, FtpSettings()
    at = parse_address(ftp, 2121, field="ftp")
    if ftps_required and not ftps:
        raise InputError(
            "--ftps-required goes with --ftps",
            hint="add --ftps --cert FILE --key FILE, or leave --ftps-required out",
            field="ftps-required",
        )
    tls = None
    if ftps:
        if cert is None or key is None:
            missing = " and ".join(f"--{n}" for n, v in (("cert", cert), ("key", key)) if v is None)
            raise InputError(
                f"--ftps needs --cert and --key ({missing} not given)",
                hint=FTPS_HINT,
                field="ftps",
            )
        tls = (cert, key)
    shared = None
    if ftp_shared_login is not None:
        try:
            shared = parse_shared_login(ftp_shared_login)
        except ValueError as exc:
            raise InputError(
                f"--ftp-shared-login: {exc}",
                hint="for example PlcmSpIp:PlcmSpIp",
                field="ftp-shared-login",
            ) from exc
    return at, FtpSettings(
        tls=tls,
        tls_required=ftps_required,
        passive=_port_range(ftp_passive) if ftp_passive is not None else None,
        masquerade=_masquerade(ftp_masquerade) if ftp_masquerade is not None else None,
        shared_login=shared,
        proxy_from=tuple(_proxy(text) for text in ftp_proxy_protocol),
        proxy_header_s=ftp_proxy_header_timeout,
        max_connections=ftp_max_connections,
        per_address=ftp_per_address,
        max_logins=ftp_max_logins,
        idle_s=ftp_idle_timeout,
        data_s=ftp_data_timeout,
    )


def _port_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not (sep and first.isdigit() and last.isdigit()):
        raise InputError(
            f"--ftp-passive {text!r} is not FIRST-LAST",
            hint="for example 30000-30999",
            field="ftp-passive",
        )
    low, high = int(first), int(last)
    if not 1024 <= low <= high <= 65535:
        raise InputError(
            f"--ftp-passive {text!r}: ports must be 1024-65535, the first not above the last",
            hint="for example 30000-30999",
            field="ftp-passive",
        )
    return low, high


def _masquerade(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError as exc:
        raise InputError(
            f"--ftp-masquerade {text!r} is not an IPv4 address",
            hint="PASV can only name an IPv4 address, e.g. 203.0.113.7",
            field="ftp-masquerade",
        ) from exc


def _proxy(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise InputError(
            f"--ftp-proxy-protocol {text!r} is not an IP address or network",
            hint="the balancer's address, e.g. 10.0.0.10 or 10.0.0.0/29",
            field="ftp-proxy-protocol",
        ) from exc
