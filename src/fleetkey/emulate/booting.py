"""One emulated phone's boot over a ``Transport``, following the master configuration it is
served (``core.device.boot``): the updater's pass, then the application's.

The emulator's fleet and ``capacity measure`` boot phones the same way; each hands in its own
``Exchange`` (how one request goes: retries, recording, counting). What the phone keeps across
reboots besides its keys is its ``Flash``: the version of the firmware image it installed. The
updater reads an image's first ``HEADER_BYTES`` (where a real image says its version) and the
size, and downloads the whole image only when that differs from the flash's; the download is
counted and hashed, never kept in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from fleetkey.core.device.boot import HEADER_BYTES as HEADER_BYTES
from fleetkey.core.device.boot import FileRequest, after_master, master_requests
from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.models import family
from fleetkey.core.license import LicenseKey
from fleetkey.core.masterconfig import Application, parse_master_config
from fleetkey.core.rules import SignatureVerifier
from fleetkey.core.useragent import BootStage, format_user_agent
from fleetkey.core.verdicts import SignatureCheck
from fleetkey.emulate.transport import Reply
from fleetkey.errors import MasterConfigError

Exchange = Callable[[FileRequest, bytes, str, int | None, bool], Awaitable[Reply | None]]
"""One request: (request, body, User-Agent, first bytes only, keep the body) → the answer, or
None when it failed (the exchange has said why)."""


class BootAborted(Exception):  # noqa: N818  # a signal to stop, not an error
    """An exchange ends the boot here (the capacity probe stops a boot at its first 503)."""


class RememberedVerdicts:
    """A fleet's signature verifier: its phones trust the same keys, so the verdict on a key
    is the same for every phone, and each distinct key is checked once (ten thousand phones
    booting with one site license verified it ten thousand times)."""

    def __init__(self, verifier: SignatureVerifier) -> None:
        self._verifier = verifier
        self._verdicts: dict[LicenseKey, SignatureCheck] = {}

    def check(self, key: LicenseKey) -> SignatureCheck:
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = self._verifier.check(key)
        return verdict


def user_agent(config: PhoneConfig, stage: BootStage = BootStage.APPLICATION) -> str:
    """What the phone sends: ``FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application``,
    with ``(SN:<mac>)`` before ``Type/`` only when ``config.tag_serial``, as real phones do.
    The family is the model's (``SPIP_670`` → ``SoundPointIP``). A VVX's updater says
    ``Type/Updater``; a SoundPoint's or SoundStation's says no ``Type/`` (domain.md §5.3, S14:
    ``FileTransport PolycomSoundPointIP-SPIP_335-UA/4.3.1.0440``). Every one ends with
    ``core.useragent.EMULATED_MARK``: the server records it, and keeps the inventory's firmware."""
    mac = config.mac if config.tag_serial else None
    kind = family(config.model)
    said = None if stage is BootStage.UPDATER and kind != "VVX" else stage
    return format_user_agent(
        config.model, config.firmware, said, mac=mac, family=kind, emulated=True
    )


@dataclass
class Flash:
    """What a phone keeps across reboots besides its keys: the installed image's version, and
    (over FTP) the image headers its updater read.

    ``image`` None at power-on: with ``adopt`` (the default) the first image the server
    offers counts as installed (a fleet that runs the served firmware); without, the first
    boot downloads it (a fleet whose firmware is being changed). ``headers``: by path, the
    ``SIZE`` and ``MDTM`` answers an image's header was read under, and that header
    (``emulate.ftp``): while they answer the same, the header is not read again."""

    image: str | None = None
    adopt: bool = True
    headers: dict[str, tuple[str, Reply]] = field(default_factory=dict)

    def copy(self) -> Flash:
        """Another phone's flash holding the same (a phone that ran the same image)."""
        return Flash(self.image, self.adopt, dict(self.headers))


@dataclass
class BootOutcome:
    master: str | None = None  # the master configuration it followed
    app: Application | None = None
    image_bytes: int = 0  # firmware downloaded in this boot
    licenses: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # name → answer
    seen: dict[str, str] = field(default_factory=dict)  # GET 200 name → SHA-256
    problems: list[str] = field(default_factory=list)


async def run_boot(
    config: PhoneConfig,
    flash: Flash,
    exchange: Exchange,
    *,
    licenses: bool,
    named_master: str | None = None,
    now: Callable[[], datetime],
) -> BootOutcome:
    """Both passes of one boot, in ``core.device.boot``'s order: the masters until one is
    found, then what follows the master it was served (``after_master``); each request with
    its stage's User-Agent. The license files' answers are in the outcome, for the engine."""
    outcome = BootOutcome()
    agents = {stage: user_agent(config, stage) for stage in BootStage}
    for request in master_requests(config.mac, named_master):
        reply = await exchange(request, b"", agents[request.stage], None, True)
        if reply is None or reply.status != 200:
            continue
        outcome.seen[request.name] = hashlib.sha256(reply.body).hexdigest()
        try:
            outcome.app = parse_master_config(reply.body, source=request.name).for_model(
                config.model
            )
            outcome.master = request.name
        except MasterConfigError as exc:
            outcome.problems.append(str(exc))  # followed as if there were none
        break
    rest = after_master(config, outcome.app, licenses=licenses)
    images = [request for request in rest if request.first_found]
    outcome.image_bytes = await _update_image(images, flash, exchange, agents[BootStage.UPDATER])
    for request in rest[len(images) :]:
        body = _log_line(request.name, now()) if request.method == "PUT" else b""
        reply = await exchange(request, body, agents[request.stage], None, True)
        if reply is None:
            continue
        if request.method == "GET" and reply.status == 200:
            outcome.seen[request.name] = hashlib.sha256(reply.body).hexdigest()
        if request.license:
            outcome.licenses[request.name] = (reply.status, reply.body)
    return outcome


async def _update_image(
    images: list[FileRequest], flash: Flash, exchange: Exchange, agent: str
) -> int:
    """Read the header of the first image found; download it when its version is not the
    flash's. Returns the bytes downloaded."""
    for request in images:
        head = await exchange(request, b"", agent, HEADER_BYTES, True)
        if head is None or head.status == 404:
            continue
        if head.status not in (200, 206):
            return 0
        digest = hashlib.sha256(head.body[:HEADER_BYTES]).hexdigest()[:16]
        version = f"{head.size if head.size is not None else len(head.body)}:{digest}"
        if flash.image is None and flash.adopt:
            flash.image = version
        if version == flash.image:
            return 0
        whole = await exchange(request, b"", agent, None, False)
        if whole is None or whole.status != 200:
            return 0
        flash.image = version
        return whole.size or 0
    return 0


def _log_line(name: str, at: datetime) -> bytes:
    """A log line stands in for the phone's log."""
    return f"{name} {at.isoformat()}\n".encode()
