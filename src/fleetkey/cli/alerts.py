"""``fleetkey alerts``: evaluate, record and deliver alerts; ``alerts webhook-key``."""

from __future__ import annotations

from datetime import date
from typing import Any, Final

import click
from rich.text import Text

from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.render import moment_text
from fleetkey.cli.tables import Cell, Column, Kind, Output, output, print_rows, table_options
from fleetkey.core.alerts import STAGES
from fleetkey.errors import InputError
from fleetkey.ops.alerts import AlertSettings, check
from fleetkey.ops.delivery import Deliverer, SmtpSettings, public_key_pem
from fleetkey.store import alerts as stored_alerts
from fleetkey.store.alerts import StoredAlert

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
MESSAGE_FLOOR: Final = 26  # a message wraps in lines of at least this: the time goes first
ALERT_COLUMNS: Final = (
    Column("severity", Kind.ID),
    Column("key", Kind.ID),  # whole: `fleetkey alerts ack KEY` takes it as printed
    Column("subject", Kind.WORDS, drop=1),
    Column("since (UTC)", Kind.ID, drop=2),
    Column("message", floor=MESSAGE_FLOOR),
)


def _severity(alert: StoredAlert) -> Text:
    if alert.resolved_at:
        return Text("resolved")
    if alert.silenced:
        till = f"{alert.acked_until:%Y-%m-%d %H:%M}" if alert.acked_until else "resolved"
        return Text(f"{alert.severity}, silenced until {till}", style="dim")
    return Text(alert.severity, style=SEVERITY_STYLE.get(alert.severity, ""))


def _stages(text: str) -> tuple[int, ...]:
    try:
        stages = tuple(
            sorted({int(part) for part in text.split(",") if part.strip()}, reverse=True)
        )
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of days") from exc
    if not stages or min(stages) < 0:
        raise click.BadParameter("stages are days before expiry, 0 or more")
    return stages


def _smtp(text: str | None, sender: str) -> SmtpSettings | None:
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--smtp {text!r} is not HOST:PORT")
    return SmtpSettings(host, int(port), sender)


@click.group(invoke_without_command=True)
@click.option(
    "--stages",
    default=",".join(map(str, STAGES)),
    show_default=True,
    help="Days before expiry at which lead-time alerts fire.",
)
@click.option(
    "--capacity",
    type=float,
    default=None,
    help="Server capacity (req/s) for the storm forecast (default: measured).",
)
@click.option(
    "--webhook",
    "webhooks",
    multiple=True,
    metavar="URL",
    help="POST new and resolved alerts here (signed); repeatable.",
)
@click.option(
    "--mail-to",
    "recipients",
    multiple=True,
    metavar="ADDRESS",
    help="E-mail new and resolved alerts here; repeatable.",
)
@click.option("--smtp", default=None, metavar="HOST:PORT", help="The SMTP server for --mail-to.")
@click.option("--mail-from", default="fleetkey@localhost", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="List resolved alerts too.")
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@pass_env
def alerts(
    env: Env,
    ctx: click.Context,
    stages: str,
    capacity: float | None,
    webhooks: tuple[str, ...],
    recipients: tuple[str, ...],
    smtp: str | None,
    mail_from: str,
    show_all: bool,
    wide: bool,
    as_csv: bool,
    as_json: bool,
) -> None:
    """Evaluate alerts now, record them (deduplicated), deliver new and resolved ones, list."""
    if ctx.invoked_subcommand is not None:
        return
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    smtp_settings = _smtp(smtp, mail_from)
    if recipients and smtp_settings is None:
        raise InputError("--mail-to needs --smtp HOST:PORT")
    for url in webhooks:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"--webhook {url!r} is not an http:// or https:// URL")
    channels = [f"webhook:{url}" for url in webhooks] + [f"mail:{to}" for to in recipients]
    settings = AlertSettings(_stages(stages), capacity, channels)
    store = env.store()
    result, open_alerts = check(env.data, store, env.clock, env.keyring().trusted(), settings)
    report = Deliverer(env.data, smtp_settings).deliver_due(store, env.clock)
    if show_all:
        with store.transaction() as session:
            open_alerts = stored_alerts.listing(session, include_resolved=True)
    if how is Output.JSON:
        document: dict[str, Any] = {
            "fired": result.fired,
            "resolved": result.resolved,
            "alerts": [a.to_json() for a in open_alerts],
            "delivery": {
                "sent": report.sent,
                "retrying": report.retrying,
                "failed": report.failed,
                "errors": report.errors,
            },
        }
        env.print_json(document)
        return
    rows: list[list[Cell]] = [
        [
            _severity(alert),
            alert.key,  # what `alerts ack KEY` takes
            alert.subject,
            moment_text(alert.first_at)[:16],
            alert.message,
        ]
        for alert in open_alerts
    ]
    print_rows(env.out, ALERT_COLUMNS, rows, how, title=f"{len(open_alerts)} alert(s)")
    summary = env.err if how is Output.CSV else env.out  # CSV on stdout stays CSV
    summary.print(
        f"fired {len(result.fired)}, resolved {len(result.resolved)}; delivered "
        f"{report.sent}, retrying {report.retrying}, failed {report.failed}"
    )
    for error in report.errors:
        env.warn(error)


@alerts.command(name="ack")
@click.argument("key", metavar="KEY")
@click.option(
    "--until",
    metavar="DATE",
    help="Silence it to the end of DATE (YYYY-MM-DD, UTC); default: until it resolves.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the alert as JSON.")
@pass_env
def ack(env: Env, key: str, until: str | None, as_json: bool) -> None:
    """Silence the open alert KEY for a while (audited): it stays listed, marked silenced,
    nothing is delivered for it but its resolution, and once DATE has passed it fires again
    if it still holds. `fleetkey alerts --json` shows the keys."""
    day = None
    if until is not None:
        try:
            day = date.fromisoformat(until.strip())
        except ValueError as exc:
            raise click.BadParameter(
                f"{until!r} is not a date: expected YYYY-MM-DD", param_hint="'--until'"
            ) from exc
    with env.store().transaction() as session:
        alert = stored_alerts.ack(session, env.clock, env.actor, key, day)
    if as_json:
        env.print_json(alert.to_json())
        return
    till = f"until {until}" if until else "until it resolves"
    env.out.print(f"silenced {alert.kind} alert {alert.key} {till}", markup=False)


@alerts.command(name="webhook-key")
@click.option("--json", "as_json", is_flag=True, help='Print {"pem": …} as JSON.')
@pass_env
def webhook_key(env: Env, as_json: bool) -> None:
    """Print the public key (PEM) that webhook receivers verify signatures with."""
    env.data.require()
    pem = public_key_pem(env.data).decode()
    if as_json:
        env.print_json({"pem": pem})
        return
    click.echo(pem, nl=False)
