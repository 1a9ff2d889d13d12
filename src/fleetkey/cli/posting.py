"""``fleetkey licenses import|post|rollback|revoke|trust``: putting keys where phones fetch them.

The ``licenses`` group lives in cli/records.py, which adds these commands to it. Every command
here changes the store and the provisioning tree together (``ops/posting.py``,
``ops/importing.py``) and prints what it did as a table, or JSON with ``--json``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.render import term_text
from fleetkey.cli.tables import Cell, Column, Kind, Output, print_rows
from fleetkey.clock import today
from fleetkey.core.features import FeatureCatalog
from fleetkey.core.license import LicenseType
from fleetkey.core.signing import TrustedKeys
from fleetkey.core.succession import FeatureChange
from fleetkey.core.terms import format_term
from fleetkey.ops import importing, posting
from fleetkey.ops.importing import KeyOutcome, KeyReport
from fleetkey.ops.posting import Posted
from fleetkey.store.records import StoredLicense, license_json

ACCEPT_UNVERIFIED = click.option(
    "--accept-unverified",
    metavar="REASON",
    help="Post keys whose signature is invalid or unverifiable (e.g. vendor files), because "
    "REASON; the audit trail keeps the reason and who gave it.",
)
FORCE = click.option(
    "--force",
    is_flag=True,
    help="Post even a key that takes something from phones (expired, shorter than the key it "
    "replaces, a feature ended earlier or dropped); the audit trail keeps what was lost.",
)
JSON = click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")


@click.command("import")
@click.argument("path", metavar="FILE|DIR", type=click.Path(exists=True, path_type=Path))
@click.option("--post", is_flag=True, help="Post the new keys (serve them to phones).")
@ACCEPT_UNVERIFIED
@FORCE
@JSON
@pass_env
def import_licenses(
    env: Env, path: Path, post: bool, accept_unverified: str | None, force: bool, as_json: bool
) -> None:
    """Record the keys of a license file, or of the *-license.cfg files of a folder (vendor
    files are stored as unverifiable), and report each: its site, its term, its signature.

    All files must be regular files that parse, or nothing is imported. A key already in the
    store (same serial, type, options, duration and validation) is skipped. --post posts each
    new key under the name phones ask for, in its site's place; a key whose signature is not
    valid only with --accept-unverified, one that takes something from phones (an expired
    vendor file) only with --force.
    """
    for flag, given in (("--accept-unverified", accept_unverified is not None), ("--force", force)):
        if given and not post:
            raise click.UsageError(f"{flag} goes with --post")
    paths = importing.license_files(path)
    trusted = env.keyring().trusted() if env.data.exists() else TrustedKeys()
    done = importing.import_licenses(
        env.data,
        env.store(),
        env.clock,
        env.actor,
        paths,
        trusted,
        post=post,
        accept_unverified=accept_unverified,
        force=force,
    )
    if as_json:
        env.print_json(
            {
                "imported": [license_json(item) for item in done.imported],
                "skipped": [asdict(item) for item in done.skipped],
                "keys": [_report_json(report) for report in done.reports],
                "files": [str(file) for file in done.files],
            }
        )
    else:
        env.out.print(_report_table(done.reports))
        env.out.print(
            f"imported {len(done.imported)} key(s) from {len(paths)} file(s); "
            f"{len(done.skipped)} key(s) already in the store or repeated"
            + (f"; posted as {', '.join(map(str, done.files))}" if done.files else ""),
            markup=False,
        )
    for report in done.reports:
        where = f"{Path(report.file).name} key {report.key_index}"
        if report.outcome is not KeyOutcome.SKIPPED:
            for finding in report.findings:
                env.warn(escape(f"{where} ({report.type.value} {report.serial}): {finding}"))
        elif post and report.license_id is not None:
            env.warn(
                escape(
                    f"{where} is license {report.license_id}, already in the store: not posted "
                    f"again (fleetkey licenses post {report.license_id} posts it)"
                )
            )
    for item in done.posted_unverified:
        env.warn(
            f"posted license {item.id} ({item.type} {item.serial}) with an {item.signature} "
            f"signature, accepted by {escape(env.actor)}"
        )
    for warning in done.warnings:
        env.warn(escape(warning))


@click.command("post")
@click.argument("license_id", metavar="ID", type=int)
@ACCEPT_UNVERIFIED
@FORCE
@click.option(
    "--default-site",
    is_flag=True,
    help="Also make it the tree's default 000000000000-license.cfg, served to phones the "
    "server cannot place (a site key only).",
)
@click.option("--dry-run", is_flag=True, help="Show what posting would change; change nothing.")
@JSON
@pass_env
def post_license(
    env: Env,
    license_id: int,
    accept_unverified: str | None,
    force: bool,
    default_site: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Serve a key: it becomes the posted key of its serial (the one before is superseded)
    and its file is written to its place in the provisioning tree.

    Refused, saying what would be lost, when the key takes something from phones (expired,
    shorter than the key it replaces, a feature ended earlier or dropped) unless --force; a
    key whose signature is invalid or unverifiable only with --accept-unverified.
    """
    if dry_run:
        preview = posting.preview_post(
            env.data, env.store(), env.clock, license_id, default_site=default_site
        )
        _show(env, preview, as_json, verb="would post", dry_run=True)
        return
    done = posting.post_license(
        env.data,
        env.store(),
        env.clock,
        env.actor,
        license_id,
        accept_unverified=accept_unverified,
        force=force,
        default_site=default_site,
    )
    _show(env, done, as_json, verb="posted")


@click.command("rollback")
@click.argument("serial", metavar="SERIAL")
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["site", "phone"]),
    help="The key's type, when SERIAL has posted keys of both (a MAC that is a site serial).",
)
@ACCEPT_UNVERIFIED
@FORCE
@JSON
@pass_env
def rollback_license(
    env: Env,
    serial: str,
    key_type: str | None,
    accept_unverified: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Post again the key that the posted key of SERIAL (a site serial or a MAC) replaced;
    the posted one is superseded, and its file replaced in the tree. Judged as a post is."""
    done = posting.rollback_license(
        env.data,
        env.store(),
        env.clock,
        env.actor,
        serial,
        key_type=LicenseType(key_type.title()) if key_type else None,
        accept_unverified=accept_unverified,
        force=force,
    )
    _show(env, done, as_json, verb="rolled back to")


@click.command("revoke")
@click.argument("license_id", metavar="ID", type=int)
@JSON
@pass_env
def revoke_license(env: Env, license_id: int, as_json: bool) -> None:
    """Revoke a key; its files leave the provisioning tree where they hold exactly this key
    (its site's place, and the tree's default); another site's file is never touched."""
    stored, removed = posting.revoke_license(
        env.data, env.store(), env.clock, env.actor, license_id
    )
    if as_json:
        env.print_json({"license": license_json(stored), "removed": [str(p) for p in removed]})
        return
    env.out.print(
        f"revoked license {stored.id} ({stored.type} {stored.serial})"
        + "".join(f"; removed {path}" for path in removed),
        markup=False,
    )


@click.command("trust")
@click.argument("license_id", metavar="ID", type=int)
@click.option("--reason", required=True, help="Why you trust it (1-500 characters); audited.")
@JSON
@pass_env
def trust_license(env: Env, license_id: int, reason: str, as_json: bool) -> None:
    """Vouch for an unverifiable key's signature (a vendor's key fleetkey cannot check): it
    becomes trusted-by-operator, posts without --accept-unverified, and alerts stop calling
    it unverifiable. The reason and who gave it go into the audit trail."""
    stored = posting.trust_license(env.store(), env.clock, env.actor, license_id, reason)
    if as_json:
        env.print_json(license_json(stored))
        return
    env.out.print(
        f"license {stored.id} ({stored.type} {stored.serial}): signature {stored.signature}, "
        f"by {env.actor}",
        markup=False,
    )


def _show(env: Env, done: Posted, as_json: bool, *, verb: str, dry_run: bool = False) -> None:
    judgement, catalog = done.judgement, env.data.catalog()
    stored, replaced = judgement.license, judgement.replaced
    if as_json:
        env.print_json(done.to_json(catalog, dry_run=dry_run))
        return
    instead = f" in place of license {replaced.id}" if replaced else " (none was posted before)"
    env.out.print(
        f"{verb} license {stored.id} ({stored.type} {stored.serial}){instead}", markup=False
    )
    _print_changes(env, judgement.succession.features, catalog, replaced)
    for path in done.files:
        env.out.print(f"  {'would write' if dry_run else 'wrote'} {path}", markup=False)
    if dry_run:
        for loss in judgement.losses:
            env.out.print(f"  needs --force: {loss}", markup=False)
        if judgement.needs_reason:
            env.out.print(
                f"  needs --accept-unverified: its signature is {stored.signature}", markup=False
            )
        for note in judgement.notes:
            env.out.print(f"  note: {note}", markup=False)
        return
    for loss in judgement.losses:
        env.warn(escape(f"forced: {loss}"))
    for note in judgement.notes:
        env.warn(escape(note))


def _print_changes(
    env: Env, features: list[FeatureChange], catalog: FeatureCatalog, replaced: StoredLicense | None
) -> None:
    day = today(env.clock)
    columns = (
        Column("slot", Kind.NUMBER),
        Column("feature", Kind.WORDS),
        Column(f"license {replaced.id}" if replaced is not None else "before", Kind.ID),
        Column("after", Kind.ID),
        Column("change", Kind.WORDS),
    )
    rows: list[list[Cell]] = [
        [
            str(item.slot),
            catalog.label(item.slot),
            Text.from_markup(term_text(item.before, day)) if item.before is not None else "-",
            Text.from_markup(term_text(item.after, day)) if item.after is not None else "-",
            item.change.value,
        ]
        for item in features
    ]
    print_rows(env.out, columns, rows, Output.TABLE)


def _report_json(report: KeyReport) -> dict[str, Any]:
    document = asdict(report)
    document.update(
        type=report.type.value,
        expires=format_term(report.expires),
        signature=report.signature.value,
        outcome=report.outcome.value,
    )
    return document


def _report_table(reports: list[KeyReport]) -> Table:
    """One row per key, narrow enough for 80 columns: serials and dates whole; what is wrong
    with a key is said on stderr, one warning each."""
    files = {report.file for report in reports}
    title = escape(Path(next(iter(files))).name) if len(files) == 1 else None
    numbered = any(report.key_index > 1 for report in reports)
    table = Table(title=title, title_justify="left")
    if title is None:
        table.add_column("file", overflow="fold")
    if numbered:
        table.add_column("#", justify="right")
    table.add_column("key", no_wrap=True)
    table.add_column("site", overflow="fold")
    table.add_column("expires", no_wrap=True)
    table.add_column("signature", overflow="fold")
    table.add_column("license", justify="right", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    for report in reports:
        expires = format_term(report.expires) or "-"
        cells = [escape(Path(report.file).name)] if title is None else []
        cells += [str(report.key_index)] if numbered else []
        table.add_row(
            *cells,
            f"{report.type.value} {report.serial}",
            escape(report.site_name or "-"),
            f"[red]{expires}[/]" if report.expired else expires,
            report.signature.value,
            str(report.license_id or "-"),
            report.outcome.value,
        )
    return table
