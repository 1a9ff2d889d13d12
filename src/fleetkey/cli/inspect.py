"""``fleetkey inspect`` and ``fleetkey verify``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from fleetkey.authority.checking import check_files
from fleetkey.authority.files import read_license
from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.render import key_table, key_title, key_to_json
from fleetkey.clock import today
from fleetkey.core.license import LicenseType, issuance_problems
from fleetkey.core.naming import key_misfit, normalize_mac
from fleetkey.core.signing import TrustedKeys
from fleetkey.core.terms import format_term
from fleetkey.errors import CommandFailedError, InputError


def _trusted(env: Env) -> TrustedKeys:
    """The keyring's keys when there is a data directory; none otherwise (all unverifiable)."""
    return env.keyring().trusted() if env.data.exists() else TrustedKeys()


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per file, one per line (JSON Lines)."
)
@pass_env
def inspect(env: Env, files: tuple[Path, ...], as_json: bool) -> None:
    """Show what license files hold, feature by feature, and whether their signatures verify.

    Keys that break the rules for issued files (reserved Options bits, Options and Duration
    disagreeing) are shown with a warning. Exit 0 even when a signature is unverifiable or a
    key is flagged; exit 1 when a file does not parse.
    """
    trusted = _trusted(env)
    catalog = env.data.catalog()
    on = today(env.clock)
    failures: list[str] = []
    for result in check_files(files, trusted):
        parsed = result.license_file
        if parsed is None:
            failures.append(result.error or str(result.path))
            click.echo(f"error: {result.error}", err=True)
            continue
        pairs = list(zip(parsed.keys, result.checks, strict=True))
        if as_json:
            keys = [
                {**key_to_json(key, check, catalog), "problems": issuance_problems(key)}
                for key, check in pairs
            ]
            click.echo(json.dumps({"file": str(result.path), "keys": keys}, ensure_ascii=False))
            continue
        env.out.print(f"[bold]{result.path}[/]: {len(parsed.keys)} license key(s)")
        for index, (key, check) in enumerate(pairs, start=1):
            env.out.print(key_table(key, check, catalog, on, key_title(key, index)))
            for problem in issuance_problems(key):
                env.warn(f"{result.path} key {index}: {problem}")
    if failures:
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--mac", help="Phone keys must be bound to this MAC.")
@click.option(
    "--on", "on_text", metavar="YYYY-MM-DD", help="Check expiry on this day (default: today, UTC)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@pass_env
def verify(env: Env, file: Path, mac: str | None, on_text: str | None, as_json: bool) -> None:
    """Exit 0 when every key verifies, matches the MAC and file name, is unexpired, and keeps
    the rules of issued files (reserved Options bits clear, Options bits exactly where the
    Duration terms are non-zero)."""
    on = _day(on_text) if on_text else today(env.clock)
    wanted_mac = normalize_mac(mac) if mac else None
    parsed = read_license(file)
    trusted = _trusted(env)
    problems: list[str] = []
    if not parsed.keys:
        problems.append("the file holds no license key")
    signers: set[str] = set()
    for index, key in enumerate(parsed.keys, start=1):
        where = f"key {index} ({key.type.value} {key.serial})"
        check = trusted.check(key)
        if check.valid and check.key_name:
            signers.add(check.key_name)
        else:
            problems.append(f"{where}: {check.reason}")
        misfit = key_misfit(key.type, key.serial, file.name)
        if misfit is not None:
            problems.append(f"{where}: {misfit}")
        if wanted_mac and key.type is LicenseType.PHONE and key.serial != wanted_mac:
            problems.append(f"{where}: bound to {key.serial}, not {wanted_mac}")
        problems.extend(f"{where}: {problem}" for problem in issuance_problems(key))
        if key.is_expired(on):
            problems.append(
                f"{where}: expired on {on.isoformat()} "
                f"(latest term {format_term(key.expiry()) or 'none'})"
            )
    if as_json:
        env.print_json(
            {
                "file": str(file),
                "ok": not problems,
                "on": on.isoformat(),
                "problems": problems,
                "signed_by": sorted(signers),
            }
        )
        if problems:
            raise click.exceptions.Exit(1)
        return
    if problems:
        raise CommandFailedError(f"{file} does not verify:\n  " + "\n  ".join(problems))
    latest = max(parsed.keys, key=lambda k: k.duration_rank).expiry()
    env.out.print(
        f"ok: {file}: {len(parsed.keys)} key(s) signed by {', '.join(sorted(signers))}, "
        f"valid on {on.isoformat()}, latest term {format_term(latest)}"
    )


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"--on {text!r} is not a date: expected YYYY-MM-DD") from exc
