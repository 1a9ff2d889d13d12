"""How a rollout is shown: its phones by state, every failure (the table the first few, with a
count of the rest), what it waits for, and a run's report."""

from __future__ import annotations

from typing import Any, Final

from rich.console import Group
from rich.table import Table
from rich.text import Text

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


def status_view(
    item: Rollout, progress: Progress, wait: Wait | None, shown: int = FAILURES_SHOWN
) -> Group:
    """The state, phones by state, the first ``shown`` failures and how many more, the wait."""
    table = Table(
        title=f"rollout {item.id}: license {item.license_id}, {state_text(item, progress)}",
        title_justify="left",
    )
    table.add_column("phones")
    table.add_column("count", justify="right")
    for state in TargetState:
        table.add_row(state.value, f"{progress.states.get(state.value, 0):,}")
    parts: list[Any] = [table]
    failed = progress.states.get(TargetState.FAILED, 0)
    if failed and shown:
        listed = progress.failures[:shown]
        failures = Table(
            title=f"failed phones: the first {len(listed):,} of {failed:,} (by MAC)",
            title_justify="left",
        )
        failures.add_column("mac", no_wrap=True, min_width=12)
        failures.add_column("reason", overflow="fold")
        for mac, reason in listed:
            failures.add_row(mac, Text(reason))
        parts.append(failures)
    if failed > shown:
        parts.append(
            Text(
                f"… and {failed - shown:,} more failed phones "
                f"(fleetkey rollout status {item.id} --json lists every one)"
            )
        )
    if item.windows_ignored_at is not None:
        since = f"{item.windows_ignored_at:%Y-%m-%d %H:%M:%S}"
        parts.append(
            Text(
                f"maintenance windows overridden since {since} UTC (rollout run --now), until "
                "the rollout is paused or ends"
            )
        )
    if wait is not None:
        parts.append(Text(wait.text()))
    elif progress.next_at is not None:
        parts.append(Text(f"next check-sync due now ({progress.next_at:%Y-%m-%d %H:%M:%S} UTC)"))
    return Group(*parts)


def report_json(final: Rollout, progress: Progress, report: Report) -> dict[str, Any]:
    document = rollouts.rollout_json(final, progress)
    document["run"] = {
        "notified": report.notified,
        "answered": {str(k): v for k, v in sorted(report.answered.items())},
        "unanswered": report.unanswered,
        "retried": report.retried,
        "moved_to_window": report.moved_to_window,
        "released": report.released,
        "stopped_by": report.stopped_by,
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
