"""``fleetkey sites`` and ``fleetkey phones``: the inventory.

A site is named by its serial or its name wherever one is an argument (SITE, ``--site``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click
from rich.markup import escape

from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.phoneview import print_phone
from fleetkey.cli.render import moment_text
from fleetkey.cli.tables import (
    CONTACT_FLOOR,
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
from fleetkey.store import inventory, pages, phonestate
from fleetkey.store.licensestate import key_states
from fleetkey.store.records import Site, phone_json, site_json

SITE_HELP = "the site's serial or name"


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
    Column("contact", drop=1, floor=CONTACT_FLOOR),
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


@sites.command("update")
@click.argument("site", metavar="SITE")
@click.option("--name", help="A new name (unique among the sites).")
@click.option("--tz", "timezone", help="A new IANA time zone.")
@click.option("--window", metavar="HH:MM-HH:MM", help="A new maintenance window, local time.")
@click.option("--contact", help="A new contact; '' clears it.")
@click.option("--json", "as_json", is_flag=True, help="Print the site and the changes as JSON.")
@pass_env
def update_site(
    env: Env,
    site: str,
    name: str | None,
    timezone: str | None,
    window: str | None,
    contact: str | None,
    as_json: bool,
) -> None:
    """Change the name, time zone, window or contact of SITE (its serial or name).

    The serial stays: it is the Serial of the site's license.
    """
    if name is None and timezone is None and window is None and contact is None:
        raise click.UsageError("nothing to change: give --name, --tz, --window or --contact")
    changes = inventory.SiteChanges(
        name, timezone, Window.parse(window) if window is not None else None, contact
    )
    with env.store().transaction() as session:
        done = inventory.update_site(session, env.clock, env.actor, site, changes)
    if as_json:
        env.print_json(done.to_json())
        return
    label = f"site {done.site.serial} ({escape(done.site.name)})"
    if not done.changed:
        env.out.print(f"{label}: nothing changed (it already has those values)")
        return
    env.out.print(f"updated {label}: {_changes_text(done)}")


def _changes_text(done: inventory.SiteUpdate) -> str:
    """``window '22:00-05:00' -> '23:00-04:00', contact '' -> '+49 30 1234'``: stored text as
    text, never markup."""
    now = done.site.window
    shown: dict[str, tuple[str | None, str | None]] = {}
    for column, (old, new) in done.changed.items():
        if column in {"window_start", "window_end"}:
            start = done.changed.get("window_start", (f"{now.start:%H:%M}",))[0]
            end = done.changed.get("window_end", (f"{now.end:%H:%M}",))[0]
            shown["window"] = (f"{start}-{end}", str(now))
        else:
            shown[column] = (old, new)
    return ", ".join(
        f"{column} {escape(repr(old or ''))} -> {escape(repr(new or ''))}"
        for column, (old, new) in shown.items()
    )


@sites.command("remove")
@click.argument("site", metavar="SITE")
@click.option(
    "--force",
    is_flag=True,
    help="Remove it even while it has phones (removed with it) or posted keys (kept).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@pass_env
def remove_site(env: Env, site: str, force: bool, as_json: bool) -> None:
    """Remove SITE (its serial or name).

    Refused while the site has phones or posted license keys, saying how many, unless --force:
    then its phones are removed with it, and its keys stay recorded and posted.
    """
    with env.store().transaction() as session:
        done = inventory.remove_site(session, env.clock, env.actor, site, force=force)
    if as_json:
        env.print_json(done.to_json())
        return
    with_phones = f" with its {done.phones} phone(s)" if done.phones else ""
    env.out.print(f"removed site {done.site.serial} ({escape(done.site.name)}){with_phones}")
    _warn_kept(env, done.posted)


def _warn_kept(env: Env, posted: tuple[int, ...]) -> None:
    if posted:
        ids = ", ".join(map(str, posted))
        env.warn(
            f"{len(posted)} posted key(s) stay posted (license {ids}): "
            "`fleetkey licenses revoke ID` stops serving one"
        )


@click.group()
def phones() -> None:
    """Phones: MAC, site, model, credentials, where and when last seen."""


@phones.command("import")
@click.argument(
    "csv_file", metavar="CSV", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option(
    "--remove-missing",
    is_flag=True,
    help="Also remove the phones of the sites the file names that it does not list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts and the diff as JSON.")
@pass_env
def import_phones(
    env: Env, csv_file: Path, dry_run: bool, remove_missing: bool, as_json: bool
) -> None:
    """Add or update phones from a CSV: mac,site,model[,firmware,user,password,contact].

    Only the columns the file has are changed (an empty cell clears that value); a site is
    its serial or name. One transaction: any bad row is reported with its line number and
    nothing is written.
    """
    # imported here: parsing and diffing a CSV is only this command's work (``sites list``
    # starts faster without it, issue 24)
    from fleetkey.cli.importview import counts, more_line, print_diff
    from fleetkey.store import phone_import

    with env.store().transaction() as session:
        result = phone_import.import_phones(
            session,
            env.clock,
            env.actor,
            csv_file.read_bytes(),
            source=str(csv_file),
            dry_run=dry_run,
            remove_missing=remove_missing,
        )
    if as_json:
        env.print_json(result.to_json())
        return
    if dry_run and print_diff(env.out, result) and (more := more_line(result)) is not None:
        env.out.print(more)
    source = escape(str(csv_file))
    if dry_run:
        env.out.print(f"dry run of {source}, nothing was changed: would be {counts(result)}")
    else:
        env.out.print(f"imported {source}: {counts(result)}")


PHONE_COLUMNS: Final = (
    Column("mac", Kind.ID),
    Column("site", Kind.ID),
    Column("model", Kind.WORDS, drop=3),
    Column("firmware", Kind.ID, drop=4),
    Column("last seen (UTC)", Kind.ID, drop=2),
    Column("address", Kind.ID, drop=5),
    Column("contact", drop=6, floor=CONTACT_FLOOR),
)


@phones.command("list")
@click.option("--site", help="Only the phones of this site (its serial or name).")
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
        serial = inventory.site_serial(session, site) if site is not None else None
        page = pages.phones(
            session, site=serial, after=after, limit=limit_for(how, limit, scripts=None)
        )
    if how is Output.JSON:
        env.print_json([phone_json(phone) for phone in page.items])
    else:
        # what is not known: '-' as `phones show` says it ("never" seen); an empty CSV cell
        unknown, never = ("", "") if how is Output.CSV else ("-", "never")
        rows = [
            [
                phone.mac,
                phone.site,
                phone.model,
                phone.firmware or unknown,
                moment_text(phone.last_seen_at) or never,
                phone.last_address or unknown,
                phone.sip_contact or unknown,
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
        seen = phonestate.seen(session, phone.mac)
        phone = pages.newest_sighting(
            phone, (seen.at, seen.address, seen.user_agent) if seen else None
        )
        states = key_states(session, phone)
    catalog = env.data.catalog()
    if as_json:
        licenses = [state.to_json(catalog, on) for state in states]
        env.print_json(phone_json(phone) | {"licenses": licenses})
        return
    print_phone(env.out, phone, states, catalog, on)


@phones.command("remove")
@click.argument("macs", metavar="[MAC]...", nargs=-1)
@click.option("--site", help="Remove every phone of this site (its serial or name).")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@pass_env
def remove_phones(env: Env, macs: tuple[str, ...], site: str | None, as_json: bool) -> None:
    """Remove phones from the inventory: each MAC given, or every phone of --site.

    All or none: an unknown MAC removes nothing. Their posted keys stay recorded and posted.
    """
    if bool(macs) == (site is not None):
        raise click.UsageError("give the MACs of the phones to remove, or --site SITE")
    with env.store().transaction() as session:
        subject = None
        if site is not None:
            subject = inventory.site_serial(session, site)
            macs = tuple(inventory.macs(session, subject))
        done = (
            inventory.remove_phones(session, env.clock, env.actor, macs, subject=subject)
            if macs
            else inventory.PhoneRemoval((), ())
        )
    if as_json:
        env.print_json(done.to_json())
        return
    if not done.macs:
        env.out.print(f"site {subject} has no phones: nothing was removed")
        return
    shown = ", ".join(done.macs[:10]) + (
        f" and {len(done.macs) - 10} more" if len(done.macs) > 10 else ""
    )
    env.out.print(f"removed {len(done.macs)} phone(s): {shown}")
    _warn_kept(env, done.posted)
