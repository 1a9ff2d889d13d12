"""``fleetkey audit``: the tamper-evident trail: list, verify, and anchors kept outside the
database."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Final

import click

from fleetkey.authority.files import atomic_write
from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.render import moment_text, plain
from fleetkey.cli.tables import (
    Cell,
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
from fleetkey.errors import CommandFailedError, WebhookError
from fleetkey.ops.delivery import post_signed, webhook_key
from fleetkey.store import audit as audit_trail
from fleetkey.store import pages
from fleetkey.store.records import AuditEvent

SCRIPT_ROWS: Final = 100  # events --json and --csv print by default


@click.group()
def audit() -> None:
    """The tamper-evident audit trail."""


NARROW: Final = 12  # subject and details give way down to a MAC's width: the time stays
ACTION_FLOOR: Final = 10  # an action folds after its dot (license. / imported), words whole
AUDIT_COLUMNS: Final = (
    Column("seq", Kind.NUMBER),
    Column("at (UTC)", Kind.ID),
    Column("actor", Kind.WORDS, drop=1),
    Column("action", floor=ACTION_FLOOR, marks="."),
    Column("subject", floor=NARROW),  # a license, a serial, a key, the path of an imported CSV
    Column("details", floor=NARROW),
)
SUBJECT: Final = 4  # the subject's column


def _columns(rows: list[list[Cell]]) -> tuple[Column, ...]:
    """The columns for these rows: a subject that is an id (a key's name ``ed25519-611b24b3``,
    ``rollout:1``, an alert's key: no space, no ``/``) is never split; a path folds at its
    ``/`` and ``license 8`` wraps between its words. At 80 columns the action folds after its
    dot to make room (``license.`` then ``imported``)."""
    ids = [
        len(str(row[SUBJECT]))
        for row in rows
        if not any(mark in str(row[SUBJECT]) for mark in " /")
    ]
    subject = replace(AUDIT_COLUMNS[SUBJECT], floor=max([NARROW, *ids]))
    return (*AUDIT_COLUMNS[:SUBJECT], subject, *AUDIT_COLUMNS[SUBJECT + 1 :])


@audit.command("list")
@click.option(
    "--before", type=click.IntRange(min=1), metavar="SEQ", help="Only events before event SEQ."
)
@limit_option(scripts=SCRIPT_ROWS)
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@pass_env
def audit_list(
    env: Env, before: int | None, limit: int | None, wide: bool, as_csv: bool, as_json: bool
) -> None:
    """The newest events first: who did what to which subject.

    --json and --csv print the same events oldest first.
    """
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    with env.store().transaction() as session:
        page = pages.events(
            session, before=before, limit=limit_for(how, limit, scripts=SCRIPT_ROWS)
        )
    oldest_first = list(reversed(page.items))
    if how is Output.JSON:
        env.print_json([asdict(e) | {"at": e.at.isoformat()} for e in oldest_first])
    else:
        shown = oldest_first if how is Output.CSV else page.items
        rows = [_event_row(e) for e in shown]
        print_rows(env.out, _columns(rows), rows, how)
    last = page.last
    more = More(page.left, "older events", f"--before {last.seq}" if last else None)
    print_page_line(env.out, env.err, more, how)


def _event_row(event: AuditEvent) -> list[Cell]:
    details = audit_trail.readable_details(event.details)
    return [
        str(event.seq),
        moment_text(event.at),
        event.actor,
        event.action,
        event.subject,
        plain(details) or "-",
    ]


@audit.command("verify")
@click.option(
    "--anchor",
    "anchor_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also check the chain against an anchor `audit anchor` made (its file, or a log "
    "holding its line): it must reach the anchored event, with the same hash.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@pass_env
def audit_verify(env: Env, anchor_file: Path | None, as_json: bool) -> None:
    """Recompute the hash chain and check the licenses, sites and phones rows against it;
    exit 1 and name the first broken link if it is broken."""
    anchor = (
        audit_trail.Anchor.parse(anchor_file.read_text(errors="replace"), str(anchor_file))
        if anchor_file is not None
        else None
    )
    with env.store().transaction() as session:
        verdict = audit_trail.verify(session, anchor)
    if as_json:
        env.print_json(asdict(verdict))
        if not verdict.ok:
            raise click.exceptions.Exit(1)
        return
    if not verdict.ok:
        where = f" at event {verdict.broken_at}" if verdict.broken_at is not None else ""
        raise CommandFailedError(
            f"audit trail broken{where}: {verdict.reason} "
            f"({verdict.checked} events verified before)"
        )
    reached = f", reaches the anchor (event {anchor.seq})" if anchor is not None else ""
    env.out.print(
        f"ok: {verdict.checked} events, chain intact{reached}; "
        f"{verdict.rows} licenses, sites and phones as audited",
        markup=False,
    )


@audit.command("anchor")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the anchor to FILE (JSON), somewhere the database's users cannot write.",
)
@click.option(
    "--webhook",
    metavar="URL",
    help="Also POST the anchor (JSON) to URL, signed as alert webhooks are.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the anchor as JSON.")
@pass_env
def audit_anchor(env: Env, path: Path | None, webhook: str | None, as_json: bool) -> None:
    """Verify the chain, then print its head (sequence and hash) as one log line to keep
    outside the database; `audit verify --anchor` then finds events deleted or rewritten up
    to it, even with the head row rewritten too."""
    store = env.store()
    with store.transaction() as session:
        anchor = audit_trail.anchor(session, env.clock)
        verdict = audit_trail.verify(session, anchor)
    if not verdict.ok:
        raise CommandFailedError(f"not anchoring a broken audit trail: {verdict.reason}")
    document = anchor.to_json() | {"database": store.safe_url}
    if path is not None:
        atomic_write(path, (json.dumps(document, indent=2) + "\n").encode())
    if webhook is not None:
        _post_anchor(env, webhook, document)
    if as_json:
        env.print_json(document)
        return
    click.echo(anchor.line())


def _post_anchor(env: Env, url: str, document: dict[str, object]) -> None:
    stamp = int(env.clock.now().timestamp())
    try:
        post_signed(url, document, webhook_key(env.data), stamp, user_agent="fleetkey-audit")
    except WebhookError as exc:
        where = "" if exc.status is not None else f" to {url}"  # a status names the URL
        raise CommandFailedError(f"anchor not sent{where}: {exc}") from exc
