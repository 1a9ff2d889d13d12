"""Serials, MAC addresses, license file names (spec §2, domain.md §2.4), and the free text
operators give names and contacts in."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from fleetkey.core.license import LicenseType
from fleetkey.errors import InputError

SITE_LICENSE_FILE: Final = "000000000000-license.cfg"  # TB 44210: the site-wide file name
LICENSE_FILE_SUFFIX: Final = "-license.cfg"  # TB 44210: <MAC>-license.cfg

HEX12: Final = re.compile(r"[0-9a-fA-F]{12}")  # a MAC or site serial, unseparated
_MAC_SEPARATED = re.compile(r"[0-9a-fA-F]{2}([:.-]?)(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}")
_DOTTED_MAC = re.compile(r"[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}")
_GROUP_BIT: Final = 0x01  # IEEE 802-2014 §8.2: I/G bit, the low bit of the first octet

NAME_CHARS: Final = 200  # a site's name and contact (the columns hold 200)
# OWASP "CSV Injection": a cell that starts with one of these is a formula to a spreadsheet
FORMULA_STARTS: Final = ("=", "+", "-", "@")
_TELEPHONE = re.compile(r"\+[0-9][0-9 ()./-]*")  # +49 30 1234-5: a leading + that is no formula
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs"})  # controls, format (bidi), surrogates


def normalize_mac(text: str) -> str:
    """A MAC address as fleetkey stores it: 12 lowercase hex digits.

    Accepts ``0004f2a1b2c3``, ``00:04:F2:A1:B2:C3``, ``00-04-f2-a1-b2-c3`` and ``0004.f2a1.b2c3``.
    """
    cleaned = text.strip()
    if _MAC_SEPARATED.fullmatch(cleaned) or _DOTTED_MAC.fullmatch(cleaned):
        cleaned = re.sub(r"[:.-]", "", cleaned)
    if not HEX12.fullmatch(cleaned):
        raise InputError(f"MAC {text!r} is not a MAC address: expected 12 hex digits")
    mac = cleaned.lower()
    if mac == "000000000000":
        raise InputError("MAC 000000000000 is reserved for the site-wide files")
    if int(mac[:2], 16) & _GROUP_BIT:
        kind = "the broadcast address" if mac == "ffffffffffff" else "a multicast address"
        raise InputError(
            f"MAC {text!r} is {kind}: a phone's MAC is unicast "
            "(the low bit of its first octet clear)"
        )
    return mac


def normalize_site_serial(text: str) -> str:
    """A site serial as fleetkey stores it: 12 lowercase hex digits (e.g. ``100000000001``)."""
    cleaned = text.strip()
    if not HEX12.fullmatch(cleaned):
        raise InputError(f"site serial {text!r} is not valid: expected 12 hex digits")
    return cleaned.lower()


def phone_license_file(mac: str) -> str:
    """``<mac>-license.cfg`` for a normalized MAC."""
    return f"{mac}{LICENSE_FILE_SUFFIX}"


def license_place(key_type: LicenseType, serial: str) -> tuple[str, ...]:
    """Where in the provisioning tree the posted key of ``key_type`` and ``serial`` lives, as
    path segments: a site's at ``<serial>/000000000000-license.cfg`` (the name phones ask for,
    in the directory phones of that site are pointed at), a phone's at ``<mac>-license.cfg``.

    The tree's top-level ``000000000000-license.cfg`` is no site's place: it is the default
    for phones the server cannot place, written only on purpose.
    """
    if key_type is LicenseType.SITE:
        return (serial, SITE_LICENSE_FILE)
    return (phone_license_file(serial),)


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
    if stem != file_name and HEX12.fullmatch(stem):
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


def free_text(text: str, *, what: str, limit: int = NAME_CHARS) -> str:
    """``text`` stripped, if fleetkey may store it as a name or contact; InputError otherwise.

    At most ``limit`` characters; no control, format (bidi override, zero-width) or surrogate
    characters; and no spreadsheet formula: text starting with ``= + - @`` is refused (a
    telephone number such as ``+49 30 1234`` is fine), because ``--json`` hands it on to tools
    that write CSV, where it would run.
    """
    value = text.strip()
    shown = repr(value if len(value) <= 40 else value[:40] + "…")
    if len(value) > limit:
        raise InputError(f"{what} is {len(value)} characters long, at most {limit} are allowed")
    for position, char in enumerate(value):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise InputError(
                f"{what} {shown} holds the control character U+{ord(char):04X} at position "
                f"{position + 1}"
            )
    if value.startswith(FORMULA_STARTS) and not _TELEPHONE.fullmatch(value):
        raise InputError(
            f"{what} {shown} starts with {value[0]!r}: a spreadsheet would take it for a formula",
            hint="text may not start with = + - @ (a telephone number like +49 30 1234 may)",
        )
    return value
