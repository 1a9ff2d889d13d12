"""Phone User-Agents (domain.md §5.3): model, firmware, boot stage, and the MAC when tagged.

Real examples::

    FileTransport PolycomSoundPointIP-SPIP_550-UA/4.0.15.1047 (SN:0004a11a1a1a) Type/Application
    FileTransport PolycomSoundPointIP-SPIP_335-UA/4.3.1.0440
    FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application

``(SN:<MAC>)`` appears when the phone has ``device.prov.tagSerialNo=1`` (the default is 0, so
most phones do not say who they are); ``Type/Updater`` when the updater asks (the boot log a
VVX puts first), ``Type/Application`` when the application does (domain.md §5.1, §5.3).

``fleetkey emulate`` and ``capacity measure`` end their phones' User-Agents with
``EMULATED_MARK`` (`` Emulated/fleetkey``): the server records it with every fetch, so an
emulated boot against a live server can be told from a real phone's, and never writes an
emulated phone's firmware into the inventory (``PhoneAgent.emulated``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

MAX_LENGTH: Final = 512  # longer values are not phone User-Agents; never run the regex on them
EMULATED_MARK: Final = "Emulated/fleetkey"  # fleetkey's emulated phones, after Type/

_POLYCOM = re.compile(
    r"FileTransport Polycom(?P<family>[A-Za-z]+)-(?P<model>[A-Za-z0-9_]+)"
    r"-UA/(?P<firmware>\d+(?:\.\d+){1,4}(?:[A-Za-z0-9_-]*))"
    r"(?: \(SN:(?P<serial>[0-9A-Fa-f]{12})\))?"
    r"(?: Type/(?P<stage>[A-Za-z]+))?"
    r"(?P<emulated> Emulated/fleetkey)?"
)


class BootStage(enum.StrEnum):
    """The ``Type/`` of a User-Agent: which of the phone's programs is asking."""

    UPDATER = "Updater"  # the bootROM's updater: uploads the boot log before the application runs
    APPLICATION = "Application"


def format_user_agent(
    model: str,
    firmware: str,
    stage: BootStage | None,
    *,
    mac: str | None = None,
    family: str = "VVX",
    emulated: bool = False,
) -> str:
    """The User-Agent a phone sends: ``(SN:<mac>)`` only when tagged, ``Type/`` when staged;
    ``emulated``: fleetkey's mark at the end."""
    text = f"FileTransport Polycom{family}-{model}-UA/{firmware}"
    if mac is not None:
        text += f" (SN:{mac})"
    if stage is not None:
        text += f" Type/{stage.value}"
    if emulated:
        text += f" {EMULATED_MARK}"
    return text


@dataclass(frozen=True, slots=True)
class PhoneAgent:
    """What a phone's User-Agent says about it."""

    family: str  # SoundPointIP, SoundStationIP, VVX, ...
    model: str  # SPIP_550, VVX_500, ...
    firmware: str  # 5.9.7.4477
    stage: str | None  # Application, Updater, or None (bootROM / old updaters)
    mac: str | None  # from (SN:...), lowercase; None when the phone does not tag it
    emulated: bool = False  # fleetkey's emulator (EMULATED_MARK), not a phone

    @property
    def vendor(self) -> str:
        return "Polycom"


def parse_user_agent(text: str | None) -> PhoneAgent | None:
    """The phone a User-Agent describes, or None for anything that is not a phone's."""
    if not text or len(text) > MAX_LENGTH:
        return None
    match = _POLYCOM.fullmatch(text.strip())
    if match is None:
        return None
    serial = match.group("serial")
    mac = serial.lower() if serial and serial != "000000000000" else None
    return PhoneAgent(
        family=match.group("family"),
        model=match.group("model"),
        firmware=match.group("firmware"),
        stage=match.group("stage"),
        mac=mac,
        emulated=match.group("emulated") is not None,
    )
