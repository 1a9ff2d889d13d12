"""The SIP codec both ends of check-sync share: contacts, responses, NOTIFY."""

from __future__ import annotations

import pytest

from fleetkey.core.sip import (
    Contact,
    Dialog,
    check_sync,
    parse_request,
    parse_response,
)
from fleetkey.errors import SipFormatError

DIALOG = Dialog("127.0.0.1", 5070, "udp", "call-1", "tag-1")


@pytest.mark.parametrize(
    ("text", "host", "port", "transport", "uri"),
    [
        ("sip:0004f2000001@10.1.1.1", "10.1.1.1", 5060, "udp", "sip:0004f2000001@10.1.1.1:5060"),
        ("<sip:p@10.0.0.5:5062;transport=TCP>", "10.0.0.5", 5062, "tcp", "sip:p@10.0.0.5:5062"),
        ("sip:10.0.0.5", "10.0.0.5", 5060, "udp", "sip:10.0.0.5:5060"),
        ("sip:p@[::1]:5070", "::1", 5070, "udp", "sip:p@[::1]:5070"),
        ("sip:p@ph.example.org;lr", "ph.example.org", 5060, "udp", "sip:p@ph.example.org:5060"),
    ],
)  # fmt: skip
def test_contacts_parse_to_host_port_transport(
    text: str, host: str, port: int, transport: str, uri: str
) -> None:
    contact = Contact.parse(text)
    assert (contact.host, contact.port, contact.transport, contact.uri) == (
        host, port, transport, uri,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://10.0.0.5", "is not sip:"),
        ("sip:", "is not sip:"),
        ("sip:p@10.0.0.5:0", "outside 1-65535"),
        ("sip:p@10.0.0.5:70000", "outside 1-65535"),
        ("sip:p@10.0.0.5;transport=sctp", "is not udp or tcp"),
        ("sip:p@10.0.0.5 5060", "is not sip:"),
        ("sips:p@10.0.0.5", "is not sip:"),
    ],
)
def test_bad_contacts_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(SipFormatError, match=message):
        Contact.parse(text)


def test_check_sync_is_a_complete_notify_the_uas_side_parses() -> None:
    contact = Contact.parse("sip:0004f2000001@127.10.1.1:5062")
    data = check_sync(contact, DIALOG, branch="abc", cseq=3, reboot=True)
    request = parse_request(data)
    assert request is not None
    assert request.method == "NOTIFY"
    assert request.uri == "sip:0004f2000001@127.10.1.1:5062"
    assert request.get("event") == "check-sync;reboot=true"
    assert request.get("cseq") == "3 NOTIFY"
    assert request.get("via") == "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc;rport"
    assert request.get("content-length") == "0"
    assert data.endswith(b"\r\n\r\n")
    plain = parse_request(check_sync(contact, DIALOG, branch="d", cseq=1, reboot=False))
    assert plain is not None
    assert plain.get("event") == "check-sync"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"SIP/2.0 200 OK\r\nVia: x;branch=z9hG4bK1\r\n\r\n", 200),
        (b'SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm="r"\r\n\r\n', 401),
        (b"SIP/2.0 180 Ringing\r\n\r\n", 180),
        (b"SIP/2.0 99 Odd\r\n\r\n", None),
        (b"SIP/2.0 700 Beyond\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\n\r\n", None),
        (b"NOTIFY sip:x SIP/2.0\r\n\r\n", None),
        (b"SIP/2.0 200 OK\r\nbroken header\r\n\r\n", None),
        (b"\xff\xfe", None),
        (b"SIP/2.0 200 OK\r\n" + b"X: y\r\n" * 2000, None),
    ],
)
def test_responses_parse_or_are_rejected(data: bytes, status: int | None) -> None:
    answer = parse_response(data)
    assert (answer.status if answer else None) == status
