"""What a phone asks for at boot, from the master configuration it was served (domain.md §4-§5).

Pure: the host fetches, this module says what to fetch next. A boot has two passes, each with
its own User-Agent ``Type/`` (domain.md §5.2, §5.3):

* the updater reads the master configuration (``master_names``: one named in the server URL,
  else ``<mac>.cfg``, else ``000000000000.cfg``; the first found), looks for the firmware image
  ``APP_FILE_PATH`` (the model's override first; ``image_names``: the part-number-specific
  name, then the name itself, as the SoundPoint log of §5.1 shows), reads its header and
  downloads it only when its version differs from the one installed, and puts its boot log
  into ``LOG_FILE_DIRECTORY``;
* the application asks for ``CONFIG_FILES`` in order, the override files, both license files
  (site first) in ``LICENSE_DIRECTORY``, the directory files in ``CONTACTS_DIRECTORY``, and
  puts its log into ``LOG_FILE_DIRECTORY`` (``application_requests``).

Placeholders (``[PHONE_MAC_ADDRESS]``, ``[PHONE_MODEL]``, ``[PHONE_PART_NUMBER]``) are expanded
in every name. Without a master configuration (both names missing) a phone keeps the
application in its flash: it downloads no image, asks for its own configuration files
(``PhoneConfig.config_files``), the override, license and directory files at the root, and puts
its logs at the root: the fallback docs/cli.md describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.device.models import part_number
from fleetkey.core.masterconfig import (
    APP_FILE_PATH,
    Application,
    Directory,
    expand,
)
from fleetkey.core.useragent import BootStage

DEFAULT_MASTER: Final = "000000000000.cfg"
SITE_LICENSE: Final = "000000000000-license.cfg"
HEADER_BYTES: Final = 512  # what the updater reads of an image to learn its version


@dataclass(frozen=True, slots=True)
class FileRequest:
    method: str  # GET or PUT
    name: str
    license: bool = False  # one of the two license files
    stage: BootStage = BootStage.APPLICATION  # which program asks: its User-Agent's Type/
    first_found: bool = False  # one of a list tried in order until one is found (masters, images)


def boot_order(
    config: PhoneConfig,
    app: Application | None,
    *,
    licenses: bool,
    named_master: str | None = None,
) -> tuple[FileRequest, ...]:
    """The whole boot in order, the one place that says it (the engine's ``Boot``, the
    emulator's boot): the masters (``master_requests``), then what follows the master
    ``app`` (``after_master``). A host that fetches follows the master it finds, so it asks
    ``master_requests`` and then ``after_master`` of what it was served."""
    return (
        *master_requests(config.mac, named_master),
        *after_master(config, app, licenses=licenses),
    )


def master_requests(mac: str, named: str | None = None) -> tuple[FileRequest, ...]:
    """The updater's requests for the master configurations, the first found wins."""
    return tuple(
        FileRequest("GET", name, stage=BootStage.UPDATER, first_found=True)
        for name in master_names(mac, named)
    )


def after_master(
    config: PhoneConfig, app: Application | None, *, licenses: bool
) -> tuple[FileRequest, ...]:
    """What follows the master configuration ``app`` (None: none was found), in order: the
    firmware images (the first found is the one; its header read, downloaded only when its
    version differs), the updater's boot log, then the application's pass."""
    images = tuple(
        FileRequest("GET", name, stage=BootStage.UPDATER, first_found=True)
        for name in image_names(config, app)
    )
    return (
        *images,
        boot_log(config, app),
        *application_requests(config, app, licenses=licenses),
    )


def master_names(mac: str, named: str | None = None) -> tuple[str, ...]:
    """The master configurations a phone tries, in order, the first found wins (domain.md
    §4, S8): one named in the server URL, else ``<mac>.cfg``, else ``000000000000.cfg``."""
    usual = (f"{mac}.cfg", DEFAULT_MASTER)
    return (named, *(n for n in usual if n != named)) if named else usual


def image_names(config: PhoneConfig, app: Application | None) -> tuple[str, ...]:
    """The firmware image names the updater tries, in order; () without ``APP_FILE_PATH``."""
    if app is None or not app.attributes.get(APP_FILE_PATH, "").strip():
        return ()
    path = _expand(config, app.attributes[APP_FILE_PATH].strip())
    if "://" in path:
        path = urlsplit(path).path  # an image URL: fetched from its path on the server
    folder, _, name = path.lstrip("/").rpartition("/")
    part = part_number(config.model)
    names = [name] if not part or name.startswith(part) else [f"{part}.{name}", name]
    return tuple(f"{folder}/{n}" if folder else n for n in names)


def boot_log(config: PhoneConfig, app: Application | None) -> FileRequest:
    """The updater's boot log, into ``LOG_FILE_DIRECTORY``."""
    name = _in(app, Directory.LOG_FILE, f"{config.mac}-boot.log")
    return FileRequest("PUT", name, stage=BootStage.UPDATER)


def application_requests(
    config: PhoneConfig, app: Application | None, *, licenses: bool
) -> tuple[FileRequest, ...]:
    """The application's pass, in order; ``licenses``: R2 asks for the license files."""
    mac = config.mac
    if app is None:
        configs = config.config_files
    else:
        configs = tuple(_expand(config, name) for name in app.config_files)
    requests = [FileRequest("GET", name) for name in configs]
    requests += [
        FileRequest("GET", _in(app, Directory.OVERRIDES, f"{mac}-phone.cfg")),
        FileRequest("GET", _in(app, Directory.OVERRIDES, f"{mac}-web.cfg")),
    ]
    if licenses:
        requests += [
            FileRequest("GET", _in(app, Directory.LICENSE, SITE_LICENSE), license=True),
            FileRequest("GET", _in(app, Directory.LICENSE, f"{mac}-license.cfg"), license=True),
        ]
    requests += [
        FileRequest("GET", _in(app, Directory.CONTACTS, f"{mac}-directory.xml")),
        FileRequest("GET", _in(app, Directory.CONTACTS, "000000000000-directory.xml")),
        FileRequest("PUT", _in(app, Directory.LOG_FILE, f"{mac}-app.log")),
    ]
    return tuple(requests)


def config_files(config: PhoneConfig, master: str, app: Application) -> tuple[str, ...]:
    """What a configuration check reads again: the master and its ``CONFIG_FILES``."""
    return (master, *(_expand(config, name) for name in app.config_files))


def _expand(config: PhoneConfig, value: str) -> str:
    return expand(value, mac=config.mac, model=config.model, part_number=part_number(config.model))


def _in(app: Application | None, which: Directory, name: str) -> str:
    folder = app.directory(which) if app is not None else ()
    return "/".join((*folder, name))
