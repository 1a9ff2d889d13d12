"""``fleetkey issue``: sign phone and site licenses, one at a time or in batches."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from fleetkey.authority.batch import issue_batch, parse_batch_csv
from fleetkey.authority.files import atomic_write, read_license
from fleetkey.authority.keyring import passphrase_from_env
from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.render import key_table, key_title, key_to_json
from fleetkey.clock import today
from fleetkey.core.codec import parse_license_file, serialize_keys
from fleetkey.core.issuing import issue_key, resolve_terms
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.naming import (
    SITE_LICENSE_FILE,
    normalize_mac,
    normalize_site_serial,
    phone_license_file,
)
from fleetkey.core.signing import SignatureCheck, SignatureStatus
from fleetkey.core.terms import Term, format_term, parse_term
from fleetkey.errors import FleetkeyError, InputError
from fleetkey.store import registry


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
        click.option("--json", "as_json", is_flag=True, help="Print the issued key as JSON."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


@issue.command("phone")
@click.option("--mac", required=True, help="The phone's MAC address.")
@_license_options
@pass_env
def phone(env: Env, /, mac: str, **options: Any) -> None:
    """Issue <mac>-license.cfg, bound to one phone's MAC."""
    serial = normalize_mac(mac)
    _issue_one(env, serial, LicenseType.PHONE, phone_license_file(serial), **options)


@issue.command("site")
@click.option("--serial", required=True, help="The site serial, 12 hex digits.")
@_license_options
@pass_env
def site(env: Env, /, serial: str, **options: Any) -> None:
    """Issue 000000000000-license.cfg for a whole site."""
    _issue_one(env, normalize_site_serial(serial), LicenseType.SITE, SITE_LICENSE_FILE, **options)


def _issue_one(
    env: Env,
    serial: str,
    license_type: LicenseType,
    file_name: str,
    *,
    features: str,
    expires: str | None,
    per_feature: tuple[str, ...],
    out: Path | None,
    as_json: bool,
) -> None:
    catalog = env.data.catalog()
    overrides: dict[str, Term] = {}
    for item in per_feature:
        name, sep, day = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--feature {item!r} is not NAME=DATE")
        overrides[name.strip()] = parse_term(day)
    terms = resolve_terms(
        catalog, features.split(","), parse_term(expires) if expires else None, overrides
    )
    keyring = env.keyring()
    key_name, signer = keyring.signer(passphrase_from_env())
    key = issue_key(serial, license_type, terms, signer)
    data = serialize_keys([key])
    check = SignatureCheck(SignatureStatus.VALID, key_name, f"signed by trusted key {key_name!r}")
    store = env.store()
    to_stdout = out is not None and str(out) == "-"
    target = None if to_stdout else out or env.data.provisioning / file_name
    posted = (
        target is not None and target.resolve() == (env.data.provisioning / file_name).resolve()
    )
    if target is not None:
        _warn_if_shorter(env, target, key)
    # the file is written inside the transaction that records it: a failed write rolls the
    # record back, so the store never lists a key that is not on disk
    with store.transaction() as session:
        stored = registry.record(
            session,
            env.clock,
            env.actor,
            key,
            check,
            content=data,
            file_name=file_name,
            post=posted,
        )
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)
    if to_stdout:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    if as_json:
        env.print_json(
            {
                "file": str(target),
                "license_id": stored.id,
                "state": stored.state.value,
                **key_to_json(key, check, catalog),
            }
        )
        return
    env.out.print(f"issued {target} (license {stored.id}, {stored.state.value})")
    env.out.print(key_table(key, check, catalog, today(env.clock), key_title(key, 1)))


def _warn_if_shorter(env: Env, target: Path, key: LicenseKey) -> None:
    """R7: phones keep the longer key; say so before replacing a longer one."""
    if not target.is_file():
        return
    try:
        previous = read_license(target).keys
    except FleetkeyError as exc:
        env.warn(f"replacing {target}, which does not parse: {exc.message}")
        return
    for old in previous:
        if old.type is key.type and old.serial == key.serial:
            if key.duration_rank < old.duration_rank:
                env.warn(
                    f"the new key lasts until {format_term(key.expiry())}, the one it replaces "
                    f"until {format_term(old.expiry())}: phones that installed the old key "
                    "will ignore the new one (rule R7)"
                )
            elif key.duration_rank == old.duration_rank:
                env.warn(
                    f"the new key lasts exactly as long as the one it replaces "
                    f"({format_term(key.expiry())}): phones adopt it (R7 tie) but gain no time"
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
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@pass_env
def batch(env: Env, csv_file: Path, out_dir: Path | None, as_json: bool) -> None:
    """Issue one phone license per CSV row: all rows valid, or nothing is written."""
    rows = parse_batch_csv(csv_file.read_bytes(), env.data.catalog(), source=str(csv_file))
    key_name, signer = env.keyring().signer(passphrase_from_env())
    store = env.store()
    target = out_dir or env.data.provisioning
    posted = target.resolve() == env.data.provisioning.resolve()
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
        registry.record_many(session, env.clock, env.actor, keys, signing_key=key_name, post=posted)
    if as_json:
        env.print_json(
            {"issued": len(issued), "directory": str(target), "key": key_name, "posted": posted}
        )
        return
    state = "posted" if posted else "issued, not posted"
    env.out.print(
        f"issued {len(issued)} phone licenses into {target} (signed by {key_name}, {state})"
    )
