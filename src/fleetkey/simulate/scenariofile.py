"""A scenario file (TOML) read into a :class:`~fleetkey.simulate.scenario.Scenario`: every
rejection names the file, the table and the entry, and what was expected. Pure: the caller reads
the file and passes its text. The format is in docs/simulate.md.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleetkey.core.device.config import ConfigPolling, PollMode
from fleetkey.core.features import FeatureCatalog
from fleetkey.core.rollout.windows import Window
from fleetkey.errors import FleetkeyError, InputError, ScenarioError
from fleetkey.simulate.scenario import (
    CALL_SLOT_S,
    MAX_DAYS,
    ConfigChange,
    Event,
    Post,
    Rollout,
    Scenario,
    Server,
    ServerDown,
    SiteGroup,
    SiteLicense,
    check_event,
)
from fleetkey.simulate.tomlreader import TomlReader


def parse_scenario(
    text: str, name: str, catalog: FeatureCatalog, base: Scenario | None = None
) -> Scenario:
    """The scenario in TOML ``text`` (``name`` says where it came from in errors).

    With ``base`` (a fleet taken from the store) the text is a what-if on top of it: no
    ``[[sites]]``; ``[simulation]`` and ``[server]`` keys replace the base's, ``[[licenses]]``
    are added to its licenses and ``[[events]]`` to its events."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{name}: not TOML: {exc}") from exc
    reader = _Reader(name, catalog)
    return reader.scenario(document) if base is None else reader.what_if(document, base)


class _Reader(TomlReader):
    def __init__(self, name: str, catalog: FeatureCatalog) -> None:
        super().__init__(name)
        self.catalog = catalog

    def scenario(self, doc: dict[str, Any]) -> Scenario:
        self.known(doc, "the top level", {"simulation", "server", "sites", "licenses", "events"})
        sim = self.table(doc, "simulation", required=True)
        self.known(sim, "[simulation]", {"start", "days", "name"})
        start = self.moment(sim, "start", "[simulation]")
        days = self.number(sim, "days", "[simulation]", int, 365, 1, MAX_DAYS)
        server = self.server(self.table(doc, "server"))
        groups = tuple(
            self.group(entry, f"[[sites]] {i + 1}")
            for i, entry in enumerate(self.array(doc, "sites"))
        )
        if not groups:
            raise self.fail("[[sites]]", "at least one site is needed")
        serials = [s for g in groups for s in g.serials()]
        licenses: dict[str, SiteLicense] = {}
        for i, entry in enumerate(self.array(doc, "licenses")):
            lic = self.license(entry, f"[[licenses]] {i + 1}")
            if lic.name in licenses:
                raise self.fail(f"[[licenses]] {i + 1}", f"license {lic.name!r} is named twice")
            licenses[lic.name] = lic
        scenario_sites = set(serials)
        end = start + timedelta(days=days)
        events = tuple(
            self.event(entry, f"[[events]] {i + 1}", licenses, scenario_sites, (start, end))
            for i, entry in enumerate(self.array(doc, "events"))
        )
        title = sim.get("name", self.name.rsplit("/", 1)[-1])
        if not isinstance(title, str):
            raise self.fail("[simulation]", "name must be a string")
        return self.made(title, start, days, groups, licenses, events, server)

    def made(
        self, title: str, start: datetime, days: int, groups: tuple[SiteGroup, ...],
        licenses: dict[str, SiteLicense], events: Sequence[Event], server: Server,
    ) -> Scenario:  # fmt: skip
        ordered = tuple(sorted(events, key=_at))
        try:
            return Scenario(title, start, days, groups, licenses, ordered, server)
        except ScenarioError as exc:
            raise ScenarioError(f"{self.name}: {exc}", hint=exc.hint) from exc

    def what_if(self, doc: dict[str, Any], base: Scenario) -> Scenario:
        self.known(
            doc, "the top level of a what-if", {"simulation", "server", "licenses", "events"}
        )
        sim = self.table(doc, "simulation")
        self.known(sim, "[simulation]", {"start", "days", "name"})
        start = self.moment(sim, "start", "[simulation]") if "start" in sim else base.start
        days = self.number(sim, "days", "[simulation]", int, base.days, 1, MAX_DAYS)
        licenses = dict(base.licenses)
        for i, entry in enumerate(self.array(doc, "licenses")):
            lic = self.license(entry, f"[[licenses]] {i + 1}")
            if lic.name in licenses:
                raise self.fail(f"[[licenses]] {i + 1}", f"license {lic.name!r} is named twice")
            licenses[lic.name] = lic
        serials = {s for g in base.groups for s in g.serials()}
        period = (start, start + timedelta(days=days))
        events = [
            self.event(entry, f"[[events]] {i + 1}", licenses, serials, period)
            for i, entry in enumerate(self.array(doc, "events"))
        ]
        if start != base.start:  # what the phones booted with moves to the new start
            events += [replace(e, at=start) for e in base.events if isinstance(e, Post)]
            events += [e for e in base.events if not isinstance(e, Post)]
        else:
            events += base.events
        title = sim.get("name", f"{base.name} + {self.name.rsplit('/', 1)[-1]}")
        if not isinstance(title, str):
            raise self.fail("[simulation]", "name must be a string")
        server = self.server(self.table(doc, "server"), base.server)
        return self.made(title, start, days, base.groups, licenses, events, server)

    def server(self, table: dict[str, Any], default: Server | None = None) -> Server:
        where = "[server]"
        self.known(
            table,
            where,
            {"capacity", "headroom", "boot_requests", "boot_seconds", "retry_after_s", "give_up_s"},
        )
        default = default or Server()
        return Server(
            capacity_per_s=self.number(
                table, "capacity", where, float, default.capacity_per_s, 0.001
            ),
            headroom=self.number(table, "headroom", where, float, default.headroom, 0.001, 1.0),
            boot_requests=self.number(
                table, "boot_requests", where, float, default.boot_requests, 1.0
            ),
            boot_s=self.number(table, "boot_seconds", where, float, default.boot_s, 1.0),
            retry_after_s=self.number(
                table, "retry_after_s", where, float, default.retry_after_s, 1.0
            ),
            give_up_s=self.number(table, "give_up_s", where, float, default.give_up_s, 1.0),
        )

    def group(self, entry: object, where: str) -> SiteGroup:
        if not isinstance(entry, dict):
            raise self.fail(where, "must be a table")
        self.known(
            entry,
            where,
            {"serial", "count", "phones", "timezone", "timezones", "window",
             "license_polling_time", "polling", "always_reboot", "calls_per_hour",
             "call_minutes", "phone_features"},
        )  # fmt: skip
        serial = entry.get("serial")
        if not isinstance(serial, str) or len(serial) != 12 or not _is_hex(serial):
            raise self.fail(where, f"serial must be 12 hex digits, not {serial!r}")
        count = self.number(entry, "count", where, int, 1, 1, 1_000_000)
        if int(serial, 16) + count > 0xFFFFFFFFFFFF:
            raise self.fail(where, f"{count} serials from {serial} run past ffffffffffff")
        zones = entry.get("timezones", entry.get("timezone", "UTC"))
        zones = [zones] if isinstance(zones, str) else zones
        if not isinstance(zones, list) or not zones or not all(isinstance(z, str) for z in zones):
            raise self.fail(where, "timezone(s) must be a time zone name or a list of them")
        for zone in zones:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise self.fail(where, f"unknown time zone {zone!r}") from exc
        window = entry.get("window")
        try:
            parsed_window = Window.parse(window) if window is not None else None
        except (InputError, TypeError, AttributeError) as exc:
            raise self.fail(where, f"window {window!r} is not HH:MM-HH:MM") from exc
        calls = self.number(entry, "calls_per_hour", where, float, 0.0, 0.0, 3600 / CALL_SLOT_S)
        minutes = self.number(entry, "call_minutes", where, float, 3.0, 0.0, CALL_SLOT_S / 120)
        always = entry.get("always_reboot", False)
        if not isinstance(always, bool):
            raise self.fail(where, "always_reboot must be true or false")
        return SiteGroup(
            serial=serial.lower(),
            count=count,
            phones=self.number(entry, "phones", where, int, None, 1, 10_000_000),
            timezones=tuple(zones),
            window=parsed_window,
            license_polling_time=self.clock(entry, "license_polling_time", where, time(2, 0)),
            polling=self.polling(self.table(entry, "polling"), f"{where} polling"),
            always_reboot=always,
            calls_per_hour=calls,
            call_minutes=minutes,
            phone_slots=self.slots(entry.get("phone_features", []), where, "phone_features"),
        )

    def polling(self, table: dict[str, Any], where: str) -> ConfigPolling:
        self.known(table, where, {"enabled", "mode", "period_s", "time", "random_end"})
        enabled = table.get("enabled", False)
        if not isinstance(enabled, bool):
            raise self.fail(where, "enabled must be true or false")
        mode = table.get("mode", "abs")
        if mode not in {m.value for m in PollMode}:
            raise self.fail(where, f"mode must be abs, rel or random, not {mode!r}")
        end = self.clock(table, "random_end", where, None) if "random_end" in table else None
        period_s = self.number(table, "period_s", where, int, 86400, 3600)
        at = self.clock(table, "time", where, time(3, 0))
        try:
            return ConfigPolling(enabled, PollMode(mode), period_s, at, end)
        except FleetkeyError as exc:
            raise self.fail(where, str(exc)) from exc

    def license(self, entry: object, where: str) -> SiteLicense:
        if not isinstance(entry, dict):
            raise self.fail(where, "must be a table")
        self.known(entry, where, {"name", "features", "expires"})
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(where, "name must be a non-empty string")
        expires = entry.get("expires")
        if expires == "never":
            expires = None
        elif not isinstance(expires, date) or isinstance(expires, datetime):
            raise self.fail(
                where, f"expires must be a date (2027-03-31) or 'never', not {expires!r}"
            )
        slots = self.slots(entry.get("features"), where, "features")
        if not slots:
            raise self.fail(where, "features must name at least one feature")
        return SiteLicense(name, slots, expires)

    def event(
        self,
        entry: object,
        where: str,
        licenses: dict[str, SiteLicense],
        serials: set[str],
        period: tuple[datetime, datetime],
    ) -> Event:
        event = self.event_value(entry, where)
        try:
            check_event(event, licenses, serials, *period)
        except ScenarioError as exc:
            raise ScenarioError(f"{self.name}: {where}: {exc}", hint=exc.hint) from exc
        return event

    def event_value(self, entry: object, where: str) -> Event:
        if not isinstance(entry, dict):
            raise self.fail(where, "must be a table")
        kinds = [k for k in ("post", "rollout", "config_change", "server_down_until") if k in entry]
        if len(kinds) != 1:
            raise self.fail(
                where, "needs exactly one of post, rollout, config_change, server_down_until"
            )
        kind = kinds[0]
        allowed = {"at", kind, "sites"} | ({"deadline", "reboot"} if kind == "rollout" else set())
        self.known(entry, where, allowed)
        at = self.moment(entry, "at", where)
        sites = self.sites(entry.get("sites"), where)
        if kind == "post":
            name = entry["post"]
            if not isinstance(name, str):
                raise self.fail(where, f"post must name a license, not {name!r}")
            return Post(at, name, sites)
        if kind == "rollout":
            reboot = entry.get("reboot", True)
            if not isinstance(reboot, bool):
                raise self.fail(where, "reboot must be true or false")
            if entry["rollout"] is not True:
                raise self.fail(where, "rollout must be true")
            return Rollout(at, self.moment(entry, "deadline", where), sites, reboot)
        if kind == "config_change":
            if entry["config_change"] is not True:
                raise self.fail(where, "config_change must be true")
            return ConfigChange(at, sites)
        if sites is not None:
            raise self.fail(where, "the server is one for every site: no sites here")
        return ServerDown(at, self.moment(entry, "server_down_until", where))

    def slots(self, value: object, where: str, key: str) -> frozenset[int]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, f"{key} must be a list of feature names")
        try:
            return frozenset(self.catalog.slot_of(v) for v in value)
        except FleetkeyError as exc:
            raise self.fail(where, f"{key}: {exc}") from exc

    def sites(self, value: object, where: str) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(where, "sites must be a non-empty list of site serials")
        return tuple(v.lower() for v in value)


def _at(event: Event) -> datetime:
    return event.at


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
