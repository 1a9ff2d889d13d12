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
from datetime import datetime, timedelta

import numpy as np
import pytest

from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.engine import Boot, CheckConfig, DeviceEngine, Reason
from fleetkey.core.features import default_catalog
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.terms import NEVER
from fleetkey.simulate.calls import calls_between
from fleetkey.simulate.phones import Cause
from fleetkey.simulate.scenario import ConfigChange, Post, Scenario, parse_scenario
from fleetkey.simulate.simulation import Run, simulate
from fleetkey.testing import make_license, trusted_keys_for

ZONES = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney", "UTC",
         "America/Los_Angeles", "Asia/Kolkata", "Europe/London", "Pacific/Auckland",
         "America/Sao_Paulo"]  # fmt: skip
POLLING = [
    "",
    "polling = { enabled = true, mode = 'abs', time = '03:10' }",
    # polls just before its window opens: the rollout's check-syncs find it booting (absorbed)
    "polling = { enabled = true, mode = 'abs', time = '00:29:30' }",
    "polling = { enabled = true, mode = 'rel', period_s = 14400 }",
    # random with a period of a day or less: a moment drawn at each boot, then every period
    "polling = { enabled = true, mode = 'random', period_s = 43200, time = '01:00', "
    "random_end = '05:00' }",
    "",
    "polling = { enabled = true, mode = 'abs', time = '01:30' }",
    "polling = { enabled = true, mode = 'rel', period_s = 21600 }",
    "polling = { enabled = true, mode = 'random', period_s = 259200, time = '02:00', "
    "random_end = '04:00' }",
    "polling = { enabled = true, mode = 'abs', period_s = 172800, time = '05:00' }",
]


def scenario_text() -> str:
    sites = []
    for i, zone in enumerate(ZONES):
        phone = "phone_features = ['vqmon']" if i % 3 == 0 else ""
        if i == 4:
            phone = "phone_features = ['corporate-directory']"
        sites.append(
            f"""[[sites]]
serial = "1000000000{i:02x}"
phones = 200
timezone = "{zone}"
window = "00:30-05:30"
license_polling_time = "{"02:00" if i != 5 else "03:30"}"
always_reboot = {"true" if i in (0, 1) else "false"}
calls_per_hour = 0.25
call_minutes = 10
{phone}
{POLLING[i]}
"""
        )
    return (
        """[simulation]
start = 2027-01-01T00:00:00Z
days = 40
[server]
capacity = 1000000
"""
        + "\n".join(sites)
        + """
[[licenses]]
name = "a"
features = ["corporate-directory", "call-recording"]
expires = 2027-01-20
[[licenses]]
name = "b"
features = ["corporate-directory", "call-recording"]
expires = 2028-01-31
[[events]]
at = 2027-01-01T00:00:00Z
post = "a"
[[events]]
at = 2027-01-15T12:00:00Z
post = "b"
sites = ["100000000000", "100000000001", "100000000002", "100000000003", "100000000004",
         "100000000005"]
[[events]]
at = 2027-01-16T00:00:00Z
rollout = true
deadline = 2027-01-19T00:00:00Z
reboot = false
sites = ["100000000000", "100000000001", "100000000002", "100000000003", "100000000004"]
[[events]]
at = 2027-01-15T18:00:07Z
config_change = true
sites = ["100000000002", "100000000003", "100000000004"]
[[events]]
at = 2027-01-25T09:00:00Z
post = "b"
sites = ["100000000006", "100000000007", "100000000008", "100000000009"]
[[events]]
at = 2027-02-01T10:00:07Z
config_change = true
sites = ["100000000006", "100000000007", "100000000008", "100000000009"]
"""
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
        self.keys = KEYS.setdefault(self.serial, _keys(scenario, self.serial))
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
        engine, horizon = self.engine, self.run.horizon
        boot_s = self.run.scenario.server.boot_seconds
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


KEYS: dict[str, dict[str, LicenseKey]] = {}
CAUSE = {Reason.LICENSE_EXPIRED: Cause.LICENSE_EXPIRED, Reason.CONFIG_CHANGED:
         Cause.CONFIG_CHANGED, Reason.CHECK_SYNC: Cause.CHECK_SYNC}  # fmt: skip


@pytest.fixture(scope="module")
def simulated() -> Run:
    scenario = parse_scenario(scenario_text(), "agreement.toml", default_catalog())
    return simulate(scenario, record=True)


def simulated_reboots(run: Run) -> dict[int, list[tuple[float, int]]]:
    found: dict[int, list[tuple[float, int]]] = {}
    for phones, begin, cause, _ in run.tally.reboot_log:
        for phone, at, why in zip(phones, begin, cause, strict=True):
            found.setdefault(int(phone), []).append((float(at), int(why)))
    return found


def test_simulator_and_engine_agree_phone_by_phone(simulated: Run) -> None:
    run = simulated
    assert run.fleet.size == 2000
    ours = simulated_reboots(run)
    end = run.scenario.end
    notices = run.notices[-1].planned
    mismatches = []
    for phone in range(run.fleet.size):
        ref = Reference(run, phone)
        ref.play(float(notices[phone]) if np.isfinite(notices[phone]) else None)
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
        sim_mask = int(run.phones.held_at(np.array([phone]), np.array([run.horizon - 1.0]))[0])
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
