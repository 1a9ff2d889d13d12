"""Sending check-sync: NOTIFY client transactions over UDP and TCP (RFC 3261 §17.1.2).

UDP: one socket for every transaction, answers matched by the Via branch; the request is sent
again after T1, 2·T1, … up to T2 apart until a final answer, and given up after Timer F
(64·T1, 32 s by default); after a provisional answer it is repeated every T2. TCP: a connection
per NOTIFY, no retransmission, Timer F as the limit. A 401 or 407 is answered once with a digest
``Authorization`` (the same Call-ID and From tag, the next CSeq), if credentials were given.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Final, cast

from fleetkey.core.digest import Challenge
from fleetkey.core.sip import (
    Contact,
    Dialog,
    SipMessage,
    check_sync,
    parse_response,
)
from fleetkey.errors import DigestError, SipFormatError

T1: Final = 0.5
T2: Final = 4.0


@dataclass(frozen=True, slots=True)
class NotifyResult:
    status: int | None  # the final status; None when nothing final came back
    reason: str
    sends: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Queue[SipMessage]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = parse_response(data)
        if answer is None:
            return  # requests and garbage are not ours to answer
        queue = self.waiting.get(_branch(answer))
        if queue is not None:
            queue.put_nowait(answer)


class Notifier:
    """``async with Notifier() as n: await n.notify(contact, reboot=True)``."""

    def __init__(
        self,
        *,
        local_host: str = "127.0.0.1",
        credentials: tuple[str, str] | None = None,
        t1: float = T1,
        t2: float = T2,
    ) -> None:
        self._host = local_host
        self._credentials = credentials
        self._t1, self._t2 = t1, t2
        self._answers = _Answers()
        self._port = 0

    async def __aenter__(self) -> Notifier:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self._answers, local_addr=(self._host, 0)
        )
        self._port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._answers.transport is not None:
            self._answers.transport.close()

    async def notify(self, contact: Contact, *, reboot: bool) -> NotifyResult:
        began = time.monotonic()
        if contact.transport == "tcp":
            return await self._over_tcp(contact, reboot, began)
        dialog = Dialog(self._host, self._port, "udp", _token(), _token())
        answer, sends = await self._udp(contact, dialog, 1, reboot, None)
        total = sends
        if answer is not None and answer.status in (401, 407) and self._credentials:
            try:
                authorization = self._authorization(answer, contact)
            except (SipFormatError, DigestError) as exc:
                return NotifyResult(answer.status, str(exc), total, time.monotonic() - began)
            answer, sends = await self._udp(contact, dialog, 2, reboot, authorization)
            total += sends
        return _result(answer, total, began, self._t1, "UDP")

    async def _udp(
        self, contact: Contact, dialog: Dialog, cseq: int, reboot: bool, authorization: str | None
    ) -> tuple[SipMessage | None, int]:
        branch = _token()
        data = check_sync(
            contact, dialog, branch=branch, cseq=cseq, reboot=reboot, authorization=authorization
        )
        queue: asyncio.Queue[SipMessage] = asyncio.Queue()
        key = "z9hG4bK" + branch
        self._answers.waiting[key] = queue
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 64 * self._t1
        interval, sends = self._t1, 0
        try:
            while (left := give_up - loop.time()) > 0:
                if self._answers.transport is None:
                    raise RuntimeError("the notifier is not started")
                self._answers.transport.sendto(data, (contact.host, contact.port))
                sends += 1
                try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancel
                    async with asyncio.timeout(min(interval, left)):  # (CPython gh-86296)
                        answer = await queue.get()
                except TimeoutError:
                    interval = min(interval * 2, self._t2)
                    continue
                if answer.status >= 200:
                    return answer, sends
                interval = self._t2  # provisional: keep the request alive every T2
            return None, sends
        finally:
            del self._answers.waiting[key]

    async def _over_tcp(self, contact: Contact, reboot: bool, began: float) -> NotifyResult:
        limit = 64 * self._t1
        try:
            async with asyncio.timeout(limit):
                reader, writer = await asyncio.open_connection(contact.host, contact.port)
        except (OSError, TimeoutError) as exc:
            return NotifyResult(
                None, f"TCP connection failed: {exc!r}", 0, time.monotonic() - began
            )
        host, port = writer.get_extra_info("sockname")[:2]
        dialog = Dialog(host, port, "tcp", _token(), _token())
        sends = 0
        try:
            authorization = None
            for cseq in (1, 2):
                data = check_sync(
                    contact,
                    dialog,
                    branch=_token(),
                    cseq=cseq,
                    reboot=reboot,
                    authorization=authorization,
                )
                writer.write(data)
                sends += 1
                async with asyncio.timeout(limit):
                    answer = await _read_final(reader)
                if answer is None or answer.status not in (401, 407) or not self._credentials:
                    return _result(answer, sends, began, self._t1, "TCP")
                if cseq == 1:
                    authorization = self._authorization(answer, contact)
            return _result(answer, sends, began, self._t1, "TCP")
        except (SipFormatError, DigestError) as exc:
            return NotifyResult(None, str(exc), sends, time.monotonic() - began)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            return NotifyResult(
                None, f"TCP exchange failed: {exc!r}", sends, time.monotonic() - began
            )
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _authorization(self, answer: SipMessage, contact: Contact) -> str:
        if self._credentials is None:
            raise SipFormatError("challenged, but no SIP credentials were given")
        header_name = "Authorization" if answer.status == 401 else "Proxy-Authorization"
        challenge_name = "www-authenticate" if answer.status == 401 else "proxy-authenticate"
        challenge = answer.get(challenge_name) or ""
        user, password = self._credentials
        value = Challenge.parse(challenge).authorization(
            "NOTIFY", contact.uri, user, password, _token()
        )
        return f"{header_name}: {value}"


async def _read_final(reader: asyncio.StreamReader) -> SipMessage | None:
    """Read answers off a TCP stream until a final one."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        answer = parse_response(head)
        if answer is None:
            return None
        length = int(answer.get("content-length") or 0)
        if length:
            await reader.readexactly(length)
        if answer.status >= 200:
            return answer


def _result(
    answer: SipMessage | None, sends: int, began: float, t1: float, transport: str
) -> NotifyResult:
    seconds = time.monotonic() - began
    if answer is None:
        return NotifyResult(
            None, f"no answer over {transport} in {64 * t1:g} s ({sends} sends)", sends, seconds
        )
    return NotifyResult(answer.status, f"{answer.status} {answer.reason}".strip(), sends, seconds)


def _branch(answer: SipMessage) -> str:
    via = answer.get("via") or ""
    for param in via.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "branch":
            return value
    return ""


def _token() -> str:
    return os.urandom(8).hex()
