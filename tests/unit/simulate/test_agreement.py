"""The simulator against the per-phone engine (core/device/engine.py), the reference.

2,000 phones at ten sites in ten time zones, with calls, perpetual phone licenses at some
sites, every polling mode, a site license that lapses with a successor posted before (some
sites, one rolled out by check-sync) and after (the others, reached only through a
configuration change, R8). Each phone is run through a DeviceEngine fed the same calls,
check-syncs and configuration changes, with real signed keys; the two must give the same
reboots (time within a second, cause) and the same features at the end, phone by phone.
Random-mode polls draw their moments differently (the engine from the MAC-seeded Python
generator, the simulator from a hash), so for those phones a configuration-poll reboot must
fall on the same local day inside the same window.
"""

from __future__ import annotations

import heapq
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.engine import Boot, CheckConfig, DeviceEngine, Reason
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.terms import NEVER
from fleetkey.simulate.calls import calls_between
from fleetkey.simulate.phones import Cause
from fleetkey.simulate.scenario import ConfigChange, Post, Scenario
from fleetkey.simulate.simulation import Run, simulate
from fleetkey.testing import ScenarioBuilder, make_license, trusted_keys_for

ZONES = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney", "UTC",
         "America/Los_Angeles", "Asia/Kolkata", "Europe/London", "Pacific/Auckland",
         "America/Sao_Paulo"]  # fmt: skip
POLLING: list[dict[str, object]] = [
    {},
    {"enabled": True, "mode": "abs", "time": "03:10"},
    # polls just before its window opens: the rollout's check-syncs find it booting (absorbed)
    {"enabled": True, "mode": "abs", "time": "00:29:30"},
    {"enabled": True, "mode": "rel", "period_s": 14400},
    # random with a period of a day or less: a moment drawn at each boot, then every period
    {"enabled": True, "mode": "random", "period_s": 43200, "time": "01:00", "random_end": "05:00"},
    {},
    {"enabled": True, "mode": "abs", "time": "01:30"},
    {"enabled": True, "mode": "rel", "period_s": 21600},
    {"enabled": True, "mode": "random", "period_s": 259200, "time": "02:00", "random_end": "04:00"},
    {"enabled": True, "mode": "abs", "period_s": 172800, "time": "05:00"},
]


def agreement_fleet() -> ScenarioBuilder:
    built = ScenarioBuilder(start="2027-01-01T00:00:00Z", days=40, server={"capacity": 1000000})
    for i, zone in enumerate(ZONES):
        phone = ["vqmon"] if i % 3 == 0 else []
        built.site(
            f"1000000000{i:02x}",
            200,
            timezone=zone,
            window="00:30-05:30",
            license_polling_time="02:00" if i != 5 else "03:30",
            always_reboot=i in (0, 1),
            calls_per_hour=0.25,
            call_minutes=10,
            phone_features=["corporate-directory"] if i == 4 else phone,
            **({"polling": POLLING[i]} if POLLING[i] else {}),
        )
    serials = built.serials()
    return (
        built.license("a", ["corporate-directory", "call-recording"], "2027-01-20")
        .license("b", ["corporate-directory", "call-recording"], "2028-01-31")
        .event("2027-01-01T00:00:00Z", post="a")
        .event("2027-01-15T12:00:00Z", post="b", sites=serials[:6])
        .event("2027-01-16T00:00:00Z", rollout=True, deadline="2027-01-19T00:00:00Z",
               reboot=False, sites=serials[:5])
        .event("2027-01-15T18:00:07Z", config_change=True, sites=serials[2:5])
        .event("2027-01-25T09:00:00Z", post="b", sites=serials[6:])
        .event("2027-02-01T10:00:07Z", config_change=True, sites=serials[6:])
    )  # fmt: skip


def dst_fleet() -> ScenarioBuilder:
    """Four sites whose license lapses on a DST night (02:30 skipped in New York and Berlin,
    repeated in Sydney and Auckland), booting 70 minutes so that the lapse's boots end inside
    the changed hour, and a configuration change during them: each phone's next 02:30 poll is
    asked for from inside the gap or the repeated hour."""
    built = ScenarioBuilder(
        start="2027-03-01T00:00:00Z",
        days=40,
        server={"capacity": 1000000, "boot_seconds": 4200},
    )
    nights = [  # zone, license check, last valid day, the change during the boots (UTC)
        ("America/New_York", "01:00", "2027-03-13", "2027-03-14T06:30:00Z"),
        ("Europe/Berlin", "00:55", "2027-03-27", "2027-03-28T00:30:00Z"),
        ("Australia/Sydney", "01:59", "2027-04-03", "2027-04-03T15:30:00Z"),
        ("Pacific/Auckland", "01:59", "2027-04-03", "2027-04-03T13:30:00Z"),
    ]
    for i, (zone, check, last, change) in enumerate(nights):
        serial = f"2000000000{i:02x}"
        built.site(
            serial,
            150,
            timezone=zone,
            license_polling_time=check,
            calls_per_hour=0.25,
            call_minutes=10,
            polling={"enabled": True, "mode": "abs", "time": "02:30"},
        )
        built.license(f"lapsing {i}", ["corporate-directory"], last)
        built.event("2027-03-01T00:00:00Z", post=f"lapsing {i}", sites=[serial])
        built.event(change, config_change=True, sites=[serial])
    return built.license("next", ["corporate-directory"], "2028-03-31").event(
        "2027-03-05T00:00:00Z", post="next"
    )


RANDOM_NIGHTS = [  # zone, the night its clocks change, a configuration change the day before
    ("America/New_York", "2027-03-14", "2027-03-13T18:00:00Z"),  # forward: 02:00 -> 03:00
    ("Europe/Berlin", "2027-03-28", "2027-03-27T12:00:00Z"),  # forward
    ("Australia/Sydney", "2027-04-04", "2027-04-03T04:00:00Z"),  # back: 03:00 -> 02:00
    ("Pacific/Auckland", "2027-04-04", "2027-04-03T02:00:00Z"),  # back
]


def dst_random_fleet() -> ScenarioBuilder:
    """Random polling every two days in a 01:00-05:00 window (its night chosen by the MAC,
    its moment drawn at each boot) across the nights the clocks change, a configuration
    change the day before each: the phones whose MAC chose that night reboot at their moment
    in it."""
    built = ScenarioBuilder(start="2027-03-10T00:00:00Z", days=30, server={"capacity": 1000000})
    polling = {"enabled": True, "mode": "random", "period_s": 172800, "time": "01:00",
               "random_end": "05:00"}  # fmt: skip
    for i, (zone, _, change) in enumerate(RANDOM_NIGHTS):
        serial = f"3000000000{i:02x}"
        built.site(serial, 150, timezone=zone, polling=polling)
        built.event(change, config_change=True, sites=[serial])
    return built.license("kept", ["corporate-directory"], "2028-03-31").event(
        "2027-03-10T00:00:00Z", post="kept"
    )


def _keys(scenario: Scenario, serial: str) -> dict[str, LicenseKey]:
    return {
        name: make_license(
            serial=serial,
            type=LicenseType.SITE,
            terms={slot: lic.expires or NEVER for slot in lic.slots},
        )
        for name, lic in scenario.licenses.items()
    }


class Reference:
    """One phone on the per-phone engine, fed the simulator's inputs."""

    def __init__(self, run: Run, phone: int) -> None:
        scenario, fleet = run.scenario, run.fleet
        site = int(fleet.site[phone])
        self.run, self.site = run, site
        self.serial = fleet.sites.serials[site]
        group = next(g for g in scenario.groups if self.serial in g.serials())
        self.origin = scenario.start
        self.mac = fleet.mac(phone)
        config = PhoneConfig(
            mac=self.mac,
            timezone=fleet.sites.timezones[site],
            license_polling_time=group.license_polling_time,
            polling=group.polling,
            always_reboot=group.always_reboot,
        )
        self.engine = DeviceEngine(config, trusted_keys_for())
        self.group = group
        self.keys = KEYS.setdefault((*scenario.licenses, self.serial), _keys(scenario, self.serial))
        self.phone_file = (
            [make_license(serial=self.mac, terms=dict.fromkeys(group.phone_slots, NEVER))]
            if group.phone_slots
            else None
        )
        self.changes = [
            (e.at - self.origin).total_seconds()
            for e in scenario.events
            if isinstance(e, ConfigChange) and (e.sites is None or self.serial in e.sites)
        ]
        self.seen = 0
        self.phone_key = int(fleet.key[phone])

    def moment(self, seconds: float) -> datetime:
        return self.origin + timedelta(seconds=seconds)

    def seconds(self, moment: datetime) -> float:
        return (moment - self.origin).total_seconds()

    def version(self, t: float) -> int:
        return sum(1 for c in self.changes if c <= t)

    def posted(self, t: float) -> list[LicenseKey] | None:
        name = None
        for event in self.run.scenario.events:
            mine = isinstance(event, Post) and (event.sites is None or self.serial in event.sites)
            if mine and self.seconds(event.at) <= t:
                name = event.license
        return [self.keys[name]] if name else None

    def play(self, notify: float | None) -> None:
        engine, horizon = self.engine, self.run.horizon_s
        boot_s = self.run.scenario.server.boot_s
        queue: list[tuple[float, int, str]] = []
        chance = float(self.run.fleet.sites.call_chance[self.site])
        mean = float(self.run.fleet.sites.call_mean_s[self.site])
        for start, end in calls_between(self.phone_key, 0.0, horizon, chance, mean):
            heapq.heappush(queue, (start, 1, "call"))
            heapq.heappush(queue, (end, 0, "hangup"))
        if notify is not None:
            heapq.heappush(queue, (notify, 4, "notify"))
        engine.power_on(self.origin)
        engine.boot_completed(self.origin, self.posted(0.0), self.phone_file)
        while True:
            wake = engine.next_wakeup()
            wake_s = self.seconds(wake) if wake is not None else np.inf
            top = queue[0] if queue else (np.inf, 9, "")
            if min(wake_s, top[0]) >= horizon:
                break
            if wake_s < top[0] or (wake_s == top[0] and top[1] > 3):
                self.handle(engine.advance(wake), wake_s, queue, boot_s)
                continue
            t, _, kind = heapq.heappop(queue)
            now = self.moment(t)
            if kind == "call":
                actions = engine.call_started(now)
            elif kind == "hangup":
                actions = engine.call_ended(now)
            elif kind == "notify":
                actions = engine.check_sync(now, reboot=self.run.notices[-1].reboot)
            else:
                actions = engine.boot_completed(now, self.posted(t), self.phone_file)
            self.handle(actions, t, queue, boot_s)

    def handle(
        self, actions: list[Boot | CheckConfig], t: float, queue: list, boot_s: float
    ) -> None:
        for action in actions:
            if isinstance(action, Boot):
                self.seen = self.version(t)
                heapq.heappush(queue, (t + boot_s, 5, "done"))
            else:
                changed = self.version(t) > self.seen
                if changed:
                    self.seen = self.version(t)
                more = self.engine.config_checked(self.moment(t), changed, action.reason)
                self.handle(more, t, queue, boot_s)


KEYS: dict[tuple[str, ...], dict[str, LicenseKey]] = {}
CAUSE = {Reason.LICENSE_EXPIRED: Cause.LICENSE_EXPIRED, Reason.CONFIG_CHANGED:
         Cause.CONFIG_CHANGED, Reason.CHECK_SYNC: Cause.CHECK_SYNC}  # fmt: skip


@pytest.fixture(scope="module")
def simulated() -> Run:
    return simulate(agreement_fleet().scenario(), record=True)


@pytest.fixture(scope="module")
def around_dst() -> Run:
    return simulate(dst_fleet().scenario(), record=True)


def simulated_reboots(run: Run) -> dict[int, list[tuple[float, int]]]:
    found: dict[int, list[tuple[float, int]]] = {}
    for phones, begin, cause, _ in run.tally.reboot_log:
        for phone, at, why in zip(phones, begin, cause, strict=True):
            found.setdefault(int(phone), []).append((float(at), int(why)))
    return found


def test_simulator_and_engine_agree_phone_by_phone(simulated: Run) -> None:
    assert simulated.fleet.size == 2000
    assert_agreement(simulated)


def test_simulator_and_engine_agree_around_dst_changes(around_dst: Run) -> None:
    assert around_dst.fleet.size == 600
    assert_agreement(around_dst)
    # the case it is about happened: every site's config-poll reboot after the lapse, none of
    # them on the night itself before the lapse's boot ended
    causes = {c for phones in simulated_reboots(around_dst).values() for _, c in phones}
    assert causes == {Cause.LICENSE_EXPIRED, Cause.CONFIG_CHANGED}


def test_simulator_and_engine_agree_on_random_polls_in_dst_nights() -> None:
    run = simulate(dst_random_fleet().scenario(), record=True)
    assert_agreement(run)
    # every poll that found the change fell inside the local window; on the nights the clocks
    # went back some came in the window's last hour, which absolute offsets never reached
    local = []
    for phone, reboots in simulated_reboots(run).items():
        zone = ZoneInfo(run.fleet.sites.timezones[int(run.fleet.site[phone])])
        local += [
            (zone.key, (run.scenario.start + timedelta(seconds=at)).astimezone(zone))
            for at, cause in reboots
            if cause == Cause.CONFIG_CHANGED
        ]
    assert len(local) == run.fleet.size
    assert all(time(1) <= at.time() < time(5) for _, at in local)
    for zone, night, _ in RANDOM_NIGHTS:
        that_night = [at for key, at in local if key == zone and str(at.date()) == night]
        assert len(that_night) > 30, zone
        assert any(at.time() >= time(4) for at in that_night), zone


def assert_agreement(run: Run) -> None:
    ours = simulated_reboots(run)
    end = run.scenario.end
    notices = run.notices[-1].planned_s if run.notices else None
    mismatches = []
    for phone in range(run.fleet.size):
        ref = Reference(run, phone)
        notice = notices[phone] if notices is not None else np.inf
        ref.play(float(notice) if np.isfinite(notice) else None)
        theirs = [
            (ref.seconds(r.at), int(CAUSE[r.reason]))
            for r in ref.engine.reboots
            if r.reason is not Reason.POWER_ON
        ]
        mine = ours.get(phone, [])
        close = [c for _, c in theirs] == [c for _, c in mine] and all(
            abs(a - b) <= 1.0 for (a, _), (b, _) in zip(theirs, mine, strict=False)
        )
        held = {g.slot for g in ref.engine.features(end - timedelta(seconds=1))}
        sim_mask = int(run.phones.held_at(np.array([phone]), np.array([run.horizon_s - 1.0]))[0])
        sim_held = {s for s in range(32) if sim_mask >> s & 1}
        if not close or held != sim_held:
            mismatches.append((phone, theirs, mine, held, sim_held))
    assert not mismatches, f"{len(mismatches)} phones differ, first: {mismatches[:3]}"


def test_the_agreement_fleet_exercises_every_rule(simulated: Run) -> None:
    """The comparison above means something only if each behaviour happens in it."""
    causes = {c for phones in simulated_reboots(simulated).values() for _, c in phones}
    assert causes == {Cause.LICENSE_EXPIRED, Cause.CONFIG_CHANGED, Cause.CHECK_SYNC}
    assert simulated.tally.waited_for_calls > 0
    assert simulated.tally.absorbed > 100
    assert simulated.tally.checked_changed > 0
    # R8: booted with the lapsed key, no reboot until the configuration changed 10 days later
    kept_down = [
        reboots
        for reboots in simulated_reboots(simulated).values()
        if [c for _, c in reboots] == [Cause.LICENSE_EXPIRED, Cause.CONFIG_CHANGED]
        and reboots[1][0] - reboots[0][0] > 10 * 86400
    ]
    assert len(kept_down) > 500
