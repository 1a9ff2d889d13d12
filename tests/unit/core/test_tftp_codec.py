"""TFTP requests and option negotiation: every malformed request has its own error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetkey.core import tftp as packets
from fleetkey.core.tftp import ErrorCode, Opcode, OptionLimits, PacketError
from fleetkey.serve.tftp.sources import netascii


def rrq(name: bytes = b"a.cfg", mode: bytes = b"octet", *options: bytes) -> bytes:
    return b"\x00\x01" + b"\0".join((name, mode, *options)) + b"\0"


def test_plain_read_request() -> None:
    request = packets.parse_request(rrq())
    assert (request.opcode, request.filename, request.mode, request.options) == (
        Opcode.RRQ,
        b"a.cfg",
        "octet",
        {},
    )


def test_options_are_case_insensitive_and_mode_too() -> None:
    request = packets.parse_request(rrq(b"a", b"NetASCII", b"BLKSIZE", b"1428", b"tsize", b"0"))
    assert request.mode == "netascii"
    assert request.options == {"blksize": "1428", "tsize": "0"}


@pytest.mark.parametrize(
    ("packet", "code", "message"),
    [
        (b"\x00", ErrorCode.ILLEGAL_OPERATION, "packet too short"),
        (b"\x00\x09a\0octet\0", ErrorCode.ILLEGAL_OPERATION, "opcode 9 does not start"),
        (b"\x00\x03\x00\x01data", ErrorCode.ILLEGAL_OPERATION, "opcode 3 does not start"),
        (b"\x00\x01a.cfg\0octet", ErrorCode.ILLEGAL_OPERATION, "does not end with NUL"),
        (b"\x00\x01a.cfg\0", ErrorCode.ILLEGAL_OPERATION, "needs file name, mode"),
        (b"\x00\x01\0octet\0", ErrorCode.ILLEGAL_OPERATION, "empty file name"),
        (rrq(mode=b"mail"), ErrorCode.ILLEGAL_OPERATION, "mode 'mail' is not octet"),
        (rrq(mode=b"\xff"), ErrorCode.ILLEGAL_OPERATION, "mode is not ASCII"),
        (rrq(b"a", b"octet", b"blksize"), ErrorCode.ILLEGAL_OPERATION, "needs file name, mode"),
        (rrq(b"a", b"octet", b"", b"1"), ErrorCode.OPTION_REFUSED, "empty option name"),
        (
            rrq(b"a", b"octet", b"blksize", b"512", b"BLKSIZE", b"1024"),
            ErrorCode.OPTION_REFUSED,
            "option blksize given twice",
        ),
        (rrq(b"a", b"octet", b"bl\xffk", b"1"), ErrorCode.OPTION_REFUSED, "option is not ASCII"),
        (rrq(b"x" * 1100), ErrorCode.ILLEGAL_OPERATION, "request longer than 1024"),
    ],
)
def test_malformed_requests(packet: bytes, code: ErrorCode, message: str) -> None:
    with pytest.raises(PacketError) as caught:
        packets.parse_request(packet)
    assert caught.value.code is code
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((b"blksize", b"7"), "blksize '7' is not 8-65464"),
        ((b"blksize", b"65465"), "blksize '65465' is not 8-65464"),
        ((b"blksize", b"big"), "blksize 'big' is not"),
        ((b"timeout", b"0"), "timeout '0' is not 1-255"),
        ((b"timeout", b"256"), "timeout '256' is not 1-255"),
        ((b"windowsize", b"0"), "windowsize '0' is not 1-65535"),
        ((b"tsize", b"-1"), "tsize '-1' is not"),
    ],
)
def test_out_of_range_options_are_refused(options: tuple[bytes, ...], message: str) -> None:
    request = packets.parse_request(rrq(b"a", b"octet", *options))
    with pytest.raises(PacketError) as caught:
        packets.negotiate(request, OptionLimits(), 100)
    assert caught.value.code is ErrorCode.OPTION_REFUSED
    assert message in caught.value.message


def test_negotiation_caps_and_answers() -> None:
    request = packets.parse_request(
        rrq(b"a", b"octet", b"blksize", b"65464", b"windowsize", b"1000", b"tsize", b"0")[:-1]
        + b"\0timeout\0003\0unknown\0x\0"
    )
    agreed = packets.negotiate(request, OptionLimits(max_blksize=1468, max_window=64), 12345)
    assert (agreed.blksize, agreed.windowsize, agreed.timeout_s) == (1468, 64, 3.0)
    assert agreed.acknowledged == {
        "blksize": "1468",
        "timeout": "3",
        "windowsize": "64",
        "tsize": "12345",
    }  # the unknown option is left out of the OACK (RFC 2347)


def test_write_request_tsize_is_the_announced_size() -> None:
    request = packets.parse_request(b"\x00\x02a.log\0octet\0tsize\0000777\0")
    agreed = packets.negotiate(request, OptionLimits(), None)
    assert agreed.tsize == 777


def test_packets_on_the_wire() -> None:
    assert packets.data(65536, b"x") == b"\x00\x03\x00\x00x"  # block numbers roll over
    assert packets.ack(1) == b"\x00\x04\x00\x01"
    assert packets.error(ErrorCode.FILE_NOT_FOUND, "no") == b"\x00\x05\x00\x01no\0"
    assert packets.oack({"blksize": "1428"}) == b"\x00\x06blksize\x001428\0"
    assert packets.head(b"\x00\x04\x12\x34") == (4, 0x1234)
    assert packets.head(b"\x00\x04") is None


@given(st.binary(max_size=2000))
def test_netascii_round_trip(raw: bytes) -> None:
    wire = netascii(raw)
    assert b"\n" not in wire.replace(b"\r\n", b"")
    assert packets.from_netascii(wire) == raw


@given(st.binary(max_size=1200))
def test_any_bytes_parse_or_raise_a_packet_error(packet: bytes) -> None:
    message = "parsed"
    try:
        packets.parse_request(packet)
    except PacketError as exc:
        message = exc.message
    assert message


class TestClientSide:
    """What the emulated phones build and read with the server's own codec."""

    def test_a_clients_request_is_what_the_server_parses(self) -> None:
        wire = packets.request(Opcode.RRQ, b"fw/sip.ld", {"blksize": "1428", "tsize": "0"})
        assert wire == b"\x00\x01fw/sip.ld\0octet\0blksize\x001428\0tsize\x000\0"
        parsed = packets.parse_request(wire)
        assert (parsed.opcode, parsed.filename, parsed.options) == (
            Opcode.RRQ,
            b"fw/sip.ld",
            {"blksize": "1428", "tsize": "0"},
        )

    def test_an_oack_and_an_error_read_back(self) -> None:
        assert packets.parse_oack(packets.oack({"blksize": "1428", "tsize": "9"})) == {
            "blksize": "1428",
            "tsize": "9",
        }
        wire = packets.error(ErrorCode.FILE_NOT_FOUND, "file not found")
        assert packets.parse_error(wire) == (1, "file not found")

    @pytest.mark.parametrize(
        "wire",
        [
            b"\x00\x06blksize\x001428",  # no final NUL
            b"\x00\x06blksize\0",  # a name without a value
            b"\x00\x04\x00\x00",  # an ACK
            b"\x00\x06\xffname\x00v\x00",  # not ASCII
        ],
    )
    def test_a_malformed_oack_is_refused(self, wire: bytes) -> None:
        with pytest.raises(PacketError):
            packets.parse_oack(wire)

    @pytest.mark.parametrize("wire", [b"\x00\x05\x00", b"\x00\x03\x00\x01data"])
    def test_what_is_no_error_packet_is_refused(self, wire: bytes) -> None:
        with pytest.raises(PacketError, match="not an ERROR packet"):
            packets.parse_error(wire)
