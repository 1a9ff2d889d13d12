"""License file codec (spec §2): bytes ⇄ :class:`LicenseFile`, strict, safe and byte-stable.

Parsing runs expat through defusedxml's parser (no DTD, no entity declarations, no external
references) with a hand-written target that enforces the exact structure: root ``<licenses>``,
zero or more empty ``<licenseKey/>`` children, the exact attribute set, exact lengths, hex only.
Every rejection names the file, the key (1-based) and the attribute.

Serializing writes the vendor layout: single-quoted attributes in spec order, ISO-8859-1, one line
per file, so write → parse → write gives identical bytes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException, DTDForbidden
from defusedxml.ElementTree import DefusedXMLParser

from fleetkey.core.license import SLOT_COUNT, VERSION, LicenseKey, LicenseType
from fleetkey.errors import (
    EncodingDeclarationError,
    FileTooLargeError,
    LicenseAttributeError,
    LicenseFormatError,
    LicenseStructureError,
    MalformedXMLError,
    UnsafeXMLError,
)

MAX_FILE_BYTES: Final = 256 * 1024  # a key is ~700 bytes; 256 KiB holds hundreds, stops abuse
ROOT: Final = "licenses"
KEY: Final = "licenseKey"
ATTRIBUTES: Final = ("Serial", "Version", "Type", "Options", "Duration", "Validation")
VALIDATION_LENGTHS: Final = (128, 512)  # Ed25519 (64 bytes) and RSA-2048 (256 bytes), in hex
DECLARATION: Final = b"<?xml version='1.0' encoding='ISO-8859-1' standalone='yes'?>\n"

_ATTRIBUTE_SET: Final = frozenset(ATTRIBUTES)
_HEX_DIGITS = re.compile(r"[0-9A-Fa-f]+")
_BOMS: Final = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_XML_DECL = re.compile(rb"<\?xml\s[^>]*?\?>")
_ENCODING = re.compile(rb"""\sencoding\s*=\s*(['"])([^'"]*)\1""")
_LENGTH: Final = {"Serial": 12, "Options": 8, "Duration": 112}
_TYPES: Final = {t.value: t for t in LicenseType}
_WORDS = struct.Struct(f">{SLOT_COUNT}H")


@dataclass(frozen=True, slots=True)
class LicenseFile:
    """A parsed license file: its keys in file order and the comments it carried."""

    keys: tuple[LicenseKey, ...] = ()
    comments: tuple[str, ...] = ()


def parse_license_file(data: bytes, *, source: str = "<bytes>") -> LicenseFile:
    """Parse the bytes of a license file; raise a LicenseFormatError subclass naming ``source``."""
    if len(data) > MAX_FILE_BYTES:
        raise FileTooLargeError(
            f"file is {len(data)} bytes, larger than the limit of {MAX_FILE_BYTES}",
            source=source,
        )
    _check_encoding(data, source)
    target = _Target(source)
    parser = DefusedXMLParser(target=target, forbid_dtd=True)
    # defusedxml has installed its DTD, entity and external-reference guards on the expat
    # parser; element events go straight to the target, skipping ElementTree's per-event
    # name fixing (half the parse time). Attributes arrive as an ordered [name, value, ...] list.
    expat = parser.parser
    expat.StartElementHandler = target.start
    expat.EndElementHandler = target.end
    try:
        parser.feed(data)
        parser.close()
    except DTDForbidden as exc:
        raise UnsafeXMLError(f"DTD <!DOCTYPE {exc.name}> is not allowed", source=source) from exc
    except DefusedXmlException as exc:
        raise UnsafeXMLError(
            f"entities and external references are not allowed ({exc})", source=source
        ) from exc
    except ParseError as exc:
        raise MalformedXMLError(f"not well-formed XML: {exc}", source=source) from exc
    if not target.seen_root:
        raise LicenseStructureError(f"no <{ROOT}> element", source=source)
    return LicenseFile(tuple(target.keys), tuple(target.comments))


def serialize_license_file(license_file: LicenseFile) -> bytes:
    """``license_file`` in the vendor layout: ISO-8859-1, single quotes, spec order."""
    parts = [DECLARATION]
    for comment in license_file.comments:
        if "--" in comment or comment.endswith("-"):
            raise LicenseStructureError(f"comment {comment!r} cannot contain '--' or end in '-'")
        parts.append(f"<!--{comment}-->\n".encode("iso-8859-1"))
    if license_file.keys:
        body = "".join([_key_element(key) for key in license_file.keys])
        parts.append(f"<{ROOT}>{body}</{ROOT}>\n".encode("ascii"))
    else:
        parts.append(f"<{ROOT}/>\n".encode("ascii"))
    return b"".join(parts)


def serialize_keys(keys: Sequence[LicenseKey], comment: str | None = None) -> bytes:
    """Shorthand: a file holding ``keys`` and at most one comment."""
    return serialize_license_file(LicenseFile(tuple(keys), (comment,) if comment else ()))


def _key_element(key: LicenseKey) -> str:
    return (
        f"<{KEY} Serial='{key.serial}' Version='{key.version}' Type='{key.type.value}' "
        f"Options='{key.options_hex}' Duration='{key.duration_hex}' "
        f"Validation='{key.validation.hex()}'/>"
    )


def _check_encoding(data: bytes, source: str) -> None:
    for bom in _BOMS:
        if data.startswith(bom):
            raise EncodingDeclarationError(
                "file starts with a byte-order mark, expected ISO-8859-1 without one",
                source=source,
            )
    if data.startswith(DECLARATION):
        return  # the exact declaration fleetkey writes
    if not data.startswith(b"<?xml"):
        return  # no declaration: the content must then be plain ASCII XML, expat checks
    declaration = _XML_DECL.match(data)
    if declaration is None:
        return  # expat reports the broken declaration with its position
    encoding = _ENCODING.search(declaration.group(0))
    name = encoding.group(2).decode("ascii", "replace") if encoding else None
    if name is None or name.upper() != "ISO-8859-1":
        raise EncodingDeclarationError(
            f"XML declaration names encoding {name!r}, expected 'ISO-8859-1'", source=source
        )


class _Target:
    """Receives expat events; builds keys and rejects every deviation from spec §2."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.keys: list[LicenseKey] = []
        self.comments: list[str] = []
        self.depth = 0
        self.seen_root = False

    def start(self, tag: str, attributes: list[str]) -> None:
        attrib = dict(zip(attributes[::2], attributes[1::2], strict=True))
        self.depth += 1
        if self.depth == 1:
            if tag != ROOT:
                raise self._structure(f"root element is <{tag}>, expected <{ROOT}>")
            if attrib:
                raise self._structure(f"<{ROOT}> has attributes {sorted(attrib)}, expected none")
            self.seen_root = True
        elif self.depth == 2:
            if tag != KEY:
                raise self._structure(f"element <{tag}> inside <{ROOT}>, expected <{KEY}/>")
            self.keys.append(_build_key(attrib, self.source, len(self.keys) + 1))
        else:
            raise self._structure(
                f"element <{tag}> inside <{KEY}> key {len(self.keys)}, expected it empty"
            )

    def end(self, tag: str) -> None:
        self.depth -= 1

    def data(self, text: str) -> None:
        if text.strip():
            where = f"<{KEY}> key {len(self.keys)}" if self.depth == 2 else f"<{ROOT}>"
            raise self._structure(f"text {text.strip()[:40]!r} inside {where}, expected none")

    def comment(self, text: str) -> None:
        self.comments.append(text)

    def pi(self, target: str, text: str) -> None:
        raise self._structure(f"processing instruction <?{target}?> is not allowed")

    def close(self) -> None:
        return None

    def _structure(self, detail: str) -> LicenseStructureError:
        return LicenseStructureError(detail, source=self.source)


def _build_key(attrib: dict[str, str], source: str, index: int) -> LicenseKey:
    if attrib.keys() != _ATTRIBUTE_SET:
        for name in attrib:
            if name not in ATTRIBUTES:
                near = [a for a in ATTRIBUTES if a.lower() == name.lower()]
                hint = f" (attribute names are case-sensitive: {near[0]})" if near else ""
                raise _fail(
                    source,
                    index,
                    name,
                    f"is not a licenseKey attribute{hint}; expected {ATTRIBUTES}",
                )
        missing = [name for name in ATTRIBUTES if name not in attrib]
        raise _fail(source, index, missing[0], "is missing")
    serial, options = _hex(attrib, "Serial", source, index), _hex(attrib, "Options", source, index)
    duration = _hex(attrib, "Duration", source, index)
    validation = _hex(attrib, "Validation", source, index)
    if len(validation) * 2 not in VALIDATION_LENGTHS:
        raise _validation_length(source, index, len(validation) * 2)
    if attrib["Version"] != VERSION:
        raise _fail(
            source, index, "Version", f"is {_show(attrib['Version'])}, expected '{VERSION}'"
        )
    license_type = _TYPES.get(attrib["Type"])
    if license_type is None:
        raise _fail(
            source, index, "Type", f"is {_show(attrib['Type'])}, expected 'Phone' or 'Site'"
        )
    return LicenseKey(
        serial=serial.hex(),
        type=license_type,
        options=int.from_bytes(options, "big"),
        words=_WORDS.unpack(duration)[::-1],
        validation=validation,
        version=VERSION,
    )


def _hex(attrib: dict[str, str], name: str, source: str, index: int) -> bytes:
    """The bytes an all-hex attribute encodes; exact length where the spec fixes one.

    ``bytes.fromhex`` skips whitespace, so a value decoding to half its length in bytes holds
    nothing but hex digits. The regex only words the error.
    """
    value = attrib[name]
    expected = _LENGTH.get(name)
    try:
        decoded = bytes.fromhex(value)
    except ValueError:
        decoded = None
    if (
        decoded is not None
        and len(decoded) * 2 == len(value)
        and (expected is None or len(value) == expected)
        and value
    ):
        return decoded
    if expected is not None and len(value) != expected:
        raise _fail(
            source, index, name, f"has {len(value)} characters, expected {expected} hex digits"
        )
    if expected is None and _HEX_DIGITS.fullmatch(value):  # hex digits, an odd count
        raise _validation_length(source, index, len(value))
    raise _fail(source, index, name, f"{_show(value)} is not hexadecimal")


def _validation_length(source: str, index: int, digits: int) -> LicenseAttributeError:
    return _fail(
        source,
        index,
        "Validation",
        f"has {digits} hex digits, expected 128 (Ed25519) or 512 (RSA-2048)",
    )


def _fail(source: str, index: int, attribute: str, detail: str) -> LicenseAttributeError:
    return LicenseAttributeError(
        f"{attribute} {detail}", source=source, key_index=index, attribute=attribute
    )


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


__all__ = [
    "MAX_FILE_BYTES",
    "LicenseFile",
    "LicenseFormatError",
    "parse_license_file",
    "serialize_keys",
    "serialize_license_file",
]
