"""``fleetkey sites`` and ``fleetkey phones``: the inventory."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Final

import click
from rich.markup import escape

from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.phoneview import print_phone
from fleetkey.cli.render import moment_text
from fleetkey.cli.tables import (
    Column,
    Kind,
    More,
    Output,
    limit_for,
    limit_option,
    output,
    print_page_line,
    print_rows,
    table_options,
)
from fleetkey.clock import today
from fleetkey.core.rollout.windows import Window
from fleetkey.store import inventory, pages
from fleetkey.store.licensestate import key_states
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


SITE_COLUMNS: Final = (
    Column("serial", Kind.ID),
    Column("name"),
    Column("time zone", Kind.ID, drop=2),
    Column("window", Kind.ID),
    Column("contact", drop=1),
)


@sites.command("list")
@click.option("--after", metavar="SERIAL", help="Start after this site serial (the next page).")
@limit_option(scripts=None)
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print the sites as JSON.")
@pass_env
def list_sites(
    env: Env, after: str | None, limit: int | None, wide: bool, as_csv: bool, as_json: bool
) -> None:
    """List the sites by serial."""
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    with env.store().transaction() as session:
        page = pages.sites(session, after=after, limit=limit_for(how, limit, scripts=None))
    if how is Output.JSON:
        env.print_json([site_json(site) for site in page.items])
    else:
        rows = [
            [site.serial, site.name, site.timezone, str(site.window), site.contact or ""]
            for site in page.items
        ]
        print_rows(env.out, SITE_COLUMNS, rows, how)
    last = page.last
    more = More(page.left, "sites", f"--after {last.serial}" if last else None)
    print_page_line(env.out, env.err, more, how)


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


PHONE_COLUMNS: Final = (
    Column("mac", Kind.ID),
    Column("site", Kind.ID),
    Column("model", Kind.WORDS, drop=3),
    Column("firmware", Kind.ID, drop=4),
    Column("last seen (UTC)", Kind.ID, drop=2),
    Column("address", Kind.ID, drop=5),
    Column("contact", drop=6),
)


@phones.command("list")
@click.option("--site", help="Only the phones of this site.")
@click.option("--after", metavar="MAC", help="Start after this MAC (the next page).")
@limit_option(scripts=None)
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print the phones as JSON.")
@pass_env
def list_phones(
    env: Env,
    site: str | None,
    after: str | None,
    limit: int | None,
    wide: bool,
    as_csv: bool,
    as_json: bool,
) -> None:
    """List phones by MAC, optionally of one site, a page at a time."""
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    with env.store().transaction() as session:
        page = pages.phones(
            session, site=site, after=after, limit=limit_for(how, limit, scripts=None)
        )
    if how is Output.JSON:
        env.print_json([phone_json(phone) for phone in page.items])
    else:
        rows = [
            [
                phone.mac,
                phone.site,
                phone.model,
                phone.firmware or "",
                moment_text(phone.last_seen_at),
                phone.last_address or "",
                phone.sip_contact or "",
            ]
            for phone in page.items
        ]
        print_rows(env.out, PHONE_COLUMNS, rows, how)
    last = page.last
    more = More(page.left, "phones", f"--after {last.mac}" if last else None)
    print_page_line(env.out, env.err, more, how)


@phones.command("show")
@click.argument("mac")
@click.option("--json", "as_json", is_flag=True, help="Print the phone as JSON.")
@pass_env
def show_phone(env: Env, mac: str, as_json: bool) -> None:
    """Everything the store knows about one phone, and its license state: the keys it should
    have (its own, its site's) and the version of each it last fetched, when, over what."""
    on = today(env.clock)
    with env.store().transaction() as session:
        phone = inventory.phone(session, mac)
        states = key_states(session, phone)
    catalog = env.data.catalog()
    if as_json:
        licenses = [state.to_json(catalog, on) for state in states]
        env.print_json(phone_json(phone) | {"licenses": licenses})
        return
    print_phone(env.out, phone, states, catalog, on)
