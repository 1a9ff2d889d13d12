"""The PROXY protocol's header (HAProxy's ``send-proxy`` and ``send-proxy-v2``): the address of
the client a TCP proxy connected on behalf of, sent by the proxy before anything else.

Both versions of haproxy.org's proxy-protocol.txt are read:

- v1, a line of text: ``PROXY TCP4 <source> <destination> <source port> <destination
  port>\\r\\n`` (``TCP6`` for IPv6), at most 107 bytes; ``PROXY UNKNOWN …\\r\\n`` for a
  connection the proxy makes for itself (no client to name).
- v2, binary: a 12-byte signature, version 2 and a command (``PROXY``, or ``LOCAL``: the
  proxy's own connection, such as a health check), the address family (TCP over IPv4 or
  IPv6; ``UNSPEC`` names no client), the length of what follows, then the addresses and
  ports, then TLVs (skipped: nothing here needs them).

``parse`` is given the bytes received so far: it answers a ``ProxyHeader`` (its length and the
client's address, or None when the proxy named none), None while more bytes are needed, or
raises ``ProxyHeaderError`` saying what is wrong. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

V1_PREFIX: Final = b"PROXY "
V1_MAX: Final = 107  # the spec's longest line, CRLF included
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED: Final = 16  # signature, version and command, family, length
V2_MAX_BODY: Final = 512  # addresses (at most 216) and TLVs; longer is refused
LONGEST: Final = V2_FIXED + V2_MAX_BODY  # bytes worth looking at before deciding
_V2_FAMILIES: Final = {0x11: (4, 12), 0x21: (16, 36)}  # TCP over IPv4, IPv6: address size, body


class ProxyHeaderError(ValueError):
    """A connection from the proxy that does not begin with a well-formed header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    length: int  # bytes of the header, to take off the connection
    client: tuple[str, int] | None  # (address, port); None: the proxy's own connection
    version: int


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None when more bytes are needed (module doc)."""
    if len(data) < len(V2_SIGNATURE) and V2_SIGNATURE.startswith(data):
        return None
    if data.startswith(V2_SIGNATURE):
        return _v2(data)
    if len(data) < len(V1_PREFIX) and V1_PREFIX.startswith(data):
        return None
    if data.startswith(V1_PREFIX):
        return _v1(data)
    raise ProxyHeaderError(f"no PROXY protocol header: the connection began {data[:16]!r}")


def _v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
            raise ProxyHeaderError(f"PROXY v1 line without CRLF in its first {V1_MAX} bytes")
        return None
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from exc
    fields = line.split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyHeader(end + 2, None, 1)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(
            f"PROXY v1 line {line[:V1_MAX]!r} is not 'PROXY TCP4|TCP6 SOURCE DESTINATION "
            "SOURCE-PORT DESTINATION-PORT'"
        )
    version = 4 if fields[1] == "TCP4" else 6
    source = _address(fields[2], version)
    _address(fields[3], version)
    port = _port(fields[4])
    _port(fields[5])
    return ProxyHeader(end + 2, (source, port), 1)


def _address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise ProxyHeaderError(f"PROXY v1 address {text!r} is not an IP address") from exc
    if address.version != version:
        raise ProxyHeaderError(f"PROXY v1 address {text!r} is not IPv{version}")
    return _client(address)


def _client(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The address as the phone's own: an IPv4-mapped IPv6 address (a dual-stack balancer's
    listener, ``::ffff:192.0.2.7``, in v1 text or v2 bytes) as the IPv4 address it is, so
    one phone has one spelling in per-address limits and records."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def _port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise ProxyHeaderError(f"PROXY v1 port {text!r} is not a port number")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"PROXY v1 port {text} is above 65535")
    return port


def _v2(data: bytes) -> ProxyHeader | None:
    if len(data) < V2_FIXED:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY v2 header says version {version}")
    if command not in (0, 1):
        raise ProxyHeaderError(f"PROXY v2 command {command} is neither LOCAL (0) nor PROXY (1)")
    family = data[13]
    body = int.from_bytes(data[14:16], "big")
    if body > V2_MAX_BODY:
        raise ProxyHeaderError(f"PROXY v2 header of {body} bytes (at most {V2_MAX_BODY} read)")
    length = V2_FIXED + body
    if len(data) < length:
        return None
    if command == 0 or family == 0x00:  # LOCAL, or PROXY naming no client
        return ProxyHeader(length, None, 2)
    if family not in _V2_FAMILIES:
        raise ProxyHeaderError(
            f"PROXY v2 address family {family:#04x} is not TCP over IPv4 (0x11) or IPv6 (0x21)"
        )
    size, needed = _V2_FAMILIES[family]
    if body < needed:
        raise ProxyHeaderError(
            f"PROXY v2 addresses of {body} bytes (family {family:#04x}: {needed})"
        )
    raw = data[V2_FIXED : V2_FIXED + size]
    source = _client(ipaddress.ip_address(raw))
    port_at = V2_FIXED + 2 * size
    port = int.from_bytes(data[port_at : port_at + 2], "big")
    return ProxyHeader(length, (source, port), 2)
