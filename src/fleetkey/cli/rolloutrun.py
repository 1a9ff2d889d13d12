"""``fleetkey rollout run``: a rollout's check-syncs sent and confirmed, with a progress bar
that says what it waits for; Ctrl-C and SIGTERM pause it; the exit status says how it ended."""

from __future__ import annotations

import asyncio
import os
import signal

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fleetkey.cli.context import Env, pass_env
from fleetkey.cli.rolloutview import print_status, report_json, report_lines, state_text
from fleetkey.core.rollout.windows import wait_for
from fleetkey.errors import CommandFailedError, InputError
from fleetkey.ops.executor import STOP_GRACE_S, Executor, ExecutorSettings, Report
from fleetkey.ops.rollout import plan_now
from fleetkey.store import inventory, rollouts, schedule
from fleetkey.store.rollouts import FINISHED, Rollout, RolloutState, TargetState

SIP_PASSWORD_ENV = "FLEETKEY_SIP_PASSWORD"  # noqa: S105  # the variable's name, not a password


@click.command(name="run")
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
@click.option(
    "--stop-grace",
    "stop_grace_s",
    type=click.FloatRange(min=0),
    default=STOP_GRACE_S,
    show_default=True,
    hidden=True,  # for tests: how long a stop waits for the NOTIFYs in flight
    help="Seconds NOTIFYs in flight may take to be answered at a stop.",
)
@click.option(
    "--now",
    "now",
    is_flag=True,
    help="Send from now, whatever the sites' maintenance windows say (audited).",
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
    stop_grace_s: float,
    now: bool,
    as_json: bool,
) -> None:
    """Send the check-syncs of a rollout at its pace and confirm every phone's fetch.

    Ctrl-C (or SIGTERM) pauses the rollout: run it again to resume. Exits 1 when phones failed.
    """
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
        stop_grace_s=stop_grace_s,
    )
    store = env.store()
    with store.transaction() as session:
        overridden = rollouts.get(session, rollout_id).windows_ignored_at is not None
        sites = {site.serial: site for site in inventory.sites(session)}
    if now:
        replanned = plan_now(store, env.clock, env.actor, rollout_id)
        if replanned is not None and not as_json:
            env.err.print(
                f"rollout {rollout_id}: maintenance windows overridden (--now, audited): "
                f"{replanned.phones:,} pending phones from "
                f"{replanned.waves[0].start:%Y-%m-%d %H:%M:%S} UTC, last boot done "
                f"{replanned.finish:%H:%M:%S} UTC"
            )
            for line in replanned.explanation[3:-1]:
                env.err.print(f"  {line}")
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
            detail = f"{notified:,} notified · {failed:,} failed"
            site = sites.get(progress.next_site or "")
            if site is not None:
                window = None if now or overridden else site.window
                wait = wait_for(
                    site.serial, site.timezone, window, progress.next_at, env.clock.now()
                )
                if wait is not None and (wait.closed or wait.seconds >= 60):
                    detail += f" · {wait.text()}"
            bar.update(task, total=progress.total, completed=done + failed, detail=detail)

        executor = Executor(
            store, env.clock, rollout_id, settings, on_progress=show, actor=env.actor
        )
        report = asyncio.run(_until_signalled(executor))
    with store.transaction() as session:
        final = rollouts.get(session, rollout_id)
        progress = rollouts.progress(session, rollout_id)
        wait = schedule.waiting(session, final, progress, env.clock.now())
    if as_json:
        env.print_json(report_json(final, progress, report))
    else:
        print_status(env.out, final, progress, wait)
        for line in report_lines(report):
            env.out.print(line)
    _exit_status(env, final, progress, report)


async def _until_signalled(executor: Executor) -> Report:
    """Run ``executor``; SIGINT and SIGTERM stop it (the rollout paused), a second one now."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, executor.stop, signum)
    try:
        return await executor.run()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _exit_status(env: Env, final: Rollout, progress: rollouts.Progress, report: Report) -> None:
    """Exit 128 + the signal when stopped by one (the rollout paused), 1 when phones failed."""
    failed = progress.states.get(TargetState.FAILED, 0)
    if report.halted is not None:
        raise CommandFailedError(
            f"rollout {final.id} paused: {report.halted}",
            hint=f"cancel it with `fleetkey rollout cancel {final.id}` and plan a rollout of "
            "the posted key",
        )
    if report.stopped_by is not None:
        notified = progress.states.get(TargetState.NOTIFIED, 0)
        env.err.print(
            f"rollout {final.id} is {final.state} ({report.stopped_by.name}): {progress.open:,} of "
            f"{progress.total:,} phones open ({notified:,} notified, {progress.open - notified:,} "
            f"still to notify); resume with `fleetkey rollout run {final.id}`"
        )
        raise click.exceptions.Exit(128 + report.stopped_by.value)
    if failed:
        what = state_text(final, progress) if final.state in FINISHED else (
            f"{final.state}, {failed:,} of {progress.total:,} phones failed"
        )  # fmt: skip
        raise CommandFailedError(
            f"rollout {final.id} {what}",
            hint=f"see them with `fleetkey rollout status {final.id}`; send them again with "
            f"`fleetkey rollout retry {final.id}` and `fleetkey rollout run {final.id}`",
        )
    if final.state is not RolloutState.DONE:
        env.err.print(
            f"rollout {final.id} is {final.state}: {progress.open:,} of {progress.total:,} "
            "phones left"
        )
