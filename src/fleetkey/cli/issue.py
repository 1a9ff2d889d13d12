"""``fleetkey issue``: sign phone and site licenses, one at a time or in batches."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from fleetkey.authority.batch import issue_batch, parse_batch_csv
from fleetkey.authority.keyring import passphrase_from_env
from fleetkey.cli.context import Env, pass_env, subject
from fleetkey.cli.render import key_table, key_title, key_to_json
from fleetkey.clock import today
from fleetkey.core.codec import parse_license_file
from fleetkey.core.license import LicenseType
from fleetkey.core.naming import normalize_site_serial
from fleetkey.errors import ROWS_SHOWN, InputError
from fleetkey.ops.licensing import LicenseOrder, issue_license
from fleetkey.store import inventory, posting, registry


@click.group()
def issue() -> None:
    """Sign phone and site licenses into the provisioning tree (or --out)."""


def _license_options(function: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        click.option("--features", default="", help="Comma-separated feature names."),
        click.option("--expires", help="Last valid day of --features: YYYY-MM-DD or 'never'."),
        click.option(
            "--feature",
            "per_feature",
            multiple=True,
            metavar="NAME=DATE",
            help="A feature with its own expiry (repeatable).",
        ),
        click.option(
            "--out",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write here instead of the provisioning tree; '-' for stdout.",
        ),
        click.option(
            "--force",
            is_flag=True,
            help="Issue even an expired key, and post even one that takes something from "
            "phones (shorter than the posted key, a feature ended earlier or dropped); "
            "the audit trail keeps what was lost.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the issued key as JSON."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


@issue.command("phone")
@click.argument("mac_argument", metavar="MAC", required=False)
@click.option("--mac", help="The phone's MAC address, when not given as MAC.")
@_license_options
@pass_env
def phone(env: Env, /, mac_argument: str | None, mac: str | None, **options: Any) -> None:
    """Issue <mac>-license.cfg, bound to the phone MAC."""
    chosen = subject(mac_argument, mac, metavar="MAC", flag="--mac")
    _issue_one(env, chosen, LicenseType.PHONE, **options)


@issue.command("site")
@click.argument("serial_argument", metavar="SERIAL", required=False)
@click.option(
    "--serial", help="The site's serial (12 hex digits) or name, when not given as SERIAL."
)
@_license_options
@click.option(
    "--default-site",
    is_flag=True,
    help="Also make it the tree's default 000000000000-license.cfg, served to phones the "
    "server cannot place (audited).",
)
@pass_env
def site(env: Env, /, serial_argument: str | None, serial: str | None, **options: Any) -> None:
    """Issue 000000000000-license.cfg for the site SERIAL (or its name), posted in the site's place
    (<provisioning>/<serial>/000000000000-license.cfg)."""
    chosen = subject(serial_argument, serial, metavar="SERIAL", flag="--serial")
    try:
        normalize_site_serial(chosen)
    except InputError:  # not a serial: a site's name, which the store knows
        with env.store().transaction() as session:
            chosen = inventory.site_serial(session, chosen)
    _issue_one(env, chosen, LicenseType.SITE, **options)


def _issue_one(
    env: Env,
    serial: str,
    license_type: LicenseType,
    *,
    features: str,
    expires: str | None,
    per_feature: tuple[str, ...],
    out: Path | None,
    as_json: bool,
    force: bool,
    default_site: bool = False,
) -> None:
    order = LicenseOrder(license_type, serial, features.split(","), expires, per_feature)
    to_stdout = out is not None and str(out) == "-"
    issued = issue_license(
        env.data,
        env.store(),
        env.clock,
        env.actor,
        order,
        passphrase=passphrase_from_env(),
        target=None if to_stdout else out,
        write=not to_stdout,
        force=force,
        default_site=default_site,
    )
    for warning in issued.warnings:
        env.warn(escape(warning))
    if to_stdout:
        sys.stdout.buffer.write(issued.data)
        sys.stdout.flush()
        return
    catalog = env.data.catalog()
    if as_json:
        env.print_json(
            {
                "file": str(issued.target),
                "files": [str(path) for path in issued.files],
                "license_id": issued.stored.id,
                "state": issued.stored.state.value,
                **key_to_json(issued.key, issued.check, catalog),
            }
        )
        return
    env.out.print(
        f"issued {' and '.join(map(str, issued.files))} (license {issued.stored.id}, "
        f"{issued.stored.state.value})",
        markup=False,
    )
    env.out.print(
        key_table(issued.key, issued.check, catalog, today(env.clock), key_title(issued.key, 1))
    )


@issue.command("batch")
@click.option(
    "--csv",
    "csv_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with columns mac,features,expires (features separated by ';').",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the files (default: the provisioning tree).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Issue even expired keys, and post even keys that take something from phones; the "
    "audit trail keeps what was lost.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@pass_env
def batch(env: Env, csv_file: Path, out_dir: Path | None, force: bool, as_json: bool) -> None:
    """Issue one phone license per CSV row: all rows valid, or nothing is written.

    Judged as every post is: rows whose key is expired, or would take something from phones
    against the posted key of their MAC, refuse the whole batch unless --force."""
    catalog = env.data.catalog()
    rows = parse_batch_csv(csv_file.read_bytes(), catalog, source=str(csv_file))
    store = env.store()
    target = out_dir or env.data.provisioning
    posted = target.resolve() == env.data.provisioning.resolve()
    with store.transaction() as session:
        losses = posting.judge_terms_batch(
            session,
            env.clock,
            LicenseType.PHONE,
            [(row.mac, row.terms) for row in rows],
            catalog.label,
            posting=posted,
        )
    forced = [f"{mac}: {loss}" for mac, items in losses.items() for loss in items]
    if forced and not force:
        shown = forced[:ROWS_SHOWN] + (
            [f"... and {len(forced) - ROWS_SHOWN} more"] if len(forced) > ROWS_SHOWN else []
        )
        raise posting.unsafe(
            f"{csv_file}: {len(losses)} of {len(rows)} rows (nothing was issued)",
            shown,
            hint="`fleetkey licenses list --state posted` shows the posted keys; forcing it is "
            "recorded in the audit trail with what was lost",
        )
    key_name, signer = env.keyring().signer(passphrase_from_env())
    # refreshed by hand: no refresh thread, so batch workers may be forked safely
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=env.err,
        auto_refresh=False,
        disable=as_json,
    ) as progress:
        task = progress.add_task("signing", total=len(rows))

        def advance(count: int) -> None:
            progress.update(task, advance=count, refresh=True)

        issued = issue_batch(rows, signer, target, progress=advance)
    keys = [
        (parse_license_file(data).keys[0], data, name)
        for data, name in zip(issued.contents, issued.names, strict=True)
    ]
    with store.transaction() as session:
        registry.record_many(
            session, env.clock, env.actor, keys, signing_key=key_name, post=posted, forced=forced
        )
    for line in forced:
        env.warn(escape(f"forced: {line}"))
    if as_json:
        env.print_json(
            {"issued": len(issued), "directory": str(target), "key": key_name, "posted": posted}
        )
        return
    state = "posted" if posted else "issued, not posted"
    env.out.print(
        f"issued {len(issued)} phone licenses into {target} (signed by {key_name}, {state})"
    )
