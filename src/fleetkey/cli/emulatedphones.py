"""Which phones ``fleetkey emulate`` runs, and as what: generated MACs or a ``--macs`` file with
a ``--models`` mix, or the inventory (``--from-inventory``: each phone's model, firmware and
site, its site's time zone; read in one read-only transaction, never written).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import time
from pathlib import Path
from typing import Final

from fleetkey.cli.context import Env
from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.models import (
    deal_models,
    default_firmware,
    parse_model_mix,
    wire_model,
)
from fleetkey.core.naming import normalize_mac
from fleetkey.emulate.addresses import generated_mac
from fleetkey.errors import InputError

DEFAULT_PHONES: Final = 10


@dataclass(frozen=True, slots=True)
class Chosen:
    """One phone to emulate: its configuration and its SIP digest login, when it has one."""

    config: PhoneConfig
    login: tuple[str, str] | None = None
    site: str | None = None  # its inventory site


@dataclass(frozen=True, slots=True)
class Settings:
    """What every emulated phone shares unless the inventory says otherwise."""

    timezone: str
    license_time: time
    always_reboot: bool
    tag_serial: bool


def choose_phones(
    env: Env,
    settings: Settings,
    *,
    phones: int | None,
    macs: Path | None,
    models: str | None,
    from_inventory: bool,
    site: str | None,
) -> list[Chosen]:
    if from_inventory:
        return _from_inventory(env, settings, phones, site)
    if site is not None:
        raise InputError("--site picks phones of the inventory: give it with --from-inventory")
    mix = parse_model_mix(models) if models else (("VVX_500", 100.0),)
    if macs is None:
        found = _generated(phones if phones is not None else DEFAULT_PHONES)
    else:
        found = _macs(macs, phones)  # all of the file's unless --phones says how many
    dealt = deal_models(mix, len(found))
    return [
        Chosen(_config(settings, mac, model, default_firmware(model)), login)
        for (mac, login), model in zip(found, dealt, strict=True)
    ]


def _config(settings: Settings, mac: str, model: str, firmware: str) -> PhoneConfig:
    return PhoneConfig(
        mac,
        model=model,
        firmware=firmware,
        timezone=settings.timezone,
        license_polling_time=settings.license_time,
        always_reboot=settings.always_reboot,
        tag_serial=settings.tag_serial,
    )


def _from_inventory(
    env: Env, settings: Settings, phones: int | None, site: str | None
) -> list[Chosen]:
    from fleetkey.store import inventory  # start-up: only this path needs the store

    with env.store().transaction() as session:
        found = inventory.phones(session, site)
        zones = {s.serial: s.timezone for s in inventory.sites(session)}
        session.rollback()  # read only: nothing of this run is ever written
    where = f" of site {site}" if site else ""
    if not found:
        raise InputError(
            f"the inventory has no phones{where}",
            hint="add phones with `fleetkey phones import CSV`, or emulate without "
            "--from-inventory",
        )
    if phones is not None and phones > len(found):
        raise InputError(
            f"the inventory has {len(found):,} phones{where}, --phones asks for {phones:,}"
        )
    chosen = []
    for phone in found[: phones or len(found)]:
        model = wire_model(phone.model)  # as a --models mix writes it
        config = _config(settings, phone.mac, model, phone.firmware or default_firmware(model))
        zone = zones.get(phone.site)
        chosen.append(Chosen(replace(config, timezone=zone) if zone else config, site=phone.site))
    return chosen


def _generated(count: int) -> list[tuple[str, tuple[str, str] | None]]:
    return [(generated_mac(i), None) for i in range(count)]


def _macs(path: Path, count: int | None) -> list[tuple[str, tuple[str, str] | None]]:
    """The file's MACs (the first ``count``), each with its SIP digest login when the line
    carries one (``mac,user,password``)."""
    found: list[tuple[str, tuple[str, str] | None]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cells = [cell.strip() for cell in line.split(",")]
        if not cells[0] or cells[0].lower() == "mac" or cells[0].startswith("#"):
            continue
        try:
            mac = normalize_mac(cells[0])
        except InputError as exc:
            raise InputError(f"{path} line {number}: {exc.message}") from exc
        login = (cells[1], cells[2]) if len(cells) >= 3 and cells[1] and cells[2] else None
        found.append((mac, login))
    if not found:
        raise InputError(f"{path} has no MACs: one per line, or mac,user,password")
    if count is None:
        return found
    if len(found) < count:
        raise InputError(f"{path} has {len(found)} MACs, --phones asks for {count}")
    return found[:count]


def read_credentials(path: Path) -> dict[str, tuple[str, str]]:
    """``mac,user,password`` lines (the columns of ``phones import``): each phone's
    provisioning login, by MAC. Every bad line is an error naming it; nothing is half read."""
    found: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cells = [cell.strip() for cell in line.split(",")]
        if not line.strip() or cells[0].startswith("#") or cells[0].lower() == "mac":
            continue
        if len(cells) != 3 or not cells[1] or not cells[2]:
            problems.append(f"line {number}: expected mac,user,password")
            continue
        try:
            mac = normalize_mac(cells[0])
        except InputError as exc:
            problems.append(f"line {number}: {exc.message}")
            continue
        if mac in found:
            problems.append(f"line {number}: {mac} is given twice")
        found[mac] = (cells[1], cells[2])
    if problems:
        raise InputError(f"--credentials {path}: " + "; ".join(problems[:5]), field="credentials")
    return found
