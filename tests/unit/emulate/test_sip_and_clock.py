"""The emulated phone's SIP endpoint (digest challenge included) and the virtual clock."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest

from fleetkey.core.sip import parse_request
from fleetkey.emulate.clock import VirtualClock
from fleetkey.emulate.sip import REALM, SipPhone
from fleetkey.errors import InputError


class Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: object) -> None:
        self.sent.append(data)


def notify(extra: str = "", event: str = "check-sync") -> bytes:
    return (
        "NOTIFY sip:phone@127.10.1.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
        "f: <sip:fleetkey@127.0.0.1>;tag=a\r\n"  # compact form of From
        "To: <sip:phone@127.10.1.1>\r\n"
        "Call-ID: x@127.0.0.1\r\n"
        "CSeq: 7 NOTIFY\r\n"
        f"Event: {event}\r\n{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def endpoint(credentials: tuple[str, str] | None = None) -> tuple[SipPhone, Transport, list[bool]]:
    syncs: list[bool] = []
    phone = SipPhone(syncs.append, credentials)
    transport = Transport()
    phone.connection_made(transport)  # type: ignore[arg-type]
    return phone, transport, syncs


def test_check_sync_is_answered_200_with_the_dialog_headers() -> None:
    phone, transport, syncs = endpoint()
    phone.datagram_received(notify(event="check-sync;reboot=true"), ("127.0.0.1", 5070))
    answer = transport.sent[0].decode()
    assert answer.startswith("SIP/2.0 200 OK\r\n")
    assert "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1" in answer
    assert "From: <sip:fleetkey@127.0.0.1>;tag=a" in answer
    assert re.search(r"To: <sip:phone@127.10.1.1>;tag=[0-9a-f]{8}", answer)
    assert "CSeq: 7 NOTIFY" in answer
    assert syncs == [True]


def test_a_retransmitted_check_sync_is_answered_again_and_acted_on_once() -> None:
    """The executor sends the same datagram again when it has not heard the 200 within T1
    (RFC 3261 §17.2.2): a phone answers it again and does not count a second check-sync."""
    phone, transport, syncs = endpoint()
    for _ in range(3):
        phone.datagram_received(notify(event="check-sync;reboot=true"), ("127.0.0.1", 5070))
    assert len(transport.sent) == 3
    assert transport.sent[1] == transport.sent[2] == transport.sent[0]  # the same 200, its tag
    assert syncs == [True]
    assert phone.retransmissions == 2
    again = notify(event="check-sync;reboot=true").replace(b"CSeq: 7", b"CSeq: 8")
    phone.datagram_received(again, ("127.0.0.1", 5070))  # a new transaction is a new check-sync
    assert syncs == [True, True]


def test_digest_challenge_then_the_right_answer_gets_through() -> None:
    phone, transport, syncs = endpoint(("1001", "secret"))
    phone.datagram_received(notify(), ("127.0.0.1", 5070))
    challenge = transport.sent[0].decode()
    assert challenge.startswith("SIP/2.0 401 Unauthorized")
    nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
    ha1 = hashlib.md5(f"1001:{REALM}:secret".encode(), usedforsecurity=False).hexdigest()
    ha2 = hashlib.md5(b"NOTIFY:sip:phone@127.10.1.1", usedforsecurity=False).hexdigest()
    good = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode(), usedforsecurity=False).hexdigest()
    authorization = (
        f'Authorization: Digest username="1001", realm="{REALM}", nonce="{nonce}", '
        f'uri="sip:phone@127.10.1.1", response="{{}}"\r\n'
    )
    phone.datagram_received(notify(authorization.format("0" * 32)), ("127.0.0.1", 5070))
    assert transport.sent[1].startswith(b"SIP/2.0 401")
    assert syncs == []
    phone.datagram_received(notify(authorization.format(good)), ("127.0.0.1", 5070))
    assert transport.sent[2].startswith(b"SIP/2.0 200 OK")
    assert syncs == [False]


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xfe", b"SIP/2.0 200 OK\r\n\r\n", b"NOTIFY sip:x\r\n\r\n", b"A B C D\r\n\r\n"],
)
def test_what_is_not_a_request_does_not_parse(data: bytes) -> None:
    assert parse_request(data) is None


def test_virtual_clock_runs_at_its_speed() -> None:
    ticks = iter([100.0, 100.0, 101.5])
    start = datetime(2027, 1, 1, tzinfo=UTC)
    clock = VirtualClock(start, 3600, monotonic=lambda: next(ticks))
    assert clock.now() == start
    assert clock.now() == start + timedelta(hours=1.5)


@pytest.mark.parametrize(
    ("start", "speed", "message"),
    [
        (datetime(2027, 1, 1), 1.0, "needs a start with a time zone"),
        (datetime(2027, 1, 1, tzinfo=UTC), 0.0, "must be above 0"),
    ],
)
def test_bad_clocks_are_refused(start: datetime, speed: float, message: str) -> None:
    with pytest.raises(InputError, match=message):
        VirtualClock(start, speed)
