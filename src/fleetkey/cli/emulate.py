"""``fleetkey emulate``: many phones against a provisioning server, on a virtual clock."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

import click
import uvloop
from rich.table import Table

from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.render import counts_text
from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.naming import normalize_mac
from fleetkey.core.signing import PublicKey, TrustedKeys
from fleetkey.emulate.clock import VirtualClock
from fleetkey.emulate.fleet import Fleet
from fleetkey.emulate.ftp import FtpLogins
from fleetkey.emulate.report import report
from fleetkey.errors import InputError
from fleetkey.store.inventory import check_timezone

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def _macs(path: Path | None, count: int) -> list[tuple[str, tuple[str, str] | None]]:
    """MACs, each with its SIP digest login when the line carries one (``mac,user,password``)."""
    if path is None:
        return [(f"0004f2{0x100000 + i:06x}", None) for i in range(count)]
    found: list[tuple[str, tuple[str, str] | None]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cells = [cell.strip() for cell in line.split(",")]
        if not cells[0] or cells[0].lower() == "mac" or cells[0].startswith("#"):
            continue
        try:
            mac = normalize_mac(cells[0])
        except InputError as exc:
            raise InputError(f"{path} line {number}: {exc.message}") from None
        login = (cells[1], cells[2]) if len(cells) >= 3 and cells[1] and cells[2] else None
        found.append((mac, login))
    if len(found) < count:
        raise InputError(f"{path} has {len(found)} MACs, --phones asks for {count}")
    return found[:count]


@click.command()
@click.option(
    "--server",
    required=True,
    metavar="URL",
    help="http://HOST:PORT[/<site>], tftp://HOST:PORT[/<site>] or "
    "ftp://[USER:PASSWORD@]HOST:PORT[/<site>] to boot from (FTP: every phone logs in as USER, "
    "else with its --macs login, else as PlcmSpIp).",
)
@click.option(
    "--phones", default=10, show_default=True, type=click.IntRange(1, 60000), help="How many."
)
@click.option(
    "--macs",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="One MAC per line, or CSV lines mac,user,password: the phone then challenges SIP "
    "requests with a digest for that login.",
)
@click.option("--clock-start", metavar="ISO", help="Virtual time at start (default: now).")
@click.option(
    "--speed", default=1.0, show_default=True, type=float, help="Virtual seconds per real second."
)
@click.option(
    "--duration", default=30.0, show_default=True, type=float, help="Real seconds to run."
)
@click.option(
    "--calls-per-hour",
    default=0.0,
    show_default=True,
    type=float,
    help="Calls each phone starts per virtual hour.",
)
@click.option(
    "--sip-port",
    default=5060,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Each phone's SIP port on its address (0: no SIP).",
)
@click.option("--always-reboot", is_flag=True, help="checkSync.alwaysReboot=1 on every phone.")
@click.option(
    "--tag-serial",
    is_flag=True,
    help="device.prov.tagSerialNo=1 on every phone: (SN:<mac>) in the User-Agent.",
)
@click.option(
    "--license-time",
    default="02:00",
    show_default=True,
    metavar="HH:MM",
    help="license.polling.time.",
)
@click.option("--timezone", default="UTC", show_default=True, help="The phones' time zone.")
@click.option(
    "--concurrency",
    default=256,
    show_default=True,
    type=click.IntRange(1),
    help="Boots in progress at once.",
)
@click.option(
    "--trust",
    "trust_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public key PEM the phones trust (default: the data directory's keyring).",
)
@click.option(
    "--until-booted",
    is_flag=True,
    help="Stop once every phone has finished its first boot (at most --duration).",
)
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the per-phone report here (JSON).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_env
def emulate(
    env: Env,
    server: str,
    phones: int,
    macs: Path | None,
    clock_start: str | None,
    speed: float,
    duration: float,
    calls_per_hour: float,
    sip_port: int,
    always_reboot: bool,
    tag_serial: bool,
    license_time: str,
    timezone: str,
    concurrency: int,
    trust_files: tuple[Path, ...],
    until_booted: bool,
    report_file: Path | None,
    as_json: bool,
) -> None:
    """Emulate PHONES phones booting from SERVER, each on a loopback address of its own.

    The phones follow the license rules R1-R9: they fetch their files at boot, check their keys
    at the license polling time, reboot on expiry (never during a call), and answer SIP NOTIFY
    check-sync. The virtual clock runs at SPEED; the run lasts DURATION real seconds.
    """
    parts = urlsplit(server)
    if parts.scheme not in ("http", "tftp", "ftp") or not parts.hostname:
        raise InputError(
            f"--server {server!r} is not http://HOST:PORT[/prefix], tftp://HOST:PORT or "
            "ftp://[USER:PASSWORD@]HOST:PORT"
        )
    match = _HHMM.fullmatch(license_time)
    if match is None:
        raise InputError(f"--license-time {license_time!r} is not HH:MM")
    try:
        start = datetime.fromisoformat(clock_start) if clock_start else env.clock.now()
    except ValueError:
        raise InputError(f"--clock-start {clock_start!r} is not an ISO date-time") from None
    check_timezone(timezone)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if trust_files:
        verifier = TrustedKeys(
            (path.name, PublicKey.from_pem(path.read_bytes(), source=str(path)))
            for path in trust_files
        )
    else:
        env.data.require()
        verifier = env.keyring().trusted()
    chosen = _macs(macs, phones)
    configs = [
        PhoneConfig(
            mac,
            timezone=timezone,
            license_polling_time=clock_time(int(match.group(1)), int(match.group(2))),
            always_reboot=always_reboot,
            tag_serial=tag_serial,
        )
        for mac, _ in chosen
    ]
    fleet_clock = VirtualClock(start, speed)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):  # before the phones, whose making takes
            loop.add_signal_handler(signum, stopping.set)  # seconds for tens of thousands
        fleet = Fleet(
            configs,
            verifier,
            fleet_clock,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or {"http": 80, "tftp": 69, "ftp": 21}[parts.scheme],
            prefix=parts.path,
            tftp=parts.scheme == "tftp",
            sip_port=sip_port or None,
            calls_per_hour=calls_per_hour,
            concurrency=concurrency,
            sip_logins=[login for _, login in chosen],
            stopping=stopping,
            ftp=ftp_logins(parts, chosen) if parts.scheme == "ftp" else None,
        )
        holder.append(fleet)
        began = time.monotonic()
        await fleet.run(duration, until_booted=until_booted)
        return time.monotonic() - began

    holder: list[Fleet] = []
    elapsed = uvloop.run(main())
    document = report(holder[0], elapsed)
    if report_file is not None:
        report_file.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    result = document["summary"]
    if as_json:
        env.print_json(result)
        return
    table = Table("phones", "booted", "boots", "requests", "req/s", "reboots by reason", "answers")
    table.add_row(
        str(result["phones"]),
        str(result["booted"]),
        str(result["boots"]),
        str(result["requests"]),
        f"{result['requests_per_s']:,.0f}",
        counts_text(result["reboots_by_reason"]),
        counts_text(result["answers_by_status"]),
    )
    env.out.print(table)
    env.out.print(
        f"virtual time now {result['virtual_now']}; "
        f"site license expiry: {counts_text(result['site_license_expiry'])}"
    )


def ftp_logins(parts: SplitResult, chosen: list[tuple[str, tuple[str, str] | None]]) -> FtpLogins:
    """The URL's login for every phone; without one, each phone's own (its ``--macs`` line's),
    else Polycom's factory ``PlcmSpIp``."""
    if parts.username is not None:
        return FtpLogins(shared=(unquote(parts.username), unquote(parts.password or "")))
    return FtpLogins(per_phone={mac: login for mac, login in chosen if login is not None})
