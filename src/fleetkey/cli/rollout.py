"""``fleetkey rollout plan|run|status|retry|list|pause|resume|cancel``: staggered check-sync
rollouts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Final

import click

from fleetkey.cli.context import Env, pass_env, subject
from fleetkey.cli.loadplot import draw
from fleetkey.cli.planview import plan_json, plan_picture, print_plan_table, rollout_picture
from fleetkey.cli.rolloutrun import run
from fleetkey.cli.rolloutview import FAILURES_SHOWN, print_status
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
from fleetkey.ops.rollout import PlanOptions, plan_license, save
from fleetkey.store import pages, rollouts, schedule
from fleetkey.store.rollouts import RolloutState, TargetState


@click.group()
def rollout() -> None:
    """Plan and run staggered check-sync rollouts of a posted license."""


def _capacity(value: str) -> float | None:
    if value == "measured":
        return None
    try:
        number = float(value)
    except ValueError as exc:
        message = f"{value!r} is neither a number of requests/s nor 'measured'"
        raise click.BadParameter(message) from exc
    if not number > 0:
        raise click.BadParameter("capacity must be above 0 requests/s")
    return number


@rollout.command()
@click.argument("license_argument", metavar="LICENSE_ID", type=int, required=False)
@click.option("--license", "license_id", type=int, help="The posted successor (or LICENSE_ID).")
@click.option(
    "--capacity",
    default="measured",
    show_default=True,
    metavar="REQ_PER_S|measured",
    help="Requests per second the server sustains.",
)
@click.option(
    "--headroom",
    type=float,
    default=0.7,
    show_default=True,
    help="Share of the capacity the rollout may use.",
)
@click.option(
    "--deadline",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Done by this day (UTC); default: the old license's expiry less 2 days.",
)
@click.option("--slot", "slot_s", type=int, default=60, show_default=True, help="Seconds per wave.")
@click.option(
    "--reboot/--no-reboot",
    default=True,
    show_default=True,
    help="Send check-sync;reboot=true (phones with alwaysReboot=0 boot only then).",
)
@click.option(
    "--boot-requests",
    type=click.FloatRange(min=1),
    default=None,
    help="Requests one boot costs (default: measured from the fetch records).",
)
@click.option(
    "--boot-seconds",
    "boot_s",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds a boot takes (default: measured from the fetch records).",
)
@click.option("--dry-run", is_flag=True, help="Plan and show, but save nothing.")
@click.option(
    "--calls-per-hour",
    type=click.FloatRange(0, 2),
    default=None,
    help="Also simulate the plan with phones making this many calls an hour (a reboot waits "
    "for the call to end): when it really ends.",
)
@click.option(
    "--call-minutes",
    type=click.FloatRange(0, 15),
    default=3.0,
    show_default=True,
    help="Mean length of those calls.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a load plot (PNG).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def plan(
    env: Env,
    license_argument: int | None,
    license_id: int | None,
    capacity: str,
    headroom: float,
    deadline: datetime | None,
    slot_s: int,
    reboot: bool,
    boot_requests: float | None,
    boot_s: float | None,
    dry_run: bool,
    calls_per_hour: float | None,
    call_minutes: float,
    plot: Path | None,
    as_json: bool,
) -> None:
    """Plan waves of check-syncs for the phones of posted license LICENSE_ID, and save them."""
    chosen = subject(
        None if license_argument is None else str(license_argument),
        None if license_id is None else str(license_id),
        metavar="LICENSE_ID",
        flag="--license",
    )
    options = PlanOptions(
        int(chosen),
        _capacity(capacity),
        headroom,
        deadline.date() if deadline else None,
        slot_s,
        reboot,
        boot_requests,
        boot_s,
    )
    store = env.store()
    made = plan_license(store, env.clock, options)
    rollout_id = None if dry_run else save(store, env.clock, env.actor, options, made)
    if plot is not None:
        draw(plan_picture(made), plot)
    forecast = None
    if calls_per_hour is not None:
        from fleetkey.ops.forecast import forecast_plan  # the simulator only when asked

        forecast = forecast_plan(made, calls_per_hour, call_minutes, reboot)
    if as_json:
        document = plan_json(made, rollout_id)
        env.print_json({**document, "simulated": forecast.to_json()} if forecast else document)
        return
    for line in made.explanation:
        env.out.print(line)
    if forecast is not None:
        env.out.print(forecast.text())
    print_plan_table(env.out, made)
    if plot is not None:
        env.out.print(f"load plot written to {plot}")
    if rollout_id is not None:
        env.out.print(
            f"saved as rollout {rollout_id}: run it with `fleetkey rollout run {rollout_id}`"
        )


@rollout.command()
@click.argument("rollout_id", type=int)
@click.option(
    "--failures",
    "shown",
    type=click.IntRange(min=0),
    default=FAILURES_SHOWN,
    show_default=True,
    help="Failed phones the table lists (--json lists every one).",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the load plot (PNG): windows, deadline, capacity, planned and actual load.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def status(env: Env, rollout_id: int, shown: int, plot: Path | None, as_json: bool) -> None:
    """Where a rollout stands: phones by state, every failure, what it waits for."""
    with env.store().transaction() as session:
        final = rollouts.get(session, rollout_id)
        progress = rollouts.progress(session, rollout_id)
        wait = schedule.waiting(session, final, progress, env.clock.now())
        picture = rollout_picture(session, final, env.clock.now()) if plot else None
    if plot is not None and picture is not None:
        draw(picture, plot)
    if as_json:
        env.print_json(rollouts.rollout_json(final, progress, wait))
        return
    print_status(env.out, final, progress, wait, shown)
    if plot is not None:
        env.out.print(f"load plot written to {plot}")


@rollout.command()
@click.argument("rollout_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def retry(env: Env, rollout_id: int, as_json: bool) -> None:
    """Put a rollout's failed phones back in its queue (then `rollout run` it)."""
    with env.store().transaction() as session:
        count = schedule.requeue_failed(session, env.clock, env.actor, rollout_id)
    with env.store().transaction() as session:
        final = rollouts.get(session, rollout_id)
        progress = rollouts.progress(session, rollout_id)
    if as_json:
        env.print_json({"requeued": count, **rollouts.rollout_json(final, progress)})
        return
    env.out.print(
        f"rollout {rollout_id}: {count:,} failed phones re-queued, from now at the rollout's "
        f"pace; it is {final.state}: run it with `fleetkey rollout run {rollout_id}`"
    )


ROLLOUT_COLUMNS: Final = (
    Column("id", Kind.ID),
    Column("license", Kind.ID),
    Column("state", Kind.WORDS),
    Column("phones", Kind.NUMBER),
    Column("confirmed", Kind.NUMBER),
    Column("failed", Kind.NUMBER),
    Column("deadline", Kind.ID),
)


@rollout.command(name="list")
@click.option("--before", type=int, metavar="ID", help="Start below this id (the next page).")
@limit_option(scripts=None)
@table_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def list_rollouts(
    env: Env, before: int | None, limit: int | None, wide: bool, as_csv: bool, as_json: bool
) -> None:
    """Every rollout with its state, newest first; --json and --csv oldest first."""
    how = output(as_json=as_json, wide=wide, as_csv=as_csv)
    now = env.clock.now()
    with env.store().transaction() as session:
        page = pages.rollouts(session, before=before, limit=limit_for(how, limit, scripts=None))
        shown = page.items if how in (Output.TABLE, Output.WIDE) else page.items[::-1]
        items = [(r, rollouts.progress(session, r.id)) for r in shown]
        waits = [schedule.waiting(session, r, p, now) for r, p in items]
    if how is Output.JSON:
        env.print_json(
            [rollouts.rollout_json(r, p, w) for (r, p), w in zip(items, waits, strict=True)]
        )
    else:
        rows = [
            [
                str(item.id),
                str(item.license_id),
                item.state.value,
                f"{progress.total:,}",
                f"{progress.states.get(TargetState.CONFIRMED, 0):,}",
                f"{progress.states.get(TargetState.FAILED, 0):,}",
                f"{item.deadline:%Y-%m-%d}",
            ]
            for item, progress in items
        ]
        print_rows(env.out, ROLLOUT_COLUMNS, rows, how, title="rollouts")
    last = page.last
    more = More(page.left, "older rollouts", f"--before {last.id}" if last else None)
    print_page_line(env.out, env.err, more, how)


def _mover(name: str, to: RolloutState, doc: str) -> click.Command:
    @click.argument("rollout_id", type=int)
    @click.option("--json", "as_json", is_flag=True, help="Print the rollout as JSON.")
    @pass_env
    def command(env: Env, rollout_id: int, as_json: bool) -> None:
        with env.store().transaction() as session:
            moved = rollouts.move(session, env.clock, env.actor, rollout_id, to)
            progress = rollouts.progress(session, rollout_id)
        if as_json:
            env.print_json(rollouts.rollout_json(moved, progress))
            return
        env.out.print(f"rollout {moved.id} is {moved.state}")

    command.__doc__ = doc
    return rollout.command(name=name)(command)


rollout.add_command(run)

_mover("pause", RolloutState.PAUSED, "Pause a rollout: running executors stop after their sends.")
_mover("resume", RolloutState.RUNNING, "Resume a paused rollout (then `rollout run` it again).")
_mover("cancel", RolloutState.CANCELLED, "Cancel a rollout for good.")
