"""A phone's license behaviour (spec §3, R1-R9) as an event-driven state machine.

Pure: no clock, no network. The host (a device, the emulator, the simulator) feeds events with
the time they happen and carries out the actions returned: ``Boot`` (run the boot sequence,
fetch the listed files in order, then report with ``boot_completed``) and ``CheckConfig``
(fetch the master configuration and its files, then report with ``config_checked``). Timers
(the daily license poll, configuration polls) are the engine's; the host asks ``next_wakeup``
and calls ``advance`` when that moment has come.

The host hands each event over when it happens, even while it is still carrying out an earlier
action: a check-sync that arrives during a boot is judged while the phone is booting (and
absorbed), not after the boot as if it had just arrived.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

from fleetkey.core.device.boot import FileRequest, boot_order
from fleetkey.core.device.config import PhoneConfig, next_config_poll
from fleetkey.core.device.schedule import (
    Flags,
    Mask,
    boot_draw,
    draw_key,
    mac_value,
    next_daily,
)
from fleetkey.core.license import LicenseKey
from fleetkey.core.rules import (
    Decision,
    Grant,
    InstalledKeys,
    SignatureVerifier,
    apply_boot_downloads,
    effective_features,
)


class Reason(enum.StrEnum):
    """Why a phone reboots or checks its configuration."""

    POWER_ON = "power-on"
    LICENSE_EXPIRED = "license-expired"  # R4
    CONFIG_CHANGED = "config-changed"  # R8: a configuration poll found changed files
    CHECK_SYNC = "check-sync"  # R9


class CheckSyncOutcome(enum.StrEnum):
    """What a NOTIFY check-sync made the phone do (R9)."""

    REBOOT = "reboot"  # rebooting now
    DEFERRED = "deferred"  # rebooting when the last call ends (R4)
    CHECK_CONFIG = "check-config"  # fetching its configuration to see whether it changed
    ABSORBED = "absorbed"  # a reboot already pending or in progress takes it
    IGNORED = "ignored"  # the phone is off


class Phase(enum.StrEnum):
    """Where the phone is in its life: off, running its boot sequence, or up."""

    OFF = "off"
    BOOTING = "booting"
    RUNNING = "running"


@dataclass(frozen=True, slots=True)
class Boot:
    """Reboot now: fetch ``requests`` in order, then call ``boot_completed``."""

    reason: Reason
    requests: tuple[FileRequest, ...]


@dataclass(frozen=True, slots=True)
class CheckConfig:
    """Fetch the master configuration and its files; report with ``config_checked``."""

    reason: Reason
    files: tuple[str, ...]


Action = Boot | CheckConfig


@dataclass(frozen=True, slots=True)
class Reboot:
    at: datetime
    reason: Reason
    requested_at: datetime  # later than ``at`` never; earlier when a call deferred it


@dataclass(frozen=True, slots=True)
class CheckSync:
    """One check-sync the phone was handed, and what it did about it."""

    at: datetime
    reboot: bool  # ``;reboot=true`` in its Event header
    outcome: CheckSyncOutcome


@dataclass
class DeviceState:
    """What the phone keeps between events: its flash (installed keys), phase and timers."""

    installed: InstalledKeys = field(default_factory=InstalledKeys)  # the phone's flash
    phase: Phase = Phase.OFF
    booted_at: datetime | None = None
    valid_at_boot: frozenset[int] = frozenset()  # slots effective when the boot finished
    booted_with_expired: bool = False  # R8
    active_calls: int = 0
    pending: tuple[Reason, datetime] | None = None  # a reboot waiting for the calls to end
    next_license_poll: datetime | None = None
    next_config_poll: datetime | None = None
    boots: int = 0  # boots completed: the number of this boot's draw
    poll_draw: float = 0.0  # this boot's draw for random polling (schedule.boot_draw)


def slot_mask(slots: Iterable[int]) -> int:
    """Feature slots as a bit mask (slot n is bit n): how the simulator holds them."""
    return sum(1 << slot for slot in set(slots))


# the decision rules on slot masks, written with operators only: the engine calls them with
# ints, the simulator with numpy arrays of a million phones
def booted_expired(granted: Mask, valid: Flags, offered_expired: Flags) -> Mask:
    """R8: a boot ends with an expired license when an installed key has lapsed features, or
    nothing is valid and what the server offered had expired."""
    g, v, o = _operands(granted, valid, offered_expired)
    return cast(Mask, ((g & ~v) != 0) | ((v == 0) & o))


def lapse_reboots(valid_at_boot: Mask, valid_now: Flags, booted_with_expired: Flags) -> Mask:
    """R3/R4: the daily check reboots a phone when a feature valid at its boot has lapsed,
    unless it booted with an expired license (R8)."""
    at_boot, now, expired = _operands(valid_at_boot, valid_now, booted_with_expired)
    return cast(Mask, ((at_boot & ~now) != 0) & (expired == 0))


def check_sync_absorbed(booting: Mask, pending: Flags) -> Mask:
    """R9: a check-sync that reaches a phone while it boots, or while a reboot waits for its
    calls to end, is absorbed: that reboot takes it (a burst reboots the phone once)."""
    b, p = _operands(booting, pending)
    return cast(Mask, (b != 0) | (p != 0))


def check_sync_reboots(absorbed: Mask, asked: Flags, always_reboot: Flags, changed: Flags) -> Mask:
    """R9: a check-sync not absorbed reboots the phone (now, or when its last call ends: R4)
    when it asks to (``;reboot=true``) or the phone always reboots (``checkSync.alwaysReboot``);
    otherwise the phone reads its configuration again and reboots only when it ``changed``."""
    a, k, w, c = _operands(absorbed, asked, always_reboot, changed)
    return cast(Mask, (a == 0) & ((k != 0) | (w != 0) | (c != 0)))


def _operands(*values: Flags) -> tuple[Any, ...]:
    """The rules' operands, to be combined with operators whatever their kind (an int with an
    array is an array); the rules' signatures say what goes in and what comes out."""
    return values


class DeviceEngine:
    """One phone's license behaviour. Every method takes the moment of the event and returns
    actions to carry out; ``state`` is what the phone keeps between events."""

    def __init__(
        self,
        config: PhoneConfig,
        verifier: SignatureVerifier,
        *,
        installed: InstalledKeys | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self._verifier = verifier
        self.state = DeviceState(installed=installed or InstalledKeys())
        # the phone's scheduling jitter: a hash of its MAC (and the host's seed) and boot number
        self._draw_key = draw_key(mac_value(config.mac), seed or 0)
        self.reboots: list[Reboot] = []
        self.check_syncs: list[CheckSync] = []
        self.decisions: list[tuple[datetime, Decision]] = []

    # what the phone is
    @property
    def installed(self) -> InstalledKeys:
        return self.state.installed

    def today(self, now: datetime) -> date:
        return self.config.local(now).date()

    def features(self, now: datetime) -> tuple[Grant, ...]:
        """R1: effective features with provenance, at ``now``."""
        return effective_features(self.state.installed, self.today(now))

    def next_wakeup(self) -> datetime | None:
        times = [
            t for t in (self.state.next_license_poll, self.state.next_config_poll) if t is not None
        ]
        return min(times) if times else None

    # events
    def power_on(self, now: datetime) -> list[Action]:
        if self.state.phase is not Phase.OFF:
            return []
        return [self._boot(now, Reason.POWER_ON, now)]

    def boot_completed(
        self,
        now: datetime,
        site_file: Sequence[LicenseKey] | None,
        phone_file: Sequence[LicenseKey] | None,
    ) -> list[Action]:
        """The boot sequence ran; ``None`` for a license file that was not found (or asked)."""
        today = self.today(now)
        installed, decisions = apply_boot_downloads(
            self.state.installed, site_file, phone_file, self.config.mac, today, self._verifier
        )
        self.decisions.extend((now, d) for d in decisions)
        state = self.state
        state.installed = installed
        state.phase = Phase.RUNNING
        state.booted_at = now
        valid = {g.slot for g in effective_features(installed, today)}
        granted = {
            slot for key in (installed.phone, installed.site) if key for slot in key.granted_slots()
        }
        state.valid_at_boot = frozenset(valid)
        offered = [*(site_file or ()), *(phone_file or ())]
        state.booted_with_expired = bool(
            booted_expired(
                slot_mask(granted), slot_mask(valid), any(k.is_expired(today) for k in offered)
            )
        )
        state.next_license_poll = next_daily(
            now, self.config.license_polling_time, self.config.zone
        )
        state.boots += 1
        state.poll_draw = float(boot_draw(self._draw_key, state.boots))
        state.next_config_poll = next_config_poll(self.config, now, now, state.poll_draw)
        return self._run_pending(now)

    def advance(self, now: datetime) -> list[Action]:
        """Process every timer due at or before ``now``, oldest first."""
        actions: list[Action] = []
        while self.state.phase is Phase.RUNNING:
            due = self.next_wakeup()
            if due is None or due > now:
                break
            if self.state.next_license_poll is not None and due == self.state.next_license_poll:
                actions.extend(self._license_poll(due))
            else:
                actions.extend(self._config_poll(due))
        return actions

    def call_started(self, now: datetime) -> list[Action]:
        self.state.active_calls += 1
        return []

    def call_ended(self, now: datetime) -> list[Action]:
        self.state.active_calls = max(0, self.state.active_calls - 1)
        return self._run_pending(now)

    def check_sync(self, now: datetime, reboot: bool = False) -> list[Action]:
        """R9: NOTIFY check-sync (the host answers 200 before calling this, every time).

        A reboot already pending (waiting for a call to end) or in progress (from the moment
        a ``Boot`` is returned until ``boot_completed``) absorbs it: a burst of check-syncs
        reboots the phone once, as a real phone does. What each one did is kept in
        ``check_syncs``."""
        outcome, actions = self._judge_check_sync(now, reboot)
        self.check_syncs.append(CheckSync(now, reboot, outcome))
        return actions

    def config_checked(self, now: datetime, changed: bool, reason: Reason) -> list[Action]:
        """The host fetched the configuration again; a change reboots the phone (R8, R9)."""
        if self.state.phase is not Phase.RUNNING:
            return []
        if reason is Reason.CHECK_SYNC:
            reboots = check_sync_reboots(self.state.pending is not None, False, False, changed)
        else:
            reboots = changed
        return self._reboot_when_idle(now, reason) if reboots else []

    # rules
    def _judge_check_sync(
        self, now: datetime, reboot: bool
    ) -> tuple[CheckSyncOutcome, list[Action]]:
        state = self.state
        if state.phase is Phase.OFF:
            return CheckSyncOutcome.IGNORED, []
        if check_sync_absorbed(state.phase is Phase.BOOTING, state.pending is not None):
            return CheckSyncOutcome.ABSORBED, []
        if check_sync_reboots(False, reboot, self.config.always_reboot, False):
            actions = self._reboot_when_idle(now, Reason.CHECK_SYNC)
            return (CheckSyncOutcome.REBOOT if actions else CheckSyncOutcome.DEFERRED), actions
        # whether it reboots is check_sync_reboots(..., changed): config_checked says
        return CheckSyncOutcome.CHECK_CONFIG, [CheckConfig(Reason.CHECK_SYNC, self._config_files())]

    def _license_poll(self, due: datetime) -> list[Action]:
        """R3: a daily check of the installed keys, downloading nothing; R4 and R8."""
        state = self.state
        state.next_license_poll = next_daily(
            due, self.config.license_polling_time, self.config.zone
        )
        valid_now = {g.slot for g in effective_features(state.installed, self.today(due))}
        if not lapse_reboots(
            slot_mask(state.valid_at_boot), slot_mask(valid_now), state.booted_with_expired
        ):
            return []
        return self._reboot_when_idle(due, Reason.LICENSE_EXPIRED)

    def _config_poll(self, due: datetime) -> list[Action]:
        state = self.state
        after = due
        state.next_config_poll = None
        if state.booted_at is not None:
            state.next_config_poll = next_config_poll(
                self.config, state.booted_at, after, state.poll_draw
            )
        return [CheckConfig(Reason.CONFIG_CHANGED, self._config_files())]

    def _reboot_when_idle(self, now: datetime, reason: Reason) -> list[Action]:
        """R4: never during a call; the reboot waits for the last call to end."""
        if self.state.active_calls > 0:
            if self.state.pending is None:
                self.state.pending = (reason, now)
            return []
        return [self._boot(now, reason, now)]

    def _run_pending(self, now: datetime) -> list[Action]:
        pending = self.state.pending
        if pending is None or self.state.active_calls > 0 or self.state.phase is not Phase.RUNNING:
            return []
        self.state.pending = None
        return [self._boot(now, pending[0], pending[1])]

    def _boot(self, now: datetime, reason: Reason, requested: datetime) -> Boot:
        state = self.state
        state.phase = Phase.BOOTING
        state.next_license_poll = state.next_config_poll = None
        self.reboots.append(Reboot(now, reason, requested))
        return Boot(reason, self.boot_requests(now))

    def boot_requests(self, now: datetime) -> tuple[FileRequest, ...]:
        """The boot of a phone the server gives no master configuration (``boot_order``'s
        fallback, R2 deciding whether it asks for the license files). A host that finds a
        master configuration follows it instead (``core.device.boot``), keeping whether the
        licenses are asked."""
        return boot_order(self.config, None, licenses=self._wants_licenses(now))

    def _wants_licenses(self, now: datetime) -> bool:
        """R2: modern firmware at every boot; legacy only for an enabled, unlicensed feature."""
        if not self.config.legacy:
            return True
        valid = {g.slot for g in effective_features(self.state.installed, self.today(now))}
        return bool(self.config.enabled_features - valid)

    def _config_files(self) -> tuple[str, ...]:
        return (f"{self.config.mac}.cfg", "000000000000.cfg", *self.config.config_files)
