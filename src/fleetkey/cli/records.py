"""``fleetkey db``, ``licenses`` and ``fetches``: what the store recorded.

``audit`` lives in cli/audit.py. The ``licenses`` commands that change keys (import, post,
rollback, revoke, trust) live in cli/posting.py and are added to the group here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table

from fleetkey.cli import posting
from fleetkey.cli.context import Env, pass_env
from fleetkey.clock import today
from fleetkey.core.license import LicenseState
from fleetkey.errors import InputError
from fleetkey.store import fetches as fetch_records
from fleetkey.store import held, migrate, registry
from fleetkey.store.records import fetch_json, license_json


@click.group()
def db() -> None:
    """The database schema (Alembic migrations)."""


@db.command("upgrade")
@pass_env
def db_upgrade(env: Env) -> None:
    """Create the database or migrate it to the newest schema."""
    store = env.store(current=False)
    before, after = store.upgrade()
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


@click.group()
def licenses() -> None:
    """License keys fleetkey issued or imported, and their state."""


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
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@pass_env
def list_licenses(
    env: Env, expiring_within: int | None, states: tuple[str, ...], as_json: bool
) -> None:
    """List license keys with their state, term and signature verdict."""
    with env.store().transaction() as session:
        found = registry.listing(
            session,
            today=today(env.clock),
            expiring_within=expiring_within,
            states=tuple(LicenseState(s) for s in states) or None,
        )
    if as_json:
        env.print_json([license_json(item) for item in found])
        return
    table = Table("id", "type", "serial", "expires", "state", "signature", "key", "succeeds")
    for item in found:
        table.add_row(
            str(item.id),
            item.type,
            item.serial,
            item.expires_on.isoformat() if item.expires_on else "never",
            item.state.value,
            item.signature,
            item.signing_key or "",
            str(item.succeeds_id or ""),
        )
    env.out.print(table)


for command in (
    posting.import_licenses,
    posting.post_license,
    posting.rollback_license,
    posting.revoke_license,
    posting.trust_license,
):
    licenses.add_command(command)


@click.group(invoke_without_command=True)
@click.option("--mac", help="Only this phone's fetches.")
@click.option("--since", metavar="ISO", help="From this moment on (ISO date or date-time, UTC).")
@click.option("--limit", type=int, default=1000, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@pass_env
@click.pass_context
def fetches(
    ctx: click.Context,
    env: Env,
    mac: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """What phones fetched: time, path, protocol, status, bytes, digest of what was served.

    `fetches replay FILE` writes fetch records a server could not write to the store.
    """
    if ctx.invoked_subcommand is not None:
        return
    moment = _moment(since) if since else None
    with env.store().transaction() as session:
        found = fetch_records.query(session, mac=mac, since=moment, limit=limit)
    if as_json:
        env.print_json([fetch_json(r) for r in found])
        return
    table = Table("at", "mac", "method", "path", "proto", "status", "bytes", "digest", "ms")
    for r in found:
        table.add_row(
            r.at.isoformat(timespec="seconds"),
            r.mac or ("(shared address)" if r.identified_by == "ambiguous" else ""),
            r.method,
            r.path,
            r.protocol,
            str(r.status),
            str(r.bytes),
            (r.digest or "")[:12],
            f"{r.duration_ms:.1f}",
        )
    env.out.print(table)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--since {text!r} is not an ISO date or date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@fetches.command("replay")
@click.argument(
    "path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_env
def replay_fetches(env: Env, path: Path, as_json: bool) -> None:
    """Write FILE's fetch records to the store: the fallback file a server left because the
    store refused them at its stop (<data>/fetches-unwritten.jsonl), or a spill file. In
    order, each once: running it again on the same file writes nothing twice."""
    done = held.replay(env.store().engine, path)
    if as_json:
        env.print_json({"file": str(path), "written": done.written, "already": done.already})
        return
    env.out.print(
        f"{path}: {done.written} fetch records written"
        + (f", {done.already} were already in the store" if done.already else "")
    )
