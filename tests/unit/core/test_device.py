"""The phone license engine: one test per rule R1-R9, the operator consequences, properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkey.core.device.config import ConfigPolling, PhoneConfig, PollMode, next_config_poll
from fleetkey.core.device.engine import (
    Boot,
    CheckConfig,
    CheckSyncOutcome,
    DeviceEngine,
    Phase,
    Reason,
)
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.rules import InstalledKeys
from fleetkey.core.terms import NEVER
from fleetkey.core.useragent import BootStage
from fleetkey.testing import make_license, trusted_keys_for

MAC = "0004f2000001"
SITE = "100000000001"
T0 = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)  # a Sunday morning, UTC phone
VERIFIER = trusted_keys_for()


def site_key(expires: date | object, slot: int = 1) -> LicenseKey:
    return make_license(serial=SITE, type=LicenseType.SITE, terms={slot: expires})  # type: ignore[dict-item]


def phone_key(expires: date | object = NEVER, slot: int = 0) -> LicenseKey:
    return make_license(serial=MAC, terms={slot: expires})  # type: ignore[dict-item]


def booted(
    site: list[LicenseKey] | None = None,
    phone: list[LicenseKey] | None = None,
    config: PhoneConfig | None = None,
    at: datetime = T0,
) -> DeviceEngine:
    engine = DeviceEngine(config or PhoneConfig(MAC), VERIFIER)
    [boot] = engine.power_on(at)
    assert isinstance(boot, Boot)
    engine.boot_completed(at, site, phone)
    return engine


def slots(engine: DeviceEngine, now: datetime) -> set[int]:
    return {g.slot for g in engine.features(now)}


def run_until(
    engine: DeviceEngine, end: datetime, served: dict[str, list[LicenseKey] | None]
) -> None:
    """Advance time; carry out boots with the files in ``served`` (a tiny host)."""
    while (due := engine.next_wakeup()) is not None and due <= end:
        for action in engine.advance(due):
            if isinstance(action, Boot):
                engine.boot_completed(due, served.get("site"), served.get("phone"))


class TestRules:
    def test_r1_effective_features_are_the_union_of_unexpired_keys(self) -> None:
        engine = booted([site_key(date(2027, 6, 30), slot=1)], [phone_key(NEVER, slot=0)])
        grants = engine.features(T0)
        assert {(g.slot, g.source) for g in grants} == {
            (0, LicenseType.PHONE),
            (1, LicenseType.SITE),
        }
        assert slots(engine, datetime(2027, 7, 1, tzinfo=UTC)) == {0}

    def test_r2_boot_asks_for_the_site_license_before_the_phone_license(self) -> None:
        engine = DeviceEngine(PhoneConfig(MAC), VERIFIER)
        [boot] = engine.power_on(T0)
        assert isinstance(boot, Boot)
        names = [r.name for r in boot.requests]
        assert names.index("000000000000-license.cfg") < names.index(f"{MAC}-license.cfg")
        assert names.index("000000000000.cfg") < names.index("000000000000-license.cfg")
        assert [r.name for r in boot.requests if r.license] == [
            "000000000000-license.cfg",
            f"{MAC}-license.cfg",
        ]

    def test_the_updater_looks_for_the_masters_and_puts_the_boot_log_then_the_application(
        self,
    ) -> None:
        [boot] = DeviceEngine(PhoneConfig(MAC), VERIFIER).power_on(T0)
        assert isinstance(boot, Boot)
        updater = [(r.method, r.name) for r in boot.requests if r.stage is BootStage.UPDATER]
        assert updater == [
            ("GET", f"{MAC}.cfg"),
            ("GET", "000000000000.cfg"),
            ("PUT", f"{MAC}-boot.log"),
        ]
        assert boot.requests[: len(updater)] == tuple(
            r for r in boot.requests if r.stage is BootStage.UPDATER
        )
        assert boot.requests[-1].name == f"{MAC}-app.log"

    def test_r2_a_missing_file_keeps_the_preloaded_key(self) -> None:
        preloaded = InstalledKeys(phone=phone_key(NEVER))
        engine = DeviceEngine(PhoneConfig(MAC), VERIFIER, installed=preloaded)
        engine.power_on(T0)
        engine.boot_completed(T0, None, None)
        assert engine.installed == preloaded

    def test_r2_legacy_firmware_asks_only_when_an_enabled_feature_is_unlicensed(self) -> None:
        legacy = PhoneConfig(MAC, firmware="3.1.1.0001", enabled_features=frozenset({0}))
        licensed = DeviceEngine(legacy, VERIFIER, installed=InstalledKeys(phone=phone_key(NEVER)))
        [boot] = licensed.power_on(T0)
        assert isinstance(boot, Boot)
        assert not [r for r in boot.requests if r.license]
        unlicensed = DeviceEngine(legacy, VERIFIER)
        [boot] = unlicensed.power_on(T0)
        assert isinstance(boot, Boot)
        assert len([r for r in boot.requests if r.license]) == 2

    def test_r3_the_license_poll_is_daily_at_polling_time_and_downloads_nothing(self) -> None:
        engine = booted([site_key(date(2027, 12, 31))])
        assert engine.next_wakeup() == datetime(2027, 1, 11, 2, 0, tzinfo=UTC)
        assert engine.advance(datetime(2027, 1, 11, 2, 0, tzinfo=UTC)) == []
        assert engine.next_wakeup() == datetime(2027, 1, 12, 2, 0, tzinfo=UTC)

    def test_r3_polling_time_is_local(self) -> None:
        config = PhoneConfig(MAC, timezone="Europe/Berlin", license_polling_time=time(2, 0))
        engine = booted([site_key(date(2027, 12, 31))], config=config)
        assert engine.next_wakeup() == datetime(2027, 1, 11, 1, 0, tzinfo=UTC)

    def test_r4_a_feature_valid_at_boot_that_expires_reboots_the_phone(self) -> None:
        engine = booted([site_key(date(2027, 1, 10))])  # valid today, lapses tonight
        actions = engine.advance(datetime(2027, 1, 11, 2, 0, tzinfo=UTC))
        assert [type(a) for a in actions] == [Boot]
        assert engine.reboots[-1].reason is Reason.LICENSE_EXPIRED

    def test_r4_the_reboot_waits_for_the_call_to_end(self) -> None:
        engine = booted([site_key(date(2027, 1, 10))])
        engine.call_started(datetime(2027, 1, 11, 1, 50, tzinfo=UTC))
        assert engine.advance(datetime(2027, 1, 11, 2, 0, tzinfo=UTC)) == []
        [boot] = engine.call_ended(datetime(2027, 1, 11, 2, 25, tzinfo=UTC))
        assert isinstance(boot, Boot)
        reboot = engine.reboots[-1]
        assert (reboot.at, reboot.requested_at) == (
            datetime(2027, 1, 11, 2, 25, tzinfo=UTC),
            datetime(2027, 1, 11, 2, 0, tzinfo=UTC),
        )

    def test_r5_a_key_that_does_not_verify_is_ignored(self) -> None:
        good = phone_key(date(2027, 3, 1))
        forged = make_license(serial=MAC, terms={0: NEVER}, validation=good.validation)
        engine = booted(None, [good])
        engine.power_on(T0)  # already running: nothing
        engine.check_sync(T0, reboot=True)
        engine.boot_completed(T0, None, [forged])
        assert engine.installed.phone == good
        assert engine.decisions[-1][1].rule == "R5"

    @pytest.mark.parametrize(
        ("site", "phone", "reason"),
        [
            (None, [make_license(serial="0004f2999999")], "not this phone's MAC"),
            ([make_license(serial=MAC)], None, "Phone key in a Site license file"),
            (None, [make_license(serial=MAC, expires=date(2026, 1, 1))], "expired"),
        ],
    )
    def test_r5_wrong_serial_type_or_expired_keys_are_ignored(
        self,
        site: list[LicenseKey] | None,
        phone: list[LicenseKey] | None,
        reason: str,
    ) -> None:
        engine = booted(site, phone)
        assert engine.installed == InstalledKeys()
        assert reason in engine.decisions[-1][1].reason

    def test_r6_an_accepted_key_is_installed_when_none_is(self) -> None:
        key = site_key(date(2027, 12, 31))
        engine = booted([key])
        assert engine.installed.site == key
        assert engine.decisions[-1][1].rule == "R6"

    def test_r7_the_longer_key_stays_and_a_tie_replaces(self) -> None:
        long, short = site_key(date(2028, 1, 31)), site_key(date(2027, 6, 30))
        engine = booted([long])
        engine.check_sync(T0, reboot=True)
        engine.boot_completed(T0, [short], None)
        assert engine.installed.site == long
        twin = site_key(date(2028, 1, 31), slot=2)  # same duration, other feature
        engine.check_sync(T0, reboot=True)
        engine.boot_completed(T0, [twin], None)
        assert engine.installed.site == twin

    def test_r8_a_phone_that_booted_expired_is_not_rebooted_by_license_polls(self) -> None:
        lapsed = site_key(date(2027, 1, 9))  # in flash, expired before this boot
        engine = DeviceEngine(PhoneConfig(MAC), VERIFIER, installed=InstalledKeys(site=lapsed))
        engine.power_on(T0)
        engine.boot_completed(T0, [lapsed], None)
        assert engine.state.booted_with_expired
        run_until(engine, datetime(2027, 1, 20, tzinfo=UTC), {})
        assert [r.reason for r in engine.reboots] == [Reason.POWER_ON]

    def test_r8_a_config_poll_that_finds_changes_reboots_it(self) -> None:
        polling = ConfigPolling(enabled=True, mode=PollMode.ABS, at=time(3, 0))
        engine = booted([site_key(date(2027, 1, 9))], config=PhoneConfig(MAC, polling=polling))
        actions = engine.advance(datetime(2027, 1, 11, 3, 0, tzinfo=UTC))
        assert actions == [CheckConfig(Reason.CONFIG_CHANGED, (f"{MAC}.cfg", "000000000000.cfg"))]
        assert (
            engine.config_checked(
                datetime(2027, 1, 11, 3, 0, tzinfo=UTC), False, Reason.CONFIG_CHANGED
            )
            == []
        )
        [boot] = engine.config_checked(
            datetime(2027, 1, 11, 3, 1, tzinfo=UTC), True, Reason.CONFIG_CHANGED
        )
        assert isinstance(boot, Boot)

    def test_r9_check_sync_reboots_with_always_reboot_or_reboot_true(self) -> None:
        always = booted([site_key(date(2027, 12, 31))], config=PhoneConfig(MAC, always_reboot=True))
        assert [type(a) for a in always.check_sync(T0)] == [Boot]
        engine = booted([site_key(date(2027, 12, 31))])
        assert [type(a) for a in engine.check_sync(T0, reboot=True)] == [Boot]

    def test_r9_check_sync_without_reboot_only_reboots_on_changed_files(self) -> None:
        engine = booted([site_key(date(2027, 12, 31))])
        [check] = engine.check_sync(T0)
        assert isinstance(check, CheckConfig)
        assert engine.config_checked(T0, False, Reason.CHECK_SYNC) == []
        assert engine.state.phase is Phase.RUNNING
        [boot] = engine.config_checked(T0, True, Reason.CHECK_SYNC)
        assert isinstance(boot, Boot)
        assert engine.reboots[-1].reason is Reason.CHECK_SYNC


def outcomes(engine: DeviceEngine) -> list[CheckSyncOutcome]:
    return [c.outcome for c in engine.check_syncs]


class TestCheckSyncBursts:
    """R9 as a phone lives it: a reboot already pending or in progress absorbs check-syncs."""

    def test_a_burst_while_the_reboot_is_in_progress_reboots_once(self) -> None:
        engine = booted([site_key(date(2027, 12, 31))])
        burst = [engine.check_sync(T0 + timedelta(milliseconds=10 * i), True) for i in range(5)]
        assert [[type(a) for a in actions] for actions in burst] == [[Boot], [], [], [], []]
        assert engine.state.phase is Phase.BOOTING
        assert outcomes(engine) == [CheckSyncOutcome.REBOOT] + [CheckSyncOutcome.ABSORBED] * 4
        assert [r.reason for r in engine.reboots] == [Reason.POWER_ON, Reason.CHECK_SYNC]

    def test_a_check_sync_after_the_reboot_finished_reboots_again(self) -> None:
        engine = booted([site_key(date(2027, 12, 31))])
        engine.check_sync(T0, reboot=True)
        engine.boot_completed(T0 + timedelta(seconds=30), None, None)
        [boot] = engine.check_sync(T0 + timedelta(seconds=31), reboot=True)
        assert isinstance(boot, Boot)
        assert outcomes(engine) == [CheckSyncOutcome.REBOOT, CheckSyncOutcome.REBOOT]

    def test_a_reboot_waiting_for_a_call_absorbs_the_rest_and_happens_once(self) -> None:
        engine = booted([site_key(date(2027, 12, 31))])
        engine.call_started(T0)
        assert [engine.check_sync(T0, reboot=True) for _ in range(3)] == [[], [], []]
        assert outcomes(engine) == [CheckSyncOutcome.DEFERRED] + [CheckSyncOutcome.ABSORBED] * 2
        [boot] = engine.call_ended(T0 + timedelta(minutes=5))
        assert isinstance(boot, Boot)
        assert [r.reason for r in engine.reboots] == [Reason.POWER_ON, Reason.CHECK_SYNC]
        assert engine.reboots[-1].requested_at == T0

    def test_a_pending_expiry_reboot_absorbs_a_check_sync_without_reboot(self) -> None:
        engine = booted([site_key(date(2027, 1, 10))])  # lapses tonight
        night = datetime(2027, 1, 11, 2, 0, tzinfo=UTC)
        engine.call_started(night)
        assert engine.advance(night) == []  # R4: waits for the call
        assert engine.check_sync(night, reboot=False) == []  # no configuration check either
        assert outcomes(engine) == [CheckSyncOutcome.ABSORBED]
        [boot] = engine.call_ended(night + timedelta(minutes=1))
        assert boot.reason is Reason.LICENSE_EXPIRED

    def test_a_check_sync_during_the_power_on_boot_is_absorbed(self) -> None:
        engine = DeviceEngine(PhoneConfig(MAC, always_reboot=True), VERIFIER)
        assert engine.check_sync(T0) == []
        assert outcomes(engine) == [CheckSyncOutcome.IGNORED]  # off: nothing listens
        engine.power_on(T0)
        assert engine.check_sync(T0) == []
        assert outcomes(engine)[-1] is CheckSyncOutcome.ABSORBED
        assert len(engine.reboots) == 1

    def test_without_reboot_each_check_sync_checks_the_configuration(self) -> None:
        engine = booted([site_key(date(2027, 12, 31))])
        checks = [engine.check_sync(T0) for _ in range(2)]
        assert [[type(a) for a in actions] for actions in checks] == [[CheckConfig]] * 2
        [boot] = engine.config_checked(T0, True, Reason.CHECK_SYNC)
        assert isinstance(boot, Boot)
        assert engine.config_checked(T0, True, Reason.CHECK_SYNC) == []  # already rebooting
        assert outcomes(engine) == [CheckSyncOutcome.CHECK_CONFIG] * 2


class TestOperatorConsequences:
    def test_a_shorter_successor_is_ignored(self) -> None:
        engine = booted([site_key(date(2027, 12, 31))])
        engine.check_sync(T0, reboot=True)
        engine.boot_completed(T0, [site_key(date(2027, 11, 30))], None)
        assert engine.installed.site is not None
        assert engine.installed.site.expiry() == date(2027, 12, 31)
        assert engine.decisions[-1][1].outcome.value == "ignored-shorter"

    def test_a_successor_posted_after_expiry_waits_for_check_sync(self) -> None:
        first, successor = site_key(date(2027, 1, 12)), site_key(date(2028, 1, 31))
        engine = booted([first])
        served: dict[str, list[LicenseKey] | None] = {"site": [first]}
        run_until(engine, datetime(2027, 1, 13, 12, 0, tzinfo=UTC), served)  # lapses, reboots
        assert [r.reason for r in engine.reboots] == [Reason.POWER_ON, Reason.LICENSE_EXPIRED]
        assert engine.state.booted_with_expired
        served["site"] = [successor]  # posted too late
        run_until(engine, datetime(2027, 2, 13, tzinfo=UTC), served)
        assert engine.installed.site == first  # a month later: still nothing triggered a boot
        [boot] = engine.check_sync(datetime(2027, 2, 13, 10, 0, tzinfo=UTC), reboot=True)
        assert isinstance(boot, Boot)
        engine.boot_completed(datetime(2027, 2, 13, 10, 0, tzinfo=UTC), [successor], None)
        assert engine.installed.site == successor
        assert slots(engine, datetime(2027, 2, 13, 10, 0, tzinfo=UTC)) == {1}

    def test_site_expiry_reboots_every_phone_at_its_next_license_poll(self) -> None:
        key = site_key(date(2027, 1, 10))
        phones = [
            booted([key], config=PhoneConfig(f"0004f2{i:06x}", timezone=zone))
            for i, zone in enumerate(["UTC", "Europe/Berlin", "America/New_York"])
        ]
        phones[2].call_started(datetime(2027, 1, 11, 6, 30, tzinfo=UTC))
        for engine in phones:
            engine.advance(datetime(2027, 1, 11, 12, 0, tzinfo=UTC))
        assert [len(e.reboots) for e in phones] == [2, 2, 1]  # the one in a call waits
        assert [e.reboots[-1].at.hour for e in phones[:2]] == [2, 1]  # 02:00 local
        phones[2].call_ended(datetime(2027, 1, 11, 12, 5, tzinfo=UTC))
        assert phones[2].reboots[-1].reason is Reason.LICENSE_EXPIRED


class TestConfigPolling:
    def test_rel_polls_every_period_after_boot(self) -> None:
        config = PhoneConfig(MAC, polling=ConfigPolling(True, PollMode.REL, 7200))
        due = next_config_poll(config, T0, T0 + timedelta(hours=3), 0.5)
        assert due == T0 + timedelta(hours=4)

    def test_random_mode_over_a_day_picks_a_stable_day_from_the_mac(self) -> None:
        polling = ConfigPolling(True, PollMode.RANDOM, 7 * 86400, time(1, 0), time(5, 0))
        config = PhoneConfig(MAC, polling=polling)
        moments = [next_config_poll(config, T0, T0, draw / 20) for draw in range(20)]
        assert len({m.date().toordinal() % 7 for m in moments if m is not None}) == 1
        assert all(m is not None and time(1, 0) <= m.time() <= time(5, 0) for m in moments)

    def test_polling_period_below_an_hour_is_refused(self) -> None:
        from fleetkey.errors import InputError

        with pytest.raises(InputError, match="below 3600"):
            ConfigPolling(True, PollMode.REL, 600)


events = st.lists(
    st.tuples(
        st.sampled_from(["advance", "call", "hangup", "sync", "sync-reboot", "changed"]),
        st.integers(min_value=1, max_value=36 * 3600),
    ),
    max_size=40,
)
offered = st.lists(
    st.tuples(
        st.sampled_from([LicenseType.SITE, LicenseType.PHONE]),
        st.integers(min_value=0, max_value=400),
        st.integers(min_value=0, max_value=3),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(events, offered)
def test_properties_hold_over_any_event_sequence(
    sequence: list[tuple[str, int]], keys: list[tuple[LicenseType, int, int]]
) -> None:
    """Installed durations never shrink; features come from installed keys; no reboot in a call."""
    pool = [
        site_key(date(2027, 1, 1) + timedelta(days=d), slot)
        if kind is LicenseType.SITE
        else phone_key(date(2027, 1, 1) + timedelta(days=d), slot)
        for kind, d, slot in keys
    ]
    engine = booted()
    now = T0
    offer = 0
    ranks = {LicenseType.SITE: -1, LicenseType.PHONE: -1}

    def carry(actions: list[Boot | CheckConfig]) -> None:
        nonlocal offer
        for action in actions:
            if isinstance(action, Boot):
                assert engine.state.active_calls == 0, "rebooted during a call"
                key = pool[offer % len(pool)]
                offer += 1
                site = [key] if key.type is LicenseType.SITE else None
                phone = [key] if key.type is LicenseType.PHONE else None
                engine.boot_completed(now, site, phone)

    for name, seconds in sequence:
        now += timedelta(seconds=seconds)
        if name == "advance":
            carry(engine.advance(now))
        elif name == "call":
            engine.call_started(now)
        elif name == "hangup":
            carry(engine.call_ended(now))
        elif name == "sync":
            carry(engine.check_sync(now))
        elif name == "sync-reboot":
            carry(engine.check_sync(now, reboot=True))
        else:
            carry(engine.config_checked(now, True, Reason.CHECK_SYNC))
        for kind in ranks:
            key = engine.installed.get(kind)
            rank = key.duration_rank if key is not None else -1
            assert rank >= ranks[kind], "an installed key's duration went down"
            ranks[kind] = rank
        present = (engine.installed.phone, engine.installed.site)
        accepted = {s for k in present if k is not None for s in k.granted_slots()}
        assert {g.slot for g in engine.features(now)} <= accepted


bursts = st.lists(
    st.sampled_from(["sync", "sync-reboot", "call", "hangup", "boot-done", "changed"]),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(bursts, st.booleans())
def test_at_most_one_boot_is_ever_outstanding(sequence: list[str], always: bool) -> None:
    """Whatever check-syncs, calls and configuration answers arrive while boots are still
    running, the engine never asks for a boot before the last one completed, never during a
    call, and records one outcome per check-sync."""
    engine = booted(config=PhoneConfig(MAC, always_reboot=always))
    outstanding = 0
    syncs = 0
    for step, name in enumerate(sequence):
        now = T0 + timedelta(seconds=step)
        if name == "sync":
            actions = engine.check_sync(now)
        elif name == "sync-reboot":
            actions = engine.check_sync(now, reboot=True)
        elif name == "call":
            actions = engine.call_started(now)
        elif name == "hangup":
            actions = engine.call_ended(now) if engine.state.active_calls else []
        elif name == "changed":
            actions = engine.config_checked(now, True, Reason.CHECK_SYNC)
        elif outstanding:
            outstanding -= 1
            actions = engine.boot_completed(now, None, None)
        else:
            actions = []
        syncs += name.startswith("sync")
        boots = [a for a in actions if isinstance(a, Boot)]
        if boots:
            assert engine.state.active_calls == 0, "rebooted during a call"
        outstanding += len(boots)
        assert outstanding <= 1, "a second boot while one was still running"
        assert (engine.state.phase is Phase.BOOTING) == bool(outstanding)
    assert len(engine.check_syncs) == syncs
