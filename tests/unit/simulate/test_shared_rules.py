"""The simulator decides R9 check-syncs and R4's idle moment as the per-phone engine does.

R9: both call ``core.device.engine``'s ``check_sync_absorbed`` and ``check_sync_reboots`` (the
simulator had its own expression); every case of a phone's state and a check-sync is checked
against a real ``DeviceEngine``. R4: the simulator finds the moment a phone is in no call from
its call table (``idle_from``), the engine by being told of calls as they start and end; the two
are compared over many phones, moments and call rates (hypothesis).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.engine import (
    Boot,
    CheckSyncOutcome,
    DeviceEngine,
    Reason,
    check_sync_absorbed,
    check_sync_reboots,
)
from fleetkey.core.signing import TrustedKeys
from fleetkey.simulate.calls import calls_between, idle_from
from fleetkey.simulate.scenario import CALL_SLOT_S

T0 = datetime(2027, 3, 1, tzinfo=UTC)
MAC = "0004f2000001"


def engine_reboots(booting: bool, pending: bool, asked: bool, always: bool, changed: bool) -> bool:
    """Does a real engine in this state reboot (now or after its calls) on a check-sync?"""
    engine = DeviceEngine(PhoneConfig(MAC, always_reboot=always), TrustedKeys(()))
    engine.power_on(T0)
    if not booting:
        engine.boot_completed(T0, None, None)
    if pending:
        engine.call_started(T0)
        engine.state.pending = (Reason.LICENSE_EXPIRED, T0)
    before = len(engine.reboots)
    engine.check_sync(T0, asked)
    outcome = engine.check_syncs[-1].outcome
    if outcome is CheckSyncOutcome.CHECK_CONFIG:
        engine.config_checked(T0, changed, Reason.CHECK_SYNC)
    deferred = outcome is CheckSyncOutcome.DEFERRED
    return len(engine.reboots) > before or deferred


def test_every_check_sync_case_is_decided_alike_by_the_simulator_and_the_engine() -> None:
    cases = list(itertools.product((False, True), repeat=5))
    booting, pending, asked, always, changed = (np.array(c) for c in zip(*cases, strict=True))
    absorbed = check_sync_absorbed(booting, pending)  # as the simulator asks, over arrays
    reboots = check_sync_reboots(absorbed, asked, always, changed)
    for i, case in enumerate(cases):
        assert bool(reboots[i]) == engine_reboots(*case), case
        assert bool(absorbed[i]) == (case[0] or case[1]), case


@settings(max_examples=300, deadline=None)
@given(
    key=st.integers(0, 2**64 - 1),
    at=st.floats(0, 3 * 86400),
    chance=st.floats(0, 0.6),
    mean=st.floats(10, 900),
)
def test_the_simulators_idle_moment_is_the_engines(
    key: int, at: float, chance: float, mean: float
) -> None:
    """A reboot asked for at ``at`` starts when the phone is in no call: the simulator's
    ``idle_from`` against an engine fed the same calls (starts and ends, in time order: a call
    ending at a moment is over then, one starting then has begun)."""
    idle = float(idle_from(np.array([key], dtype=np.uint64), np.array([at]), np.array([chance]),
                           np.array([mean]))[0])  # fmt: skip
    calls = calls_between(key, at - 4 * CALL_SLOT_S - 2 * mean, idle + 1, chance, mean)
    events = sorted(
        [(s, 1, "start") for s, _ in calls] + [(e, 0, "end") for _, e in calls] + [(at, 2, "ask")]
    )
    engine = DeviceEngine(PhoneConfig(MAC), TrustedKeys(()))
    engine.power_on(T0)
    engine.boot_completed(T0, None, None)
    started: float | None = None
    for moment, _, what in events:
        now = T0 + timedelta(seconds=moment)
        if what == "start":
            actions = engine.call_started(now)
        elif what == "end":
            actions = engine.call_ended(now)
        else:
            actions = engine.check_sync(now, reboot=True)
        if started is None and any(isinstance(a, Boot) for a in actions):
            started = moment
    assert started is not None
    assert abs(started - idle) < 1e-3, (started, idle)
