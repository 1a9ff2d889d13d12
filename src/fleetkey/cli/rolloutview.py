"""How a rollout is shown: its phones by state, every failure (the table the first few, with a
count of the rest), what it waits for, and a run's report."""

from __future__ import annotations

from typing import Any, Final

from rich.console import Console
from rich.text import Text

from fleetkey.cli.tables import Column, Kind, Output, print_rows, printable
from fleetkey.core.rollout.windows import Wait
from fleetkey.ops.executor import Report
from fleetkey.store import rollouts
from fleetkey.store.rollouts import Progress, Rollout, RolloutState, TargetState

FAILURES_SHOWN: Final = 10  # failures the status table lists unless told otherwise


def state_text(item: Rollout, progress: Progress) -> str:
    """``partial: 3 of 100 phones failed`` — the state with what makes it so."""
    failed = progress.states.get(TargetState.FAILED, 0)
    if item.state in (RolloutState.PARTIAL, RolloutState.FAILED):
        return f"{item.state}: {failed:,} of {progress.total:,} phones failed"
    return str(item.state)


PHONE_COLUMNS: Final = (Column("phones", Kind.WORDS), Column("count", Kind.NUMBER))
FAILURE_COLUMNS: Final = (Column("mac", Kind.ID), Column("reason", Kind.TEXT))


def print_status(
    console: Console,
    item: Rollout,
    progress: Progress,
    wait: Wait | None,
    shown: int = FAILURES_SHOWN,
) -> None:
    """The state, phones by state, the first ``shown`` failures and how many more, the wait.

    A failure's reason quotes the phone (its SIP reason phrase): the table shows control
    characters escaped (:func:`fleetkey.cli.tables.printable`), never sends them.
    """
    states = [[state.value, f"{progress.states.get(state.value, 0):,}"] for state in TargetState]
    title = f"rollout {item.id}: license {item.license_id}, {state_text(item, progress)}"
    print_rows(console, PHONE_COLUMNS, states, Output.TABLE, title=title)
    failed = progress.states.get(TargetState.FAILED, 0)
    if failed and shown:
        listed = progress.failures[:shown]
        title = f"failed phones: the first {len(listed):,} of {failed:,} (by MAC)"
        rows = [[mac, reason] for mac, reason in listed]
        print_rows(console, FAILURE_COLUMNS, rows, Output.TABLE, title=title)
    lines: list[str] = []
    if failed > shown:
        lines.append(
            f"… and {failed - shown:,} more failed phones "
            f"(fleetkey rollout status {item.id} --json lists every one)"
        )
    if item.windows_ignored_at is not None:
        since = f"{item.windows_ignored_at:%Y-%m-%d %H:%M:%S}"
        lines.append(
            f"maintenance windows overridden since {since} UTC (rollout run --now), until "
            "the rollout is paused or ends"
            if item.state in (RolloutState.PLANNED, RolloutState.RUNNING)
            else f"maintenance windows overridden from {since} UTC (rollout run --now) until "
            f"the rollout ended ({item.state})"
        )
    if wait is not None:
        lines.append(wait.text())
    elif progress.next_at is not None:
        lines.append(f"next check-sync due now ({progress.next_at:%Y-%m-%d %H:%M:%S} UTC)")
    for line in lines:
        console.print(Text(printable(line)))


def report_json(final: Rollout, progress: Progress, report: Report) -> dict[str, Any]:
    document = rollouts.rollout_json(final, progress)
    document["run"] = {
        "notified": report.notified,
        "answered": {str(k): v for k, v in sorted(report.answered.items())},
        "unanswered": report.unanswered,
        "retried": report.retried,
        "moved_to_window": report.moved_to_window,
        "released": report.released,
        "stopped_by": report.stopped_by.name if report.stopped_by else None,
        "paces": [{"at": at.isoformat(), "pace": p, "why": why} for at, p, why in report.paces],
    }
    return document


def report_lines(report: Report) -> list[str]:
    answers = ", ".join(f"{n:,} x {status}" for status, n in sorted(report.answered.items()))
    lines = [
        f"NOTIFYs sent {report.notified:,}; answers {answers or 'none'}; "
        f"unanswered {report.unanswered:,}; retries {report.retried:,}; "
        f"moved to a window {report.moved_to_window:,}"
    ]
    lines += [f"  {at:%H:%M:%S} pace {pace:.2f}: {why}" for at, pace, why in report.paces]
    return lines
