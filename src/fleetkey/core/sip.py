"""SIP messages for check-sync (RFC 3261), without I/O: parsing and building NOTIFY.

Only what fleetkey speaks: out-of-dialog ``NOTIFY`` with ``Event: check-sync`` (domain.md §5.5),
``OPTIONS``, and their responses; their digest authentication is ``fleetkey.core.digest``'s. The
emulated phone (UAS) and the rollout executor (UAC) share this module, so both ends agree on
the wire. Full SIP stacks for Python are either unmaintained (aiosip, pysip) or pull in a C
library (pjsua2); none offers a plain NOTIFY client transaction over UDP and TCP, which is all
the executor needs — hence this small codec (docs/operations.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from fleetkey.errors import SipFormatError

MAX_MESSAGE: Final = 8192
DEFAULT_PORT: Final = 5060
COMPACT: Final = {"v": "via", "f": "from", "t": "to", "i": "call-id", "o": "event",
                  "l": "content-length", "m": "contact"}  # fmt: skip
_CONTACT = re.compile(
    r"<?sip:(?:(?P<user>[^@;>\s]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>\d{1,5}))?(?P<params>(?:;[^;>\s]*)*)>?"
)


@dataclass(frozen=True, slots=True)
class SipMessage:
    """A request (``method``, ``uri``) or a response (``status``, ``reason``) with its headers."""

    method: str
    uri: str
    headers: list[tuple[str, str]]
    status: int = 0
    reason: str = ""

    def get(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]


@dataclass(frozen=True, slots=True)
class Contact:
    """Where a phone listens: from ``sip:user@host:port;transport=tcp``."""

    host: str
    port: int
    transport: str  # udp | tcp
    uri: str

    @classmethod
    def parse(cls, text: str) -> Contact:
        match = _CONTACT.fullmatch(text.strip())
        if match is None:
            raise SipFormatError(f"SIP contact {text!r} is not sip:[user@]host[:port][;params]")
        port = int(match["port"] or DEFAULT_PORT)
        if not 0 < port < 65536:
            raise SipFormatError(f"SIP contact {text!r} has port {port}, outside 1-65535")
        params = dict(p.partition("=")[::2] for p in (match["params"] or "").split(";") if p)
        transport = params.get("transport", "udp").lower()
        if transport not in ("udp", "tcp"):
            raise SipFormatError(f"SIP contact {text!r}: transport {transport!r} is not udp or tcp")
        user = f"{match['user']}@" if match["user"] else ""
        host = match["host"].strip("[]")
        return cls(host, port, transport, f"sip:{user}{match['host']}:{port}")


def _split(data: bytes) -> tuple[str, list[tuple[str, str]]] | None:
    if len(data) > MAX_MESSAGE:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    headers = []
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return None
        key = name.strip().lower()
        headers.append((COMPACT.get(key, key), value.strip()))
    return head[0], headers


def parse_request(data: bytes) -> SipMessage | None:
    """A SIP request, or None for responses and what is not SIP at all."""
    split = _split(data)
    if split is None:
        return None
    parts = split[0].split(" ")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
        return None
    return SipMessage(parts[0].upper(), parts[1], split[1])


def parse_response(data: bytes) -> SipMessage | None:
    """A SIP response, or None for requests and what is not SIP at all."""
    split = _split(data)
    if split is None:
        return None
    version, _, rest = split[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version != "SIP/2.0" or len(code) != 3 or not code.isdigit() or not "100" <= code < "700":
        return None
    return SipMessage("", "", split[1], int(code), reason)


@dataclass(frozen=True, slots=True)
class Dialog:
    """What stays the same across one NOTIFY's transactions (the first and an authorized retry)."""

    local_host: str
    local_port: int
    transport: str
    call_id: str
    tag: str


def check_sync(
    contact: Contact,
    dialog: Dialog,
    *,
    branch: str,
    cseq: int,
    reboot: bool,
    authorization: str | None = None,
) -> bytes:
    """An out-of-dialog ``NOTIFY`` with ``Event: check-sync`` (``;reboot=true`` when asked)."""
    local = f"{dialog.local_host}:{dialog.local_port}"
    lines = [
        f"NOTIFY {contact.uri} SIP/2.0",
        f"Via: SIP/2.0/{dialog.transport.upper()} {local};branch=z9hG4bK{branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:fleetkey@{local}>;tag={dialog.tag}",
        f"To: <{contact.uri}>",
        f"Call-ID: {dialog.call_id}",
        f"CSeq: {cseq} NOTIFY",
        f"Contact: <sip:fleetkey@{local};transport={dialog.transport}>",
        "Event: check-sync;reboot=true" if reboot else "Event: check-sync",
        "Subscription-State: terminated;reason=noresource",
        "User-Agent: fleetkey",
    ]
    if authorization:
        lines.append(authorization)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode("utf-8")
