"""``fleetkey rollout plan|run|status|list|pause|resume|cancel``: staggered check-sync rollouts."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetkey.cli.context import Env, pass_env, subject
from fleetkey.cli.planview import plan_json, plan_plot, plan_table
from fleetkey.cli.render import counts_text
from fleetkey.errors import InputError
from fleetkey.ops.executor import ExecutorSettings, Report
from fleetkey.ops.rollout import PlanOptions, plan_license, save
from fleetkey.store import rollouts
from fleetkey.store.rollouts import Rollout, RolloutState, TargetState

SIP_PASSWORD_ENV = "FLEETKEY_SIP_PASSWORD"  # noqa: S105  # the variable's name, not a password
TABLE_ROWS = 40


@click.group()
def rollout() -> None:
    """Plan and run staggered check-sync rollouts of a posted license."""


def _capacity(value: str) -> float | None:
    if value == "measured":
        return None
    try:
        number = float(value)
    except ValueError:
        message = f"{value!r} is neither a number of requests/s nor 'measured'"
        raise click.BadParameter(message) from None
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
        plan_plot(made, plot)
    if as_json:
        env.print_json(plan_json(made, rollout_id))
        return
    for line in made.explanation:
        env.out.print(line)
    env.out.print(plan_table(made))
    if plot is not None:
        env.out.print(f"load plot written to {plot}")
    if rollout_id is not None:
        env.out.print(
            f"saved as rollout {rollout_id}: run it with `fleetkey rollout run {rollout_id}`"
        )


@rollout.command(name="run")
@click.argument("rollout_id", type=int)
@click.option(
    "--confirm-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds from check-sync to the license fetch before a retry.",
)
@click.option("--max-attempts", type=click.IntRange(1, 10), default=3, show_default=True)
@click.option(
    "--retry-after",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds before a failed check-sync is tried again.",
)
@click.option(
    "--sip-user",
    default=None,
    help=f"Answer digest challenges as this user (password in ${SIP_PASSWORD_ENV}).",
)
@click.option(
    "--local-host", default="127.0.0.1", show_default=True, help="Address NOTIFYs are sent from."
)
@click.option(
    "--sip-t1",
    type=float,
    default=0.5,
    show_default=True,
    help="RFC 3261 T1 in seconds (Timer F is 64 x T1).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
@pass_env
def run(
    env: Env,
    rollout_id: int,
    confirm_timeout: float,
    max_attempts: int,
    retry_after: float,
    sip_user: str | None,
    local_host: str,
    sip_t1: float,
    as_json: bool,
) -> None:
    """Send the check-syncs of a rollout at its pace and confirm every phone's fetch."""
    from fleetkey.ops.executor import Executor

    credentials = None
    if sip_user is not None:
        password = os.environ.get(SIP_PASSWORD_ENV)
        if not password:
            raise InputError(f"--sip-user needs the password in ${SIP_PASSWORD_ENV}")
        credentials = (sip_user, password)
    settings = ExecutorSettings(
        confirm_timeout=confirm_timeout,
        max_attempts=max_attempts,
        retry_after=retry_after,
        local_host=local_host,
        credentials=credentials,
        t1=sip_t1,
    )
    store = env.store()
    with Progress(
        TextColumn("rollout {task.fields[id]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=env.err,
        disable=as_json,
        transient=False,
    ) as bar:
        task = bar.add_task("rollout", total=None, id=rollout_id, detail="")

        def show(progress: rollouts.Progress) -> None:
            done = progress.states.get(TargetState.CONFIRMED, 0)
            failed = progress.states.get(TargetState.FAILED, 0)
            notified = progress.states.get(TargetState.NOTIFIED, 0)
            bar.update(
                task,
                total=progress.total,
                completed=done + failed,
                detail=f"{notified:,} notified · {failed:,} failed",
            )

        executor = Executor(store, env.clock, rollout_id, settings, on_progress=show)
        report = asyncio.run(executor.run())
    with store.transaction() as session:
        final = rollouts.get(session, rollout_id)
    if as_json:
        env.print_json(_report_json(final, report))
        return
    env.out.print(_status_table(final, report.progress))
    answers = counts_text(dict(sorted(report.answered.items())))
    env.out.print(
        f"NOTIFYs sent {report.notified:,}; answers {answers}; "
        f"unanswered {report.unanswered:,}; retries {report.retried:,}; "
        f"moved to a window {report.moved_to_window:,}"
    )
    for at, pace, why in report.paces:
        env.out.print(f"  {at:%H:%M:%S} pace {pace:.2f}: {why}")


def _report_json(final: Rollout, report: Report) -> dict[str, Any]:
    document = rollouts.rollout_json(final, report.progress)
    document["run"] = {
        "notified": report.notified,
        "answered": {str(k): v for k, v in sorted(report.answered.items())},
        "unanswered": report.unanswered,
        "retried": report.retried,
        "moved_to_window": report.moved_to_window,
        "paces": [{"at": at.isoformat(), "pace": p, "why": why} for at, p, why in report.paces],
    }
    return document


def _status_table(final: Rollout, progress: rollouts.Progress | None) -> Table:
    table = Table(
        title=f"rollout {final.id}: license {final.license_id}, {final.state}", title_justify="left"
    )
    table.add_column("phones")
    table.add_column("count", justify="right")
    for state in TargetState:
        count = progress.states.get(state.value, 0) if progress else 0
        table.add_row(state.value, f"{count:,}")
    if progress and progress.failures:
        shown = "; ".join(f"{mac}: {why}" for mac, why in progress.failures[:5])
        table.caption = f"failed: {shown}"
    return table


@rollout.command()
@click.argument("rollout_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def status(env: Env, rollout_id: int, as_json: bool) -> None:
    """Where a rollout stands: phones by state, failures with their reasons."""
    with env.store().transaction() as session:
        final = rollouts.get(session, rollout_id)
        progress = rollouts.progress(session, rollout_id)
    if as_json:
        env.print_json(rollouts.rollout_json(final, progress))
        return
    env.out.print(_status_table(final, progress))
    if progress.next_at is not None:
        env.out.print(f"next check-sync due {progress.next_at:%Y-%m-%d %H:%M:%S} UTC")


@rollout.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def list_rollouts(env: Env, as_json: bool) -> None:
    """Every rollout with its state."""
    with env.store().transaction() as session:
        items = [(r, rollouts.progress(session, r.id)) for r in rollouts.listing(session)]
    if as_json:
        env.print_json([rollouts.rollout_json(r, p) for r, p in items])
        return
    table = Table(title="rollouts", title_justify="left")
    for name in ("id", "license", "state", "phones", "confirmed", "failed", "deadline"):
        table.add_column(name)
    for item, progress in items:
        table.add_row(
            str(item.id),
            str(item.license_id),
            item.state.value,
            f"{progress.total:,}",
            f"{progress.states.get('confirmed', 0):,}",
            f"{progress.states.get('failed', 0):,}",
            f"{item.deadline:%Y-%m-%d}",
        )
    env.out.print(table)


def _mover(name: str, to: RolloutState, doc: str) -> click.Command:
    @click.argument("rollout_id", type=int)
    @click.option("--json", "as_json", is_flag=True, help="Print the rollout as JSON.")
    @pass_env
    def command(env: Env, rollout_id: int, as_json: bool) -> None:
        with env.store().transaction() as session:
            moved = rollouts.move(session, env.clock, env.actor, rollout_id, to)
            progress = rollouts.progress(session, rollout_id) if as_json else None
        if as_json:
            env.print_json(rollouts.rollout_json(moved, progress))
            return
        env.out.print(f"rollout {moved.id} is {moved.state}")

    command.__doc__ = doc
    return rollout.command(name=name)(command)


_mover("pause", RolloutState.PAUSED, "Pause a rollout: running executors stop after their sends.")
_mover("resume", RolloutState.RUNNING, "Resume a paused rollout (then `rollout run` it again).")
_mover("cancel", RolloutState.CANCELLED, "Cancel a rollout for good.")
