"""The SIP side of an emulated phone: NOTIFY check-sync over UDP (RFC 3261, domain.md §5.5).

``NOTIFY`` with ``Event: check-sync`` (optionally ``;reboot=true``) is answered 200 and handed
to the phone (R9). ``OPTIONS`` gets 200. Another event gets 489 Bad Event, another method 405
or 501. A request missing a header a response needs (Via, From, To, Call-ID, CSeq) or with a
malformed CSeq gets 400 when it can be answered at all, and is dropped otherwise; responses
and garbage are dropped. With credentials, requests are challenged with a digest (realm
``PolycomSPIP``, the phones' default) and only a correct answer gets through.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Final, cast

from fleetkey.core.sip import SipMessage, digest_params, digest_response, parse_request

REALM: Final = "PolycomSPIP"
_NEEDED: Final = ("via", "from", "to", "call-id", "cseq")
_KNOWN: Final = {"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "SUBSCRIBE", "INFO", "MESSAGE",
                 "UPDATE", "PRACK", "REFER", "PUBLISH"}  # fmt: skip


class SipPhone(asyncio.DatagramProtocol):
    """One phone's SIP port. ``on_check_sync(reboot)`` runs after the 200 is sent."""

    def __init__(
        self,
        on_check_sync: Callable[[bool], None],
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self._on_check_sync = on_check_sync
        self._credentials = credentials
        self._secret = os.urandom(16)
        self._transport: asyncio.DatagramTransport | None = None
        self.answered: dict[int, int] = {}  # status → count
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_request(data)
        if message is None or message.method == "ACK":
            self.dropped += 1
            return
        if any(message.get(name) is None for name in _NEEDED):
            if message.get("via") is None:
                self.dropped += 1  # nowhere to send an answer
                return
            self._answer(message, addr, 400, "Bad Request")
            return
        cseq = (message.get("cseq") or "").split()
        if len(cseq) != 2 or not cseq[0].isdigit() or cseq[1].upper() != message.method:
            self._answer(message, addr, 400, "Bad Request")
            return
        if message.method not in ("NOTIFY", "OPTIONS"):
            if message.method in _KNOWN:
                self._answer(
                    message, addr, 405, "Method Not Allowed", [("Allow", "NOTIFY, OPTIONS")]
                )
            else:
                self._answer(message, addr, 501, "Not Implemented")
            return
        if self._credentials is not None and not self._authorized(message):
            challenge = f'Digest realm="{REALM}", nonce="{self._nonce()}", algorithm=MD5'
            self._answer(message, addr, 401, "Unauthorized", [("WWW-Authenticate", challenge)])
            return
        if message.method == "OPTIONS":
            self._answer(message, addr, 200, "OK")
            return
        event = (message.get("event") or "").replace(" ", "")
        name, *params = event.split(";")
        if name.lower() != "check-sync":
            self._answer(message, addr, 489, "Bad Event")
            return
        self._answer(message, addr, 200, "OK")
        self._on_check_sync("reboot=true" in [p.lower() for p in params])

    def _nonce(self) -> str:
        stamp = os.urandom(8).hex()
        return stamp + hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:16]

    def _authorized(self, message: SipMessage) -> bool:
        header = message.get("authorization") or ""
        if not header.lower().startswith("digest "):
            return False
        params = digest_params(header)
        nonce = params.get("nonce", "")
        stamp, mac = nonce[:16], nonce[16:]
        expected_mac = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:16]
        if not hmac.compare_digest(mac, expected_mac) or self._credentials is None:
            return False
        user, password = self._credentials
        if params.get("username") != user or params.get("realm") != REALM:
            return False
        if "qop" in params and not ("nc" in params and "cnonce" in params):
            return False
        expected = digest_response(params, message.method, params.get("uri", ""), user, password)
        return hmac.compare_digest(expected, params.get("response", ""))

    def _answer(
        self,
        message: SipMessage,
        addr: tuple[str, int],
        status: int,
        reason: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        to = message.get("to") or ""
        if to and ";tag=" not in to:
            to += ";tag=" + os.urandom(4).hex()
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {via}" for via in message.all("via")]
        lines += [f"From: {message.get('from') or ''}", f"To: {to}"]
        lines += [f"Call-ID: {message.get('call-id') or ''}", f"CSeq: {message.get('cseq') or ''}"]
        lines += [f"{name}: {value}" for name, value in extra or []]
        lines += ["Content-Length: 0", "", ""]
        if self._transport is not None:
            self._transport.sendto("\r\n".join(lines).encode("utf-8"), addr)
        self.answered[status] = self.answered.get(status, 0) + 1
