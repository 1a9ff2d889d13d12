"""TFTP packets and option negotiation (RFC 1350, 2347, 2348, 2349, 7440), without I/O: the one
codec the server (``serve.tftp``) and the emulated phones (``emulate.tftp``) both speak.

Every way a request can be malformed raises ``PacketError`` with the TFTP error code and the
message the server sends back; the server never guesses at a packet it does not understand.
A client builds requests with ``request`` and reads the server's answers with ``head``,
``parse_oack`` and ``parse_error``.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

MAX_REQUEST_BYTES: Final = 1024  # RRQ/WRQ: file name, mode and a handful of options
DEFAULT_BLKSIZE: Final = 512
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464  # RFC 2348
MIN_TIMEOUT, MAX_TIMEOUT = 1, 255  # RFC 2349, seconds
MIN_WINDOW, MAX_WINDOW = 1, 65535  # RFC 7440
_HEAD = struct.Struct("!HH")


class Opcode(enum.IntEnum):
    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(enum.IntEnum):
    """RFC 1350 §5 and RFC 2347 (8)."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8


class PacketError(Exception):
    """A packet the server refuses: answer ERROR ``code`` with ``message``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    """An RRQ or WRQ: file name as sent, mode, and the options in the order given."""

    opcode: Opcode
    filename: bytes
    mode: str  # "octet" or "netascii"
    options: dict[str, str] = field(default_factory=dict)  # lowercased names


@dataclass(frozen=True, slots=True)
class OptionLimits:
    """What the server accepts: the blksize cap keeps DATA inside one Ethernet frame."""

    max_blksize: int = 1468  # 1500 - 20 (IPv4) - 8 (UDP) - 4 (TFTP)
    max_window: int = 64
    default_timeout_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Negotiated:
    blksize: int = DEFAULT_BLKSIZE
    timeout_s: float = 1.0
    windowsize: int = 1
    tsize: int | None = None  # WRQ: the size the client announced
    acknowledged: dict[str, str] = field(default_factory=dict)  # what goes in the OACK


def parse_request(packet: bytes) -> Request:
    """An RRQ or WRQ; ``PacketError`` for anything else or anything malformed."""
    if len(packet) < 4:
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, "packet too short")
    if len(packet) > MAX_REQUEST_BYTES:
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, f"request longer than {MAX_REQUEST_BYTES}")
    opcode = int.from_bytes(packet[:2], "big")
    if opcode not in (Opcode.RRQ, Opcode.WRQ):
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, f"opcode {opcode} does not start a transfer")
    if not packet.endswith(b"\0"):
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, "request does not end with NUL")
    fields = packet[2:-1].split(b"\0")
    if len(fields) < 2 or len(fields) % 2:
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, "request needs file name, mode, options")
    filename, raw_mode = fields[0], fields[1]
    if not filename:
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, "empty file name")
    try:
        mode = raw_mode.decode("ascii").lower()
    except UnicodeDecodeError as exc:
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, "mode is not ASCII") from exc
    if mode not in ("octet", "netascii"):
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, f"mode {mode!r} is not octet or netascii")
    options: dict[str, str] = {}
    for index in range(2, len(fields), 2):
        try:
            name = fields[index].decode("ascii").lower()
            value = fields[index + 1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise PacketError(ErrorCode.OPTION_REFUSED, "option is not ASCII") from exc
        if not name:
            raise PacketError(ErrorCode.OPTION_REFUSED, "empty option name")
        if name in options:
            raise PacketError(ErrorCode.OPTION_REFUSED, f"option {name} given twice")
        options[name] = value
    return Request(Opcode(opcode), filename, mode, options)


def negotiate(request: Request, limits: OptionLimits, size: int | None) -> Negotiated:
    """Options the server takes, and the OACK's content (RFC 2347: unknown ones are left out).

    ``size`` is the file's size for an RRQ's tsize. A value out of its range is refused with
    error 8 rather than silently changed; a blksize or windowsize larger than the server's cap
    is lowered to it (the OACK says so, as RFC 2348 and 7440 allow).
    """
    given = request.options
    acknowledged: dict[str, str] = {}
    blksize, timeout_s, window, tsize = DEFAULT_BLKSIZE, limits.default_timeout_s, 1, None
    if "blksize" in given:
        wanted = _number(given, "blksize", MIN_BLKSIZE, MAX_BLKSIZE)
        blksize = min(wanted, limits.max_blksize)
        acknowledged["blksize"] = str(blksize)
    if "timeout" in given:
        timeout_s = _number(given, "timeout", MIN_TIMEOUT, MAX_TIMEOUT)
        acknowledged["timeout"] = str(timeout_s)
    if "windowsize" in given:
        wanted = _number(given, "windowsize", MIN_WINDOW, MAX_WINDOW)
        window = min(wanted, limits.max_window)
        acknowledged["windowsize"] = str(window)
    if "tsize" in given:
        announced = _number(given, "tsize", 0, 2**63 - 1)
        if request.opcode is Opcode.WRQ:
            tsize = announced
            acknowledged["tsize"] = str(announced)
        elif size is not None:
            acknowledged["tsize"] = str(size)
    return Negotiated(blksize, float(timeout_s), window, tsize, acknowledged)


def _number(options: dict[str, str], name: str, low: int, high: int) -> int:
    text = options[name]
    if not text.isdigit() or not low <= int(text) <= high:
        raise PacketError(ErrorCode.OPTION_REFUSED, f"{name} {text!r} is not {low}-{high}")
    return int(text)


def data(block: int, payload: bytes) -> bytes:
    return _HEAD.pack(Opcode.DATA, block & 0xFFFF) + payload


def ack(block: int) -> bytes:
    return _HEAD.pack(Opcode.ACK, block & 0xFFFF)


def error(code: ErrorCode, message: str) -> bytes:
    return _HEAD.pack(Opcode.ERROR, code) + message.encode("ascii", "replace")[:200] + b"\0"


def oack(options: dict[str, str]) -> bytes:
    body = b"".join(f"{name}\0{value}\0".encode("ascii") for name, value in options.items())
    return Opcode.OACK.to_bytes(2, "big") + body


def request(opcode: Opcode, filename: bytes, options: dict[str, str] | None = None) -> bytes:
    """An RRQ or WRQ as a client sends it, mode octet, ``options`` in their order."""
    body = b"".join(f"{name}\0{value}\0".encode("ascii") for name, value in (options or {}).items())
    return opcode.to_bytes(2, "big") + filename + b"\0octet\0" + body


def parse_oack(packet: bytes) -> dict[str, str]:
    """The options an OACK acknowledges (names lowercased); ``PacketError`` when malformed."""
    fields = packet[2:].split(b"\0")
    if packet[:2] != Opcode.OACK.to_bytes(2, "big") or fields[-1] != b"" or len(fields) % 2 == 0:
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, "not an OACK of name, value pairs")
    try:
        text = [f.decode("ascii") for f in fields[:-1]]
    except UnicodeDecodeError as exc:
        raise PacketError(ErrorCode.OPTION_REFUSED, "option is not ASCII") from exc
    return {name.lower(): value for name, value in zip(text[::2], text[1::2], strict=True)}


def parse_error(packet: bytes) -> tuple[int, str]:
    """An ERROR packet's code and message (up to its NUL; undecodable bytes replaced)."""
    found = head(packet)
    if found is None or found[0] != Opcode.ERROR:
        raise PacketError(ErrorCode.ILLEGAL_OPERATION, "not an ERROR packet")
    return found[1], packet[4:].split(b"\0", 1)[0].decode("ascii", "replace")


def head(packet: bytes) -> tuple[int, int] | None:
    """(opcode, block or error code) of a packet of 4 bytes or more; None when shorter."""
    if len(packet) < 4:
        return None
    opcode, number = _HEAD.unpack_from(packet)
    return opcode, number


def from_netascii(wire: bytes) -> bytes:
    """The inverse, for uploads sent in netascii: CR LF → LF, CR NUL → CR."""
    return wire.replace(b"\r\n", b"\n").replace(b"\r\0", b"\r")


@lru_cache(maxsize=4096)
def offer(
    opcode: Opcode, given: tuple[tuple[str, str], ...], limits: OptionLimits, size: int | None
) -> tuple[Negotiated, bytes | None]:
    """What the server takes of ``given`` options, and the OACK saying so (None: no OACK).

    Phones of a model send the same options: negotiated once, not per transfer. ``size``
    matters only for tsize (the caller passes None otherwise).
    """
    request = Request(opcode, b"", "octet", dict(given))
    options = negotiate(request, limits, size)
    return options, oack(options.acknowledged) if options.acknowledged else None
