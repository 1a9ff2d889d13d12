"""A whole emulator run, as ``fleetkey emulate`` (or a program) asks for one: the server's URL
parsed once, the server checked reachable, the fleet built and run until its time is up, every
phone has booted or a signal stops it, and what came of it.

The command parses options and prints; this module owns the loop, the signals and the end
(aiohttp's ``AppRunner`` is the model: setup, run, cleanup in one place).

The server URL (``ServerUrl.parse``): ``http://HOST:PORT[/prefix]``, ``https://…`` (the
phones trusting ``RunOptions.ca_file``, else the system's CAs), ``tftp://HOST:PORT[/prefix]``
or ``ftp://[USER:PASSWORD@]HOST:PORT[/prefix]``, on this machine
(the phones live on loopback addresses, ``emulate.addresses``); a last path segment ending
``.cfg`` (5 characters or more) names the master configuration (domain.md §4).
"""

from __future__ import annotations

import asyncio
import resource
import signal
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import uvloop

from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.rules import SignatureVerifier
from fleetkey.emulate import ftp, http, tftp
from fleetkey.emulate.addresses import require_loopback
from fleetkey.emulate.clock import VirtualClock
from fleetkey.emulate.fleet import Fleet
from fleetkey.emulate.report import Failure, all_failed, report
from fleetkey.emulate.sockets import check_descriptors
from fleetkey.errors import InputError

PORTS: Final = {"http": 80, "https": 443, "tftp": 69, "ftp": 21}
FORMS: Final = {
    "http": "http://HOST:PORT[/prefix]",
    "https": "https://HOST:PORT[/prefix]",
    "tftp": "tftp://HOST:PORT[/prefix]",
    "ftp": "ftp://[USER:PASSWORD@]HOST:PORT[/prefix]",
}


@dataclass(frozen=True, slots=True)
class ServerUrl:
    """Where the phones boot from, and how."""

    text: str
    scheme: str  # http, https, tftp or ftp
    host: str
    port: int
    prefix: str = ""  # a path prefix (a site's directory)
    master: str | None = None  # a master configuration the URL names
    login: tuple[str, str] | None = None  # FTP: every phone logs in as this

    @classmethod
    def parse(cls, text: str, schemes: Sequence[str] = tuple(PORTS)) -> ServerUrl:
        """InputError for anything but a URL of one of ``schemes`` (http, tftp, ftp) of a
        host on this machine, or one whose port is no number from 0 to 65535."""
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            forms = [FORMS[scheme] for scheme in schemes]
            listed = forms[0] if len(forms) == 1 else f"{', '.join(forms[:-1])} or {forms[-1]}"
            raise InputError(f"--server {text!r} is not {listed}")
        try:
            port = parts.port
        except ValueError as exc:  # not a number, or out of range
            raise InputError(f"--server {text!r}: {exc}") from exc
        require_loopback(parts.hostname)
        prefix, master = split_master(parts.path)
        login = None
        if parts.scheme == "ftp" and parts.username is not None:
            login = (unquote(parts.username), unquote(parts.password or ""))
        return cls(
            text, parts.scheme, parts.hostname, port or PORTS[parts.scheme], prefix, master, login
        )

    @property
    def redacted(self) -> str:
        """The URL as given, without its login: what may be shown and saved."""
        parts = urlsplit(self.text)
        if parts.username is None:
            return self.text
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def split_master(path: str) -> tuple[str, str | None]:
    """A server URL's path as (prefix, master configuration it names, if any): a last segment
    ending ``.cfg`` of at least 5 characters names one (domain.md §4)."""
    folder, _, last = path.rstrip("/").rpartition("/")
    if last.lower().endswith(".cfg") and len(last) >= 5:
        return folder, last
    return path, None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How the fleet runs: its clock, how long, what its phones do."""

    start: datetime
    speed: float = 1.0
    duration_s: float = 30.0
    until_booted: bool = False
    calls_per_hour: float = 0.0
    sip_port: int | None = 5060  # None: no SIP
    concurrency: int = 256
    new_firmware: bool = False
    ca_file: Path | None = None  # https: the certificate (or CA) the phones trust

    def __post_init__(self) -> None:
        if self.speed <= 0:  # before anything starts (the fleet's clock would refuse it)
            raise InputError(f"virtual clock speed {self.speed} must be above 0", field="speed")


@dataclass
class Outcome:
    """What a run came to: the fleet (every phone's story), its report, why all failed."""

    fleet: Fleet
    elapsed_s: float
    document: dict[str, Any] = field(default_factory=dict)  # emulate.report.report, + usage
    failure: Failure | None = None

    @property
    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = self.document["summary"]
        return summary


def run(
    server: ServerUrl,
    phones: Sequence[PhoneConfig],
    verifier: SignatureVerifier,
    options: RunOptions,
    *,
    sip_logins: Sequence[tuple[str, str] | None] | None = None,
    http_logins: Mapping[str, tuple[str, str]] | None = None,
) -> Outcome:
    """Run the phones against ``server`` (blocking, on uvloop) until the run ends; SIGINT and
    SIGTERM end it early. InputError, before anything opens, when the open-file limit cannot
    hold the phones; EmulationError when nothing answers at ``server``."""
    check_descriptors(
        len(phones),
        options.concurrency,
        sip=options.sip_port is not None,
        per_boot=2 if server.scheme == "ftp" else 1,  # FTP: a control and a data connection
    )
    if options.ca_file is not None and server.scheme != "https":
        raise InputError(
            f"--cacert goes with an https:// --server, not {server.scheme}://", field="cacert"
        )
    tls = http.tls_context(options.ca_file) if server.scheme == "https" else None
    return uvloop.run(_run(server, phones, verifier, options, sip_logins, http_logins, tls))


async def _run(
    server: ServerUrl,
    phones: Sequence[PhoneConfig],
    verifier: SignatureVerifier,
    options: RunOptions,
    sip_logins: Sequence[tuple[str, str] | None] | None,
    http_logins: Mapping[str, tuple[str, str]] | None,
    tls: ssl.SSLContext | None,
) -> Outcome:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # before the phones, whose making takes
        loop.add_signal_handler(signum, stopping.set)  # seconds for tens of thousands
    try:
        await _check_reachable(server, tls)
        fleet = Fleet(
            list(phones),
            verifier,
            VirtualClock(options.start, options.speed),
            host=server.host,
            port=server.port,
            prefix=server.prefix,
            master=server.master,
            new_firmware=options.new_firmware,
            http_logins=http_logins,
            tftp=server.scheme == "tftp",
            sip_port=options.sip_port,
            calls_per_hour=options.calls_per_hour,
            concurrency=options.concurrency,
            sip_logins=list(sip_logins) if sip_logins is not None else None,
            stopping=stopping,
            ftp=_ftp_logins(server, http_logins or {}) if server.scheme == "ftp" else None,
            tls=tls,
        )
        began = time.monotonic()
        await fleet.run(options.duration_s, until_booted=options.until_booted)
        elapsed = time.monotonic() - began
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    document = report(fleet, elapsed)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    document["summary"]["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    document["summary"]["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    return Outcome(fleet, elapsed, document, all_failed(fleet))


async def _check_reachable(server: ServerUrl, tls: ssl.SSLContext | None) -> None:
    if server.scheme in ("http", "https"):
        await http.check_reachable(server.host, server.port, tls=tls)
    elif server.scheme == "ftp":
        await ftp.check_reachable(server.host, server.port)
    else:
        await tftp.check_reachable(server.host, server.port)


def _ftp_logins(server: ServerUrl, logins: Mapping[str, tuple[str, str]]) -> ftp.FtpLogins:
    """The URL's login for every phone; without one, each phone's own (its ``--credentials``
    line's), else Polycom's factory ``PlcmSpIp``."""
    if server.login is not None:
        return ftp.FtpLogins(shared=server.login)
    return ftp.FtpLogins(per_phone=dict(logins))
