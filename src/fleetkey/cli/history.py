"""``fleetkey fetches prune`` and ``fetches days``: fetch history that ages out, and the daily
roll-ups kept in its place (store/retention.py)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

import click

from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.tables import Column, Kind, Output, output, print_rows, table_options
from fleetkey.store import retention

DAY_COLUMNS: Final = (
    Column("day", Kind.ID),
    Column("site", Kind.ID),
    Column("requests", Kind.NUMBER),
    Column("phones", Kind.NUMBER),
    Column("boots", Kind.NUMBER),
    Column("bytes", Kind.NUMBER, drop=3),
    Column("p50 ms", Kind.NUMBER, drop=4),
    Column("p95 ms", Kind.NUMBER, drop=2),
    Column("p99 ms", Kind.NUMBER, drop=1),
    Column("answers", Kind.WORDS, drop=5),
)


@click.command("prune")
@click.option(
    "--retention",
    "retention_days",
    default=retention.DEFAULT_RETENTION_DAYS,
    show_default=True,
    type=click.IntRange(0),
    metavar="DAYS",
    help="Keep the records of the last DAYS whole days (UTC); 0 keeps every record.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@pass_env
def prune(env: Env, retention_days: int, as_json: bool) -> None:
    """Roll up, then remove, the fetch records older than the retention, as `serve` does
    every hour: per site and day the requests by protocol and status, bytes, boots, distinct
    phones and latency percentiles stay for ever (`fetches days`). Removes in small batches,
    so servers keep writing meanwhile."""
    done = retention.prune(env.store().engine, env.clock.now(), retention_days)
    if as_json:
        env.print_json(done.to_json())
        return
    if done.cutoff is None:
        env.out.print("retention 0: every fetch record is kept", markup=False)
        return
    env.out.print(
        f"{done.deleted} fetch records before {done.cutoff:%Y-%m-%d} removed; "
        f"{len(done.days)} days rolled up"
        + (f"; {done.partitions} day partitions dropped" if done.partitions else ""),
        markup=False,
    )


@click.command("days")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="From this day (YYYY-MM-DD).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Before this day.")
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print the roll-ups as JSON.")
@pass_env
def days(
    env: Env,
    since: datetime | None,
    until: datetime | None,
    wide: bool,
    as_csv: bool,
    as_json: bool,
) -> None:
    """The daily roll-ups of pruned fetch records, per site (`-`: no phone of the inventory)
    and UTC day, oldest first."""
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    with env.store().transaction() as session:
        found = retention.fetch_days(session, _day(since), _day(until))
    if how is Output.JSON:
        env.print_json([d.to_json() for d in found])
        return
    rows = [
        [
            d.day.isoformat(),
            d.site,
            f"{d.requests:,}",
            f"{d.phones:,}",
            f"{d.boots:,}",
            f"{d.bytes:,}",
            f"{d.p50_ms:.1f}",
            f"{d.p95_ms:.1f}",
            f"{d.p99_ms:.1f}",
            ", ".join(f"{k}: {v}" for k, v in d.by_answer.items()),
        ]
        for d in found
    ]
    print_rows(env.out, DAY_COLUMNS, rows, how)


def _day(value: datetime | None) -> date | None:
    return None if value is None else value.date()
