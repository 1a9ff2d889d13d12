"""Polycom master configuration files (domain.md §4): what a phone fetches, and where.

A master configuration (``<mac>.cfg`` or ``000000000000.cfg``) is one ``<APPLICATION>`` element
whose attributes name the firmware image (``APP_FILE_PATH``), the configuration files
(``CONFIG_FILES``, a comma list), other files (``MISC_FILES``) and the directories the phone
reads or writes its other files in (``LICENSE_DIRECTORY``, ``LOG_FILE_DIRECTORY``, ...). Children
``<APPLICATION_SPIP300 APP_FILE_PATH_SPIP300=…>`` override attributes for one model. Values may
carry placeholders the phone expands: ``[PHONE_MAC_ADDRESS]``, ``[PHONE_MODEL]``,
``[PHONE_PART_NUMBER]``. Real files (domain.md S2-S4)::

    <APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone1.cfg, sip.cfg" LICENSE_DIRECTORY="">
      <APPLICATION_SPIP300 APP_FILE_PATH_SPIP300="sip_212.ld" CONFIG_FILES_SPIP300="..."/>
    </APPLICATION>

Parsing is safe (defusedxml: no DTD, no entities) and size-capped; unknown attributes are kept
as they are, since firmware generations add their own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from fleetkey.errors import MasterConfigError

MAX_BYTES: Final = 1024 * 1024  # domain.md §4: CONFIG_FILES ≤ 2047 chars; real files are ~2 KB
ROOT: Final = "APPLICATION"
APP_FILE_PATH: Final = "APP_FILE_PATH"
CONFIG_FILES: Final = "CONFIG_FILES"
MISC_FILES: Final = "MISC_FILES"


class Directory(enum.StrEnum):
    """The directories a master configuration may name (domain.md §4)."""

    LICENSE = "LICENSE_DIRECTORY"
    LOG_FILE = "LOG_FILE_DIRECTORY"
    OVERRIDES = "OVERRIDES_DIRECTORY"
    CONTACTS = "CONTACTS_DIRECTORY"
    CALL_LISTS = "CALL_LISTS_DIRECTORY"
    USER_PROFILES = "USER_PROFILES_DIRECTORY"
    COREFILE = "COREFILE_DIRECTORY"


_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Application:
    """One model's view of a master configuration: attribute name → value, overrides applied."""

    attributes: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def app_file_path(self) -> str | None:
        return self.attributes.get(APP_FILE_PATH) or None

    @property
    def config_files(self) -> tuple[str, ...]:
        return split_list(self.attributes.get(CONFIG_FILES, ""))

    @property
    def misc_files(self) -> tuple[str, ...]:
        return split_list(self.attributes.get(MISC_FILES, ""))

    def directory(self, which: Directory) -> tuple[str, ...]:
        """The directory as path segments below the server root; () for the root itself.

        A URL names its path (``http://host/licenses`` → ``("licenses",)``).
        """
        return directory_segments(self.attributes.get(which.value, ""))


@dataclass(frozen=True, slots=True)
class MasterConfig:
    """A parsed master configuration: the common attributes and each model's overrides."""

    common: Application
    models: Mapping[str, Application]  # model key (``SPIP300``, ``VVX500``) → merged view

    def for_model(self, model: str | None) -> Application:
        """The attributes a phone of ``model`` (``VVX_500`` or ``VVX500``) follows."""
        if model is None:
            return self.common
        return self.models.get(model_key(model), self.common)

    def directories(self, which: Directory) -> frozenset[tuple[str, ...]]:
        """``which`` as every model of this file sees it."""
        found = {self.common.directory(which)}
        found.update(app.directory(which) for app in self.models.values())
        return frozenset(found)


def model_key(model: str) -> str:
    """``VVX_500`` (User-Agent) and ``VVX500`` (master configuration) name the same model."""
    return model.replace("_", "").replace("-", "").upper()


def split_list(value: str) -> tuple[str, ...]:
    """A comma list as master configurations write it (``"phone1.cfg, sip.cfg"``)."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def directory_segments(value: str) -> tuple[str, ...]:
    """A directory attribute as path segments: ``"licenses/"`` → ``("licenses",)``."""
    text = value.strip()
    if "://" in text:
        text = urlsplit(text).path
    return tuple(part for part in text.replace("\\", "/").split("/") if part not in ("", "."))


def expand(value: str, *, mac: str, model: str = "", part_number: str = "") -> str:
    """Placeholders a phone expands in a file name (domain.md §4)."""
    return (
        value.replace("[PHONE_MAC_ADDRESS]", mac)
        .replace("[PHONE_MODEL]", model)
        .replace("[PHONE_PART_NUMBER]", part_number)
    )


def parse_master_config(data: bytes, *, source: str = "<bytes>") -> MasterConfig:
    """Parse a master configuration; raise MasterConfigError naming ``source``."""
    if len(data) > MAX_BYTES:
        raise MasterConfigError(f"{source}: {len(data)} bytes, larger than {MAX_BYTES}")
    try:
        root: Element = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MasterConfigError(f"{source}: unsafe XML ({type(exc).__name__})") from exc
    except ParseError as exc:
        raise MasterConfigError(f"{source}: not well-formed XML ({exc})") from exc
    except (LookupError, ValueError) as exc:  # expat: an encoding it has no codec for
        raise MasterConfigError(
            f"{source}: cannot read the encoding its XML declaration names ({exc})"
        ) from exc
    if root.tag != ROOT:
        raise MasterConfigError(f"{source}: the root element is <{root.tag}>, expected <{ROOT}>")
    common = dict(root.attrib)
    models: dict[str, Application] = {}
    for child in root:
        prefix = f"{ROOT}_"
        if not isinstance(child.tag, str) or not child.tag.startswith(prefix):
            continue  # comments and elements of other firmware generations
        model = child.tag.removeprefix(prefix)
        suffix = f"_{model}"
        merged = dict(common)
        for name, value in child.attrib.items():
            merged[name.removesuffix(suffix)] = value
        models[model_key(model)] = Application(MappingProxyType(merged))
    return MasterConfig(Application(MappingProxyType(common)), MappingProxyType(models))
