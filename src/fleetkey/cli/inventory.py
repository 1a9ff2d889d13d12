"""``fleetkey sites`` and ``fleetkey phones``: the inventory."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from fleetkey.cli.context import Env, pass_env
from fleetkey.core.rollout.windows import Window
from fleetkey.store import inventory
from fleetkey.store.records import Site, phone_json, site_json


@click.group()
def sites() -> None:
    """Sites: a serial, a time zone and a maintenance window for reboots."""


@sites.command("add")
@click.argument("serial")
@click.option("--name", required=True, help="A name operators recognize.")
@click.option("--tz", "timezone", required=True, help="IANA time zone, e.g. Europe/Berlin.")
@click.option(
    "--window",
    required=True,
    metavar="HH:MM-HH:MM",
    help="Maintenance window in local time; may wrap midnight (22:00-05:00).",
)
@click.option("--contact", help="Who to call about this site.")
@click.option("--json", "as_json", is_flag=True, help="Print the site as JSON.")
@pass_env
def add_site(
    env: Env, serial: str, name: str, timezone: str, window: str, contact: str | None, as_json: bool
) -> None:
    """Add site SERIAL (12 hex digits, the Serial of its site license)."""
    parsed = Window.parse(window)
    with env.store().transaction() as session:
        site = inventory.add_site(
            session, env.clock, env.actor, Site(serial, name, timezone, parsed, contact)
        )
    if as_json:
        env.print_json(site_json(site))
        return
    env.out.print(
        f"added site {site.serial} ({escape(site.name)}, {site.timezone}, window {site.window})"
    )


@sites.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the sites as JSON.")
@pass_env
def list_sites(env: Env, as_json: bool) -> None:
    """List the sites."""
    with env.store().transaction() as session:
        found = inventory.sites(session)
    if as_json:
        env.print_json([site_json(site) for site in found])
        return
    table = Table("serial", "name", "time zone", "window", "contact")
    for site in found:
        table.add_row(  # names and contacts are text, never rich markup
            site.serial,
            escape(site.name),
            site.timezone,
            str(site.window),
            escape(site.contact or ""),
        )
    env.out.print(table)


@click.group()
def phones() -> None:
    """Phones: MAC, site, model, credentials, where and when last seen."""


@phones.command("import")
@click.argument(
    "csv_file", metavar="CSV", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_env
def import_phones(env: Env, csv_file: Path, as_json: bool) -> None:
    """Add or update phones from a CSV: mac,site,model[,firmware,user,password,contact].

    One transaction: any bad row is reported with its line number and nothing is written.
    """
    with env.store().transaction() as session:
        summary = inventory.import_phones(
            session, env.clock, env.actor, csv_file.read_bytes(), source=str(csv_file)
        )
    if as_json:
        env.print_json(asdict(summary))
        return
    env.out.print(
        f"imported {escape(str(csv_file))}: {summary.added} added, {summary.updated} updated"
    )


@phones.command("list")
@click.option("--site", help="Only the phones of this site.")
@click.option("--json", "as_json", is_flag=True, help="Print the phones as JSON.")
@pass_env
def list_phones(env: Env, site: str | None, as_json: bool) -> None:
    """List phones, optionally of one site."""
    with env.store().transaction() as session:
        found = inventory.phones(session, site)
    if as_json:
        env.print_json([phone_json(phone) for phone in found])
        return
    table = Table("mac", "site", "model", "firmware", "last seen", "address")
    for phone in found:
        seen = phone.last_seen_at.isoformat(timespec="seconds") if phone.last_seen_at else ""
        table.add_row(  # model and firmware may come from phones' User-Agents: never markup
            phone.mac,
            phone.site,
            escape(phone.model),
            escape(phone.firmware or ""),
            seen,
            escape(phone.last_address or ""),
        )
    env.out.print(table)


@phones.command("show")
@click.argument("mac")
@click.option("--json", "as_json", is_flag=True, help="Print the phone as JSON.")
@pass_env
def show_phone(env: Env, mac: str, as_json: bool) -> None:
    """Everything the store knows about one phone."""
    with env.store().transaction() as session:
        phone = inventory.phone(session, mac)
    document = phone_json(phone)
    if as_json:
        env.print_json(document)
        return
    table = Table("field", "value", show_header=False)
    for name, value in document.items():
        table.add_row(name, "" if value is None else escape(str(value)))
    env.out.print(table)
