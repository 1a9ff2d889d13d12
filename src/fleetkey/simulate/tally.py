"""What the simulation counts as it goes: features held and lost, reboots, check-syncs.

Features held are kept as changes (+1/-1 per phone and feature at the hour it happens), summed
into hourly counts at the end; the phone-hours without a feature are integrated exactly, each
change counting until the end of the period (a drop scheduled at a boot and cancelled by the
next boot before it came is taken back). A phone *lost* a feature when it held it at the start
and does not hold it now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fleetkey.simulate.fleet import Fleet
from fleetkey.simulate.licenses import Licenses, Posted
from fleetkey.simulate.phones import Cause, Phones
from fleetkey.simulate.rollouts import Notices
from fleetkey.simulate.scenario import Rollout, Scenario

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass
class RolloutTally:
    event: Rollout
    license: int  # the license the rollout's sites offered at its start (-1: none)
    phones: I64
    planned_finish_s: float
    planned_peak_per_s: float


@dataclass
class Tally:
    scenario: Scenario
    fleet: Fleet
    licenses: Licenses
    record: bool
    slots: tuple[int, ...] = field(init=False)
    hours: int = field(init=False)
    held_changes: F64 = field(init=False)  # [hour, feature]
    lost_changes: F64 = field(init=False)
    lost_seconds: F64 = field(init=False)  # [feature]
    start_held: I64 = field(init=False)
    ever_lost: I64 = field(init=False)  # per phone: slots it held at the start and lost since
    boots_by_hour: F64 = field(init=False)  # [hour, cause]
    reboot_log: list[tuple[I64, F64, I64, F64]] = field(default_factory=list)
    absorbed: int = 0
    checked_changed: int = 0
    waited_for_calls: int = 0
    rollouts: list[RolloutTally] = field(default_factory=list)
    started: bool = False

    def __post_init__(self) -> None:
        all_slots = 0
        for value in self.licenses.masks:
            all_slots |= int(value)
        for value in self.fleet.sites.phone_mask:
            all_slots |= int(value)
        self.slots = tuple(s for s in range(32) if all_slots >> s & 1)
        self.hours = self.scenario.days * 24
        width = len(self.slots)
        self.held_changes = np.zeros((self.hours + 1, width))
        self.lost_changes = np.zeros((self.hours + 1, width))
        self.lost_seconds = np.zeros(width)
        self.start_held = np.zeros(self.fleet.size, dtype=np.int64)
        self.ever_lost = np.zeros(self.fleet.size, dtype=np.int64)
        self.boots_by_hour = np.zeros((self.hours + 1, len(Cause)))

    @property
    def horizon_s(self) -> float:
        return self.hours * 3600.0

    def start(self, phones: Phones) -> None:
        self.start_held = phones.held.copy()
        self.lost_changes[:] = 0.0
        self.lost_seconds[:] = 0.0
        self.started = True
        # drops scheduled at the start count against what was held then
        due = np.isfinite(phones.drop_at_s) & (phones.drop_at_s < self.horizon_s)
        idx = np.nonzero(due)[0]
        self._lost(
            idx, phones.drop_at_s[idx], phones.held[idx], phones.held[idx] & ~phones.drop_mask[idx]
        )

    def change(self, phones: I64, at: F64, before: I64, after: I64) -> None:
        """Phones' held slots changed from ``before`` to ``after`` at ``at``."""
        moved = before != after
        if not moved.any():
            return
        phones, at, before, after = phones[moved], at[moved], before[moved], after[moved]
        self._held(at, before, after)
        if self.started:
            self._lost(phones, at, before, after)
            self._ever_lost(phones, before)

    def schedule_drops(self, phones: I64, drop_at: F64, held: I64, lapsing: I64) -> None:
        due = np.isfinite(drop_at) & (drop_at < self.horizon_s)
        if due.any():
            idx = np.nonzero(due)[0]
            self._held(drop_at[idx], held[idx], held[idx] & ~lapsing[idx])
            if self.started:
                self._lost(phones[idx], drop_at[idx], held[idx], held[idx] & ~lapsing[idx])

    def cancel_drops(self, phones: I64, state: Phones, at: F64) -> None:
        """Boots ending before their key's scheduled drop: the drop does not come."""
        drop = state.drop_at_s[phones]
        undo = np.isfinite(drop) & (drop > at) & (drop < self.horizon_s)
        if undo.any():
            idx = phones[undo]
            held = state.held[idx]
            self._held(drop[undo], held & ~state.drop_mask[idx], held)
            self._lost(idx, drop[undo], held & ~state.drop_mask[idx], held)
        state.drop_at_s[phones] = np.inf

    def reboots(self, phones: I64, begin: F64, cause: I64, requested: F64) -> None:
        hour = np.clip((begin // 3600).astype(np.int64), 0, self.hours)
        np.add.at(self.boots_by_hour, (hour, cause), 1.0)
        if self.record:
            self.reboot_log.append((phones.copy(), begin.copy(), cause.copy(), requested.copy()))

    def deferred(self, count: int) -> None:
        self.waited_for_calls += count

    def check_syncs(self, absorbed: npt.NDArray[np.bool_], changed: npt.NDArray[np.bool_]) -> None:
        self.absorbed += int(absorbed.sum())
        self.checked_changed += int(changed.sum())

    def rollout(self, event: Rollout, notices: Notices, posted: Posted, fleet: Fleet) -> None:
        at = (event.at - self.scenario.start).total_seconds()
        offered = posted.at(fleet.site[notices.phones[:1]], np.array([at]))
        license = int(offered[0]) if offered.shape[0] else -1
        self.rollouts.append(
            RolloutTally(event, license, notices.phones, notices.finish_s, notices.peak_per_s)
        )

    def finish(self, phones: Phones) -> None:
        everyone = np.arange(self.fleet.size, dtype=np.int64)
        end = np.full(self.fleet.size, self.horizon_s)
        self._ever_lost(everyone, phones.held_at(everyone, end))

    # the counting
    def _held(self, at: F64, before: I64, after: I64) -> None:
        hour = np.clip((at // 3600).astype(np.int64), 0, self.hours)
        for f, slot in enumerate(self.slots):
            delta = ((after >> slot) & 1) - ((before >> slot) & 1)
            np.add.at(self.held_changes[:, f], hour, delta)

    def _lost(self, phones: I64, at: F64, before: I64, after: I64) -> None:
        start = self.start_held[phones]
        hour = np.clip((at // 3600).astype(np.int64), 0, self.hours)
        remaining = np.clip(self.horizon_s - at, 0.0, None)
        for f, slot in enumerate(self.slots):
            delta = ((start & ~after) >> slot & 1) - ((start & ~before) >> slot & 1)
            np.add.at(self.lost_changes[:, f], hour, delta)
            self.lost_seconds[f] += float((delta * remaining).sum())

    def _ever_lost(self, phones: I64, held: I64) -> None:
        self.ever_lost[phones] |= self.start_held[phones] & ~held
