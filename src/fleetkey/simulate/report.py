"""What a simulation found, as values: the summary an operator reads and the hourly series.

Summary: per feature, the phones that lost it and the phone-hours without it; reboots by
cause; the peak of requests offered and answered and when, against the capacity and the
rollout budget (capacity x headroom), and the minutes in which the server's load (requests
answered) was over that budget; the longest a phone waited to finish booting (a wait on a dead
server too; at least from its start to the end of the period for a phone still waiting then)
and how many were still waiting at the end; phones left booted with an expired license (R8);
each rollout's completion. Series, one entry per hour:
requests answered (mean and the busiest minute), requests offered, 503s, boots, and phones
holding and missing each feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from fleetkey.core.features import FeatureCatalog
from fleetkey.simulate.phones import Cause
from fleetkey.simulate.simulation import Run


@dataclass(frozen=True)
class FeatureLoss:
    feature: str
    phones_at_start: int
    phones_affected: int
    phone_hours_lost: float
    phones_without_at_end: int


@dataclass(frozen=True)
class RolloutResult:
    license: str | None
    start: datetime
    deadline: datetime
    phones: int
    reached: int  # phones with the rollout's license installed at the end
    finished: datetime | None  # when the last of them installed it (None: not all did)
    planned_finish: datetime
    planned_peak_per_s: float


@dataclass(frozen=True)
class Summary:
    name: str
    start: datetime
    days: int
    phones: int
    sites: int
    features: tuple[FeatureLoss, ...]
    reboots: dict[str, int]
    peak_offered_per_s: float  # in the busiest minute
    peak_offered_at: datetime | None
    peak_answered_per_s: float
    peak_answered_at: datetime | None
    capacity_per_s: float
    budget_per_s: float
    over_budget_minutes: int
    longest_boot_s: float
    longest_boot_open: bool  # a phone was still waiting at the end: the longest is at least this
    waiting_at_end: int  # phones whose boot was not done when the period ended
    booted_expired_at_end: int  # R8: nothing but a config change or check-sync brings them back
    waited_for_calls: int
    check_syncs_absorbed: int
    rollouts: tuple[RolloutResult, ...]

    def to_json(self) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "name": self.name,
            "start": self.start.isoformat(),
            "days": self.days,
            "phones": self.phones,
            "sites": self.sites,
            "features": [
                {
                    "feature": f.feature,
                    "phones_at_start": f.phones_at_start,
                    "phones_affected": f.phones_affected,
                    "phone_hours_lost": round(f.phone_hours_lost, 3),
                    "phones_without_at_end": f.phones_without_at_end,
                }
                for f in self.features
            ],
            "reboots": self.reboots,
            "peak": {
                "offered_per_s": round(self.peak_offered_per_s, 3),
                "offered_at": when(self.peak_offered_at),
                "answered_per_s": round(self.peak_answered_per_s, 3),
                "answered_at": when(self.peak_answered_at),
                "capacity_per_s": self.capacity_per_s,
                "budget_per_s": self.budget_per_s,
                "minutes_over_budget": self.over_budget_minutes,
            },
            "longest_boot_s": round(self.longest_boot_s, 3),
            "longest_boot_at_least": self.longest_boot_open,
            "phones_waiting_at_end": self.waiting_at_end,
            "booted_expired_at_end": self.booted_expired_at_end,
            "reboots_waiting_for_calls": self.waited_for_calls,
            "check_syncs_absorbed": self.check_syncs_absorbed,
            "rollouts": [
                {
                    "license": r.license,
                    "start": r.start.isoformat(),
                    "deadline": r.deadline.isoformat(),
                    "phones": r.phones,
                    "reached": r.reached,
                    "finished": when(r.finished),
                    "planned_finish": r.planned_finish.isoformat(),
                    "planned_peak_per_s": round(r.planned_peak_per_s, 3),
                }
                for r in self.rollouts
            ],
        }


def summarize(run: Run, catalog: FeatureCatalog) -> Summary:
    tally, queue, phones = run.tally, run.queue, run.phones
    origin = run.scenario.start
    everyone = np.arange(run.fleet.size, dtype=np.int64)
    held_end = phones.held_at(everyone, np.full(run.fleet.size, run.horizon_s))
    ever = tally.ever_lost
    losses = tuple(
        FeatureLoss(
            catalog.label(slot),
            int(np.count_nonzero(tally.start_held >> slot & 1)),
            int(np.count_nonzero(ever >> slot & 1)),
            float(tally.lost_seconds[f] / 3600),
            int(np.count_nonzero((tally.start_held & ~held_end) >> slot & 1)),
        )
        for f, slot in enumerate(tally.slots)
    )
    boots = tally.boots_by_hour.sum(axis=0)
    answered = queue.answered_per_min / 60
    offered = queue.offered_per_min / 60
    budget = run.scenario.server.capacity_per_s * run.scenario.server.headroom

    def peak(series: np.ndarray) -> tuple[float, datetime | None]:
        if not series.shape[0] or series.max() <= 0:
            return 0.0, None
        minute = int(series.argmax())
        return float(series[minute]), origin + timedelta(minutes=minute)

    return Summary(
        run.scenario.name,
        origin,
        run.scenario.days,
        run.fleet.size,
        len(run.fleet.sites.serials),
        losses,
        {cause.reason.value: int(boots[cause]) for cause in Cause},
        *peak(offered),
        *peak(answered),
        run.scenario.server.capacity_per_s,
        budget,
        _over_budget(queue.answered_per_min, budget),
        queue.longest_wait_s,
        queue.longest_open,
        queue.waiting_at_end,
        int(np.count_nonzero(phones.expired_boot)),
        tally.waited_for_calls,
        tally.absorbed,
        tuple(_rollout(run, r) for r in tally.rollouts),
    )


def _over_budget(answered_per_min: np.ndarray, budget_per_s: float) -> int:
    """The minutes whose load (requests answered) was over the budget; a minute exactly at it
    is not (requests to a millionth: sums of parts of minutes carry rounding noise)."""
    return int(np.count_nonzero(np.round(answered_per_min, 6) > round(budget_per_s * 60, 6)))


def _rollout(run: Run, tally: Any) -> RolloutResult:
    origin = run.scenario.start
    phones = tally.phones
    license = tally.license
    has = run.phones.installed[phones] == license if license >= 0 else np.zeros(0, dtype=bool)
    reached = int(np.count_nonzero(has))
    finished = None
    if license >= 0 and reached == phones.shape[0] and reached:
        finished = origin + timedelta(seconds=float(run.phones.installed_at_s[phones].max()))
    return RolloutResult(
        run.licenses.names[license] if license >= 0 else None,
        tally.event.at,
        tally.event.deadline,
        int(phones.shape[0]),
        reached,
        finished,
        origin + timedelta(seconds=tally.planned_finish_s),
        tally.planned_peak_per_s,
    )


def hourly(run: Run, catalog: FeatureCatalog) -> dict[str, Any]:
    """The series, one value per hour from the start."""
    tally, queue = run.tally, run.queue
    hours = tally.hours
    used = queue.answered_per_min[: hours * 60].reshape(hours, 60)
    offered = queue.offered_per_min[: hours * 60].reshape(hours, 60)
    refused = queue.refused_per_s()[: hours * 60].reshape(hours, 60)
    held = np.cumsum(tally.held_changes, axis=0)[:hours]
    lost = np.cumsum(tally.lost_changes, axis=0)[:hours]
    return {
        "start": run.scenario.start.isoformat(),
        "step_s": 3600,
        "capacity_per_s": run.scenario.server.capacity_per_s,
        "answered_per_s": np.round(used.sum(axis=1) / 3600, 3).tolist(),
        "answered_peak_minute_per_s": np.round(used.max(axis=1) / 60, 3).tolist(),
        "offered_peak_minute_per_s": np.round(offered.max(axis=1) / 60, 3).tolist(),
        "refused_peak_per_s": np.round(refused.max(axis=1), 3).tolist(),
        "server_down_minutes": queue.down[: hours * 60].reshape(hours, 60).sum(axis=1).tolist(),
        "boots": tally.boots_by_hour[:hours].sum(axis=1).astype(int).tolist(),
        "phones_with": {
            catalog.label(slot): held[:, f].astype(int).tolist()
            for f, slot in enumerate(tally.slots)
        },
        "phones_without": {
            catalog.label(slot): lost[:, f].astype(int).tolist()
            for f, slot in enumerate(tally.slots)
        },
    }
