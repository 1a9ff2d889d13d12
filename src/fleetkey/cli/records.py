"""``fleetkey db`` and ``licenses``: what the store recorded.

``audit`` lives in cli/audit.py and ``fetches`` in cli/fetches.py. The ``licenses`` commands
that change keys (import, post, rollback, revoke, trust) live in cli/posting.py and are added
to the group here.
"""

from __future__ import annotations

from datetime import date
from typing import Final

import click

from fleetkey.cli import posting
from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.render import FEATURE_COLUMNS, days_text, features_text, moment_text, plain
from fleetkey.cli.tables import (
    Cell,
    Column,
    Kind,
    More,
    Output,
    limit_for,
    limit_option,
    output,
    print_fields,
    print_page_line,
    print_rows,
    table_options,
)
from fleetkey.clock import today
from fleetkey.core.features import FeatureCatalog
from fleetkey.core.license import LicenseState
from fleetkey.core.terms import NEVER, format_term
from fleetkey.errors import CommandFailedError
from fleetkey.store import migrate, pages, registry, statecheck
from fleetkey.store.records import StoredLicense, license_json


@click.group()
def db() -> None:
    """The database schema (Alembic migrations) and its consistency check."""


@db.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Print the revisions as JSON.")
@pass_env
def db_upgrade(env: Env, as_json: bool) -> None:
    """Create the database or migrate it to the newest schema."""
    store = env.store(current=False)
    before, after = store.upgrade()
    if as_json:
        env.print_json({"database": store.safe_url, "before": before, "after": after})
        return
    verb = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    env.out.print(f"{store.safe_url}: {verb} {after}")


@db.command("current")
@click.option("--json", "as_json", is_flag=True, help="Print the revisions as JSON.")
@pass_env
def db_current(env: Env, as_json: bool) -> None:
    """The schema revision of the database, and the newest one fleetkey knows."""
    store = env.store(current=False)
    current, head = store.revision(), migrate.head_revision()
    if as_json:
        env.print_json(
            {
                "database": store.safe_url,
                "current": current,
                "head": head,
                "up_to_date": current == head,
            }
        )
        return
    env.out.print(f"{store.safe_url}: {current or 'empty'} (newest: {head})")


@db.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@pass_env
def db_check(env: Env, as_json: bool) -> None:
    """Compare the per-phone state the writer keeps (each phone's newest fetch, and per license
    file its newest request and served version) with the raw fetch records; exit 1 and name
    the phones where they differ. Reads every record: minutes on a large history."""
    store = env.store()
    with store.engine.connect() as connection:
        result = statecheck.check(connection)
    differing = result.differing_phones
    if as_json:
        env.print_json(
            {
                "ok": not differing,
                "phones": result.phones,
                "entries": result.entries,
                "oldest_record": (
                    None if result.oldest_record is None else result.oldest_record.isoformat()
                ),
                "differing_phones": differing,
                "differences": [d.to_json() for d in result.differences[: statecheck.SHOWN]],
            }
        )
        if differing:
            raise click.exceptions.Exit(1)
        return
    if differing:
        shown = ", ".join(differing[:20]) + (" …" if len(differing) > 20 else "")
        raise CommandFailedError(
            f"the per-phone state differs from the fetch records for {len(differing):,} "
            f"phones: {shown}",
            hint="`fleetkey db check --json` shows each difference",
        )
    env.out.print(
        f"ok: {result.phones:,} phones, {result.entries:,} state entries agree with the fetch "
        "records",
        markup=False,
    )


@click.group()
def licenses() -> None:
    """License keys fleetkey issued or imported, and their state."""


LICENSE_COLUMNS: Final = (  # at 80 columns: id, serial, state, days left, features
    Column("id", Kind.NUMBER),
    Column("type", Kind.ID, drop=3),
    Column("serial", Kind.ID),
    Column("state", Kind.ID),
    Column("expires", Kind.ID, drop=1),  # days left stays; the date is in `licenses show`
    Column("days left", Kind.NUMBER),
    Column("features", Kind.WORDS),
    Column("signature", Kind.ID, drop=2),
    Column("key", Kind.ID, drop=4),
    Column("succeeds", Kind.NUMBER, drop=5),
)


@licenses.command("list")
@click.option(
    "--expiring-within",
    type=int,
    metavar="DAYS",
    help="Only keys whose term ends within DAYS days (never-expiring keys excluded).",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in LicenseState]),
    help="Only keys in this state.",
)
@click.option(
    "--before", type=click.IntRange(min=1), metavar="ID", help="Only keys older than license ID."
)
@limit_option(scripts=None)
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@pass_env
def list_licenses(
    env: Env,
    expiring_within: int | None,
    states: tuple[str, ...],
    before: int | None,
    limit: int | None,
    wide: bool,
    as_csv: bool,
    as_json: bool,
) -> None:
    """List license keys, newest first: state, term, days left, features, signature verdict.

    --json and --csv print the same keys oldest first.
    """
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    on = today(env.clock)
    with env.store().transaction() as session:
        page = pages.licenses(
            session,
            today=on,
            expiring_within=expiring_within,
            states=tuple(LicenseState(s) for s in states) or None,
            before=before,
            limit=limit_for(how, limit, scripts=None),
        )
    catalog = env.data.catalog()
    oldest_first = list(reversed(page.items))
    last = page.last
    more = More(page.left, "older keys", f"--before {last.id}" if last else None)
    if how is Output.JSON:
        env.print_json([license_json(item, catalog, on) for item in oldest_first])
    else:
        rows = [
            _license_row(item, catalog, on)
            for item in (oldest_first if how is Output.CSV else page.items)
        ]
        print_rows(env.out, LICENSE_COLUMNS, rows, how)
    print_page_line(env.out, env.err, more, how)


def _license_row(item: StoredLicense, catalog: FeatureCatalog, on: date) -> list[Cell]:
    latest = NEVER if item.expires_on is None else item.expires_on
    return [
        str(item.id),
        item.type.value,
        item.serial,
        item.state.value,
        format_term(latest) or "",
        days_text(latest, on),
        features_text(item.terms, catalog, latest),
        item.signature.value,
        item.signing_key or "",
        str(item.succeeds_id or ""),
    ]


@licenses.command("show")
@click.argument("license_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@pass_env
def show_license(env: Env, license_id: int, as_json: bool) -> None:
    """One key: its state, where it comes from, its signature, and each feature with its term
    and the days left."""
    on = today(env.clock)
    with env.store().transaction() as session:
        item = registry.get(session, license_id)
        successors = pages.successors(session, license_id)
    catalog = env.data.catalog()
    if as_json:
        env.print_json(license_json(item, catalog, on) | {"succeeded_by": successors})
        return
    latest = NEVER if item.expires_on is None else item.expires_on
    signer = f" by {item.signing_key}" if item.signing_key else ""
    fields: list[tuple[str, Cell]] = [
        ("license", str(item.id)),
        ("key", f"{item.type.value} {item.serial}"),
        ("state", item.state.value),
        ("expires", format_term(latest) or ""),
        ("days left", days_text(latest, on)),
        ("signature", f"{item.signature.value}{signer}"),
        ("origin", item.origin.value),
        ("file", item.file_name),
        ("digest", item.digest),
        ("issued", moment_text(item.issued_at)),
        ("posted", moment_text(item.posted_at) or "-"),
        ("succeeds", f"license {item.succeeds_id}" if item.succeeds_id else "-"),
        ("succeeded by", plain([f"license {n}" for n in successors]) if successors else "-"),
    ]
    print_fields(env.out, fields)
    rows: list[list[Cell]] = [
        [str(slot), catalog.label(slot), format_term(term) or "", days_text(term, on)]
        for slot, term in sorted(item.terms.items())
    ]
    print_rows(
        env.out, FEATURE_COLUMNS, rows or [["-", "(grants nothing)", "-", "-"]], Output.TABLE
    )


for command in (
    posting.import_licenses,
    posting.post_license,
    posting.rollback_license,
    posting.revoke_license,
    posting.trust_license,
):
    licenses.add_command(command)
