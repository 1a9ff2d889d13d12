"""Serials, MAC addresses and license file names (spec §2, domain.md §2.4)."""

from __future__ import annotations

import re
from typing import Final

from fleetkey.core.license import LicenseType
from fleetkey.errors import InputError

SITE_LICENSE_FILE: Final = "000000000000-license.cfg"  # TB 44210: the site-wide file name
LICENSE_FILE_SUFFIX: Final = "-license.cfg"  # TB 44210: <MAC>-license.cfg

_HEX12 = re.compile(r"[0-9a-fA-F]{12}")
_MAC_SEPARATED = re.compile(r"[0-9a-fA-F]{2}([:.-]?)(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}")
_DOTTED_MAC = re.compile(r"[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}")


def normalize_mac(text: str) -> str:
    """A MAC address as fleetkey stores it: 12 lowercase hex digits.

    Accepts ``0004f2a1b2c3``, ``00:04:F2:A1:B2:C3``, ``00-04-f2-a1-b2-c3`` and ``0004.f2a1.b2c3``.
    """
    cleaned = text.strip()
    if _MAC_SEPARATED.fullmatch(cleaned) or _DOTTED_MAC.fullmatch(cleaned):
        cleaned = re.sub(r"[:.-]", "", cleaned)
    if not _HEX12.fullmatch(cleaned):
        raise InputError(f"MAC {text!r} is not a MAC address: expected 12 hex digits")
    mac = cleaned.lower()
    if mac == "000000000000":
        raise InputError("MAC 000000000000 is reserved for the site-wide files")
    return mac


def normalize_site_serial(text: str) -> str:
    """A site serial as fleetkey stores it: 12 lowercase hex digits (e.g. ``100000000001``)."""
    cleaned = text.strip()
    if not _HEX12.fullmatch(cleaned):
        raise InputError(f"site serial {text!r} is not valid: expected 12 hex digits")
    return cleaned.lower()


def phone_license_file(mac: str) -> str:
    """``<mac>-license.cfg`` for a normalized MAC."""
    return f"{mac}{LICENSE_FILE_SUFFIX}"


_SITE: Final = LicenseType.SITE  # read once: servers ask per request
_PHONE: Final = LicenseType.PHONE


def license_file_type(file_name: str) -> tuple[LicenseType, str | None] | None:
    """What a license file's name says it must hold.

    ``(SITE, None)`` for ``000000000000-license.cfg``, ``(PHONE, mac)`` for ``<mac>-license.cfg``,
    None for a name that follows neither convention.
    """
    if file_name == SITE_LICENSE_FILE:
        return _SITE, None
    stem = file_name.removesuffix(LICENSE_FILE_SUFFIX)
    if stem != file_name and _HEX12.fullmatch(stem):
        return _PHONE, stem.lower()
    return None


def key_misfit(key_type: LicenseType, serial: str, file_name: str) -> str | None:
    """Why a key of ``key_type`` for ``serial`` does not belong in a file of this name (R5),
    or None when it does (or the name follows no convention)."""
    expected = license_file_type(file_name)
    if expected is None:
        return None
    file_type, file_mac = expected
    if key_type is not file_type:
        return f"a {key_type.value} key in {file_name}"
    if file_mac is not None and serial != file_mac:
        return f"Serial does not match the MAC in {file_name}"
    return None
