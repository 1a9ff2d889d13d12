"""The SIP side of an emulated phone: NOTIFY check-sync over UDP and TCP (RFC 3261, §5.5).

``NOTIFY`` with ``Event: check-sync`` (optionally ``;reboot=true``) is answered 200 and handed
to the phone (R9). ``OPTIONS`` gets 200. Another event gets 489 Bad Event, another method 405
or 501. A request missing a header a response needs (Via, From, To, Call-ID, CSeq) or with a
malformed CSeq gets 400 when it can be answered at all, and is dropped otherwise; responses
and garbage are dropped. A request retransmitted over UDP (the same datagram again: its sender
had not heard the answer within T1) is answered again and not acted on twice, as a real
phone's server transaction does (RFC 3261 §17.2.2). With credentials, requests are
challenged with a digest (realm ``PolycomSPIP``, the phones' default) and only a correct answer
gets through. Over TCP a connection carries any number of requests, each framed by its
Content-Length.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Final, cast

from fleetkey.core import digest
from fleetkey.core.sip import SipMessage, parse_request

REALM: Final = "PolycomSPIP"
# UDP requests remembered with their answers: a transaction's retransmissions end within
# 64 x T1 (32 s), and a phone gets a handful of requests in that time at most
RECENT_KEPT: Final = 8
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
        self.retransmissions = 0  # UDP requests received again, answered again, not acted on
        self._recent: dict[bytes, bytes] = {}  # the last UDP requests and their answers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answered = self._recent.get(data)
        if answered is not None:  # a retransmission: its answer again, nothing done twice
            self.retransmissions += 1
            if self._transport is not None:
                self._transport.sendto(answered, addr)
            return
        answer, check_sync = self.respond(data)
        if answer is not None:
            self._recent[data] = answer
            if len(self._recent) > RECENT_KEPT:
                del self._recent[next(iter(self._recent))]  # the oldest
        if answer is not None and self._transport is not None:
            self._transport.sendto(answer, addr)
        if check_sync is not None:
            self._on_check_sync(check_sync)

    async def serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One TCP connection: requests in, answers out, until the peer closes or errs."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                message = parse_request(head)
                length = message.get("content-length") if message is not None else None
                body = await reader.readexactly(int(length)) if length and length.isdigit() else b""
                answer, check_sync = self.respond(head + body)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                if check_sync is not None:
                    self._on_check_sync(check_sync)
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ):
            pass  # the peer closed, or sent what is not SIP: the connection ends
        finally:
            writer.close()

    def respond(self, data: bytes) -> tuple[bytes | None, bool | None]:
        """The answer to ``data`` (None: drop it), and the check-sync to act on once it is
        sent (its ``reboot`` flag; None: none)."""
        message = parse_request(data)
        if message is None or message.method == "ACK":
            self.dropped += 1
            return None, None
        if any(message.get(name) is None for name in _NEEDED):
            if message.get("via") is None:
                self.dropped += 1  # nowhere to send an answer
                return None, None
            return self._answer(message, 400, "Bad Request"), None
        cseq = (message.get("cseq") or "").split()
        if len(cseq) != 2 or not cseq[0].isdigit() or cseq[1].upper() != message.method:
            return self._answer(message, 400, "Bad Request"), None
        if message.method not in ("NOTIFY", "OPTIONS"):
            if message.method in _KNOWN:
                allow = [("Allow", "NOTIFY, OPTIONS")]
                return self._answer(message, 405, "Method Not Allowed", allow), None
            return self._answer(message, 501, "Not Implemented"), None
        if self._credentials is not None and not self._authorized(message):
            challenge = digest.challenge(REALM, self._nonce(), qop=False)
            return self._answer(
                message, 401, "Unauthorized", [("WWW-Authenticate", challenge)]
            ), None
        if message.method == "OPTIONS":
            return self._answer(message, 200, "OK"), None
        event = (message.get("event") or "").replace(" ", "")
        name, *params = event.split(";")
        if name.lower() != "check-sync":
            return self._answer(message, 489, "Bad Event"), None
        return self._answer(message, 200, "OK"), "reboot=true" in [p.lower() for p in params]

    def _nonce(self) -> str:
        stamp = os.urandom(8).hex()
        return stamp + hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:16]

    def _authorized(self, message: SipMessage) -> bool:
        params = digest.parse_header(message.get("authorization") or "")
        if params is None:
            return False
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
        expected = digest.expected_response(
            digest.ha1(user, REALM, password), message.method, params
        )
        return hmac.compare_digest(expected, params.get("response", ""))

    def _answer(
        self,
        message: SipMessage,
        status: int,
        reason: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> bytes:
        to = message.get("to") or ""
        if to and ";tag=" not in to:
            to += ";tag=" + os.urandom(4).hex()
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {via}" for via in message.all("via")]
        lines += [f"From: {message.get('from') or ''}", f"To: {to}"]
        lines += [f"Call-ID: {message.get('call-id') or ''}", f"CSeq: {message.get('cseq') or ''}"]
        lines += [f"{name}: {value}" for name, value in extra or []]
        lines += ["Content-Length: 0", "", ""]
        self.answered[status] = self.answered.get(status, 0) + 1
        return "\r\n".join(lines).encode("utf-8")
