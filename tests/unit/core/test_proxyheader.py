"""The PROXY protocol header, v1 and v2, as HAProxy's send-proxy and send-proxy-v2 send it."""

from __future__ import annotations

import re
import struct

import pytest

from fleetkey.core.proxyheader import V2_SIGNATURE, ProxyHeader, ProxyHeaderError, parse

V1 = b"PROXY TCP4 203.0.113.5 10.0.0.11 40000 21\r\n"


def v2(body: bytes, command: int = 1, family: int = 0x11) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


IPV4 = bytes([203, 0, 113, 5, 10, 0, 0, 11]) + struct.pack("!HH", 40000, 21)
IPV6 = bytes.fromhex("20010db8000000000000000000000007") + bytes(15) + b"\x01"
IPV6 += struct.pack("!HH", 40001, 21)


@pytest.mark.parametrize(
    ("data", "header"),
    [
        (V1, ProxyHeader(len(V1), ("203.0.113.5", 40000), 1)),
        (V1 + b"USER x\r\n", ProxyHeader(len(V1), ("203.0.113.5", 40000), 1)),  # its own only
        (
            b"PROXY TCP6 2001:db8::7 ::1 40001 21\r\n",
            ProxyHeader(37, ("2001:db8::7", 40001), 1),
        ),
        # a dual-stack HAProxy (bind :::21 v4v6) names an IPv4 phone IPv4-mapped: the phone's
        (
            b"PROXY TCP6 ::ffff:203.0.113.5 ::ffff:10.0.0.11 40000 21\r\n",
            ProxyHeader(57, ("203.0.113.5", 40000), 1),
        ),
        (
            v2(
                bytes(10) + b"\xff\xff" + bytes([203, 0, 113, 5]) + bytes(16) + IPV4[8:],
                family=0x21,
            ),
            ProxyHeader(52, ("203.0.113.5", 40000), 2),
        ),
        (b"PROXY UNKNOWN\r\n", ProxyHeader(15, None, 1)),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(35, None, 1)),
        (v2(IPV4), ProxyHeader(28, ("203.0.113.5", 40000), 2)),
        (v2(IPV4 + b"\x04\x00\x01x"), ProxyHeader(32, ("203.0.113.5", 40000), 2)),  # a TLV
        (v2(IPV6, family=0x21), ProxyHeader(52, ("2001:db8::7", 40001), 2)),
        (v2(b"", command=0, family=0), ProxyHeader(16, None, 2)),  # LOCAL: a health check
        (v2(IPV4, command=0), ProxyHeader(28, None, 2)),  # LOCAL names nobody whatever follows
        (v2(b"", family=0), ProxyHeader(16, None, 2)),  # UNSPEC
    ],
)
def test_well_formed_headers(data: bytes, header: ProxyHeader) -> None:
    assert parse(data) == header


@pytest.mark.parametrize("whole", [V1, v2(IPV4), v2(IPV6, family=0x21)])
def test_a_header_in_parts_asks_for_more_until_it_is_whole(whole: bytes) -> None:
    for end in range(len(whole)):
        assert parse(whole[:end]) is None, end
    assert parse(whole) is not None


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"USER x\r\n", "no PROXY protocol header"),
        (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY protocol header"),
        (b"\r\n\r\n\x00\r\nQUIX\n", "no PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "is not 'PROXY TCP4|TCP6"),
        (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "is not 'PROXY TCP4|TCP6"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "is not 'PROXY TCP4|TCP6"),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "'1.2.3' is not an IP address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8.9 1 2\r\n", "'5.6.7.8.9' is not an IP address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "'1.2.3.4' is not IPv6"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "port 99999 is above 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2\r\n", "is not ASCII"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "port '+1' is not a port number"),
        (b"PROXY TCP4 1.2.3.4\n", "without CRLF"),
        (b"PROXY " + b"x" * 200, "without CRLF in its first 107 bytes"),
        (V2_SIGNATURE + b"\x31\x11\x00\x00", "says version 3"),
        (V2_SIGNATURE + b"\x2f\x11\x00\x00", "command 15 is neither"),
        (v2(IPV4, family=0x12), "family 0x12 is not TCP"),
        (v2(IPV4, family=0x31), "family 0x31 is not TCP"),
        (v2(IPV4[:11]), "addresses of 11 bytes (family 0x11: 12)"),
        (v2(IPV4, family=0x21), "addresses of 12 bytes (family 0x21: 36)"),
        (V2_SIGNATURE + b"\x21\x11\x02\x01", "header of 513 bytes (at most 512 read)"),
    ],
)
def test_malformed_headers_say_what_is_wrong(data: bytes, said: str) -> None:
    with pytest.raises(ProxyHeaderError, match=re.escape(said)):
        parse(data)


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"PROXY TCP4 1.2.3.\xe4 5.6.7.8 1 2\r\n", UnicodeDecodeError),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", ValueError),
    ],
)
def test_a_refusal_translated_from_a_lower_error_keeps_it_as_its_cause(
    data: bytes, cause: type[Exception]
) -> None:
    with pytest.raises(ProxyHeaderError) as refused:
        parse(data)
    assert isinstance(refused.value.__cause__, cause)
