"""``fleetkey emulate``: many phones against a provisioning server, on a virtual clock.

Parse, call, render: the run itself (URL, reachability, signals, the fleet, its report) is
``emulate.runner``'s; the phones to run are chosen by ``cli.emulatedphones``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.emulatedphones import Settings, choose_phones, read_credentials
from fleetkey.cli.render import counts_text
from fleetkey.core.signing import PublicKey, TrustedKeys
from fleetkey.emulate import runner
from fleetkey.emulate.report import Failure
from fleetkey.emulate.runner import RunOptions, ServerUrl
from fleetkey.emulate.words import method_word
from fleetkey.errors import EmulationError, InputError
from fleetkey.store.inventory import check_timezone

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@click.command()
@click.option(
    "--server",
    required=True,
    metavar="URL",
    help="http://HOST:PORT[/<site>], https://HOST:PORT[/<site>], tftp://HOST:PORT[/<site>] or "
    "ftp://[USER:PASSWORD@]HOST:PORT[/<site>] to boot from (FTP: every phone logs in as USER, "
    "else with its --credentials login, else as PlcmSpIp); a last segment ending .cfg names "
    "the master configuration.",
)
@click.option(
    "--cacert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With an https:// --server: the phones trust this PEM certificate (the server's "
    "self-signed one, or its CA) instead of the system's CAs.",
)
@click.option(
    "--phones",
    type=click.IntRange(1, 60000),
    help="How many (default 10; with --macs, the file's; with --from-inventory, all of them).",
)
@click.option(
    "--macs",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="One MAC per line, or CSV lines mac,user,password: the phone then challenges SIP "
    "requests with a digest for that login.",
)
@click.option(
    "--models",
    metavar="MODEL:N%,...",
    help="The fleet's mix of models, e.g. VVX_500:60%,SPIP_670:40% (default: all VVX_500).",
)
@click.option(
    "--from-inventory",
    is_flag=True,
    help="The inventory's phones (their model, firmware, site and its time zone); read only.",
)
@click.option("--site", help="With --from-inventory: only this site's phones (serial or name).")
@click.option(
    "--credentials",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV lines mac,user,password: each phone's provisioning login (device.prov.user/"
    "password): over HTTP it answers the server's 401 with Digest or Basic, over FTP the phone "
    "logs in with it (unless the --server URL gives a login).",
)
@click.option(
    "--new-firmware",
    is_flag=True,
    help="The phones run another image than the server's: their first boot downloads it.",
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
    cacert: Path | None,
    phones: int | None,
    macs: Path | None,
    models: str | None,
    from_inventory: bool,
    site: str | None,
    credentials: Path | None,
    new_firmware: bool,
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

    The phones follow the master configuration they are served (the firmware image downloaded
    only when it changed, CONFIG_FILES, LICENSE_DIRECTORY, LOG_FILE_DIRECTORY) and the license
    rules R1-R9: they check their keys at the license polling time, reboot on expiry (never
    during a call), and answer SIP NOTIFY check-sync. The virtual clock runs at SPEED; the run
    lasts DURATION real seconds. Exit 1 when nothing listens at SERVER or every phone failed.
    """
    url = ServerUrl.parse(server)
    if from_inventory and (macs is not None or models is not None):
        raise click.UsageError("--from-inventory takes the phones' MACs and models from the store: "
                               "give --macs and --models without it")  # fmt: skip
    match = _HHMM.fullmatch(license_time)
    if match is None:
        raise InputError(f"--license-time {license_time!r} is not HH:MM")
    try:
        start = datetime.fromisoformat(clock_start) if clock_start else env.clock.now()
    except ValueError as exc:
        raise InputError(f"--clock-start {clock_start!r} is not an ISO date-time") from exc
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
    settings = Settings(
        timezone,
        clock_time(int(match.group(1)), int(match.group(2))),
        always_reboot,
        tag_serial,
    )
    chosen = choose_phones(
        env,
        settings,
        phones=phones,
        macs=macs,
        models=models,
        from_inventory=from_inventory,
        site=site,
    )
    logins = read_credentials(credentials) if credentials is not None else {}
    options = RunOptions(
        start=start,
        speed=speed,
        duration_s=duration,
        until_booted=until_booted,
        calls_per_hour=calls_per_hour,
        sip_port=sip_port or None,
        concurrency=concurrency,
        new_firmware=new_firmware,
        ca_file=cacert,
    )
    outcome = runner.run(
        url,
        [c.config for c in chosen],
        verifier,
        options,
        sip_logins=[c.login for c in chosen],
        http_logins=logins,
    )
    if report_file is not None:
        report_file.write_text(json.dumps(outcome.document, indent=1) + "\n", encoding="utf-8")
    if as_json:
        env.print_json(outcome.summary)
    else:
        _show(env, outcome.summary)
    if outcome.failure is not None:
        raise EmulationError(
            outcome.failure.line,
            hint=_failure_hint(outcome.failure, url.redacted, credentials, url.login),
        )


def _failure_hint(
    failed: Failure,
    server: str,
    credentials: Path | None,
    url_login: tuple[str, str] | None = None,
) -> str:
    """What to do: the hint follows the answers the phones got (a refused login can be
    answered 401 again or, after too many, 403), not only the first of them."""
    refused = failed.statuses & {401, 403}
    if refused and credentials is not None:
        return f"the server refused the logins of {credentials}: are they the inventory's?"
    if refused and url_login is not None:
        return (
            f"the server refused the login in the URL ({url_login[0]}): is it the one "
            "serve --ftp-shared-login names (USER:PASSWORD)?"
        )
    if 401 in refused:
        return "the server asks the phones to log in: give --credentials FILE (mac,user,password)"
    if refused and server.startswith("ftp://"):
        return (
            "the server refused the phones' FTP logins: give --credentials FILE "
            "(mac,user,password), a login in the URL, or serve --ftp-shared-login"
        )
    if refused:
        return (
            "the server refuses these phones: are they in its inventory (serve --unknown "
            "serve answers phones it does not know)?"
        )
    return f"is the server at {server} running and serving?"


def _show(env: Env, result: dict[str, Any]) -> None:
    """One row per figure: the counts by reason and status wrap, never cut (at 80 columns a
    row of seven columns cut "reboots by reason")."""
    table = Table(show_header=False)
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    rows = [
        ("phones", f"{result['phones']:,}"),
        ("booted", f"{result['booted']:,} (failed: {result['phones_failed']:,})"),
        ("boots", f"{result['boots']:,}"),
        ("requests", f"{result['requests']:,} ({result['requests_per_s']:,.0f}/s)"),
        (f"answers ({result['protocol'].upper()})", counts_text(result["answers"])),
        ("reboots by reason", counts_text(result["reboots_by_reason"])),
        ("site license expiry", counts_text(result["site_license_expiry"])),
        (
            "firmware downloads",
            f"{result['firmware_downloads']:,} ({result['firmware_bytes'] / 1e6:,.1f} MB)",
        ),
        ("virtual time now", result["virtual_now"]),
    ]
    for name, value in rows:
        table.add_row(name, value)
    env.out.print(table)
    if result["booted"] and set(result["site_license_expiry"]) == {"none"}:
        env.out.print(
            "warning: no phone holds a site license: none was served to them (see the 403s "
            "and 404s above, or `fleetkey fetches --path '*license.cfg'`)",
            markup=False,
            soft_wrap=False,  # wrapped at the terminal's width, between words
        )
    env.out.print(_note(result["protocol"]), markup=False, soft_wrap=False)


def _note(protocol: str) -> str:
    """How the server records these boots, over the protocol they went over (a User-Agent
    marks them over HTTP only)."""
    if protocol in ("http", "https"):
        marked = f"over {protocol.upper()} with a User-Agent ending Emulated/fleetkey"
    else:
        words = f"{method_word(protocol, 'GET')} and {method_word(protocol, 'PUT')}"
        marked = f"as {words}; {protocol.upper()} has no User-Agent: nothing marks them emulated"
    return (
        f"note: the server records emulated boots like real ones ({marked}): against a live "
        "server they count as the fetches of those MACs, deliveries included; the inventory's "
        "models and firmware are left as they are"
    )
