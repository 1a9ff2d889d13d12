"""The emulator's sockets: one SIP socket per phone over UDP, one TCP listener for the fleet
that hands each connection to the phone it was made to, and the open-file budget."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from fleetkey.core.device.config import PhoneConfig
from fleetkey.core.signing import TrustedKeys
from fleetkey.emulate.clock import VirtualClock
from fleetkey.emulate.fleet import Fleet
from fleetkey.emulate.sockets import descriptors_needed, phones_that_fit

from tests.helpers import free_udp_port, sip_request


class TestBudget:
    def test_ten_thousand_phones_fit_in_twenty_thousand_open_files_with_room(self) -> None:
        assert descriptors_needed(10_000, 256, sip=True) == 10_320
        assert phones_that_fit(20_000, 256) == 19_680

    def test_without_sip_a_phone_needs_no_socket_of_its_own(self) -> None:
        assert descriptors_needed(10_000, 256, sip=False) == 320

    @pytest.mark.parametrize(("limit", "fit"), [(1024, 704), (300, 118), (64, 0), (10, 0)])
    def test_what_fits_never_needs_more_than_the_limit(self, limit: int, fit: int) -> None:
        assert phones_that_fit(limit, 256) == fit
        if fit:
            assert descriptors_needed(fit, 256, sip=True) <= limit
            assert descriptors_needed(fit + 1, 256, sip=True) > limit


async def _sip_over_tcp(address: str, port: int, message: str) -> bytes:
    reader, writer = await asyncio.open_connection(address, port)
    writer.write(message.encode())
    try:
        async with asyncio.timeout(5):
            return await reader.read(9000)
    except ConnectionResetError:  # closed with the request unread
        return b""
    finally:
        writer.close()


def test_one_tcp_listener_hands_each_connection_to_the_phone_it_was_made_to() -> None:
    port = free_udp_port()
    configs = [PhoneConfig(f"0004f200000{i}") for i in range(3)]

    async def scenario() -> tuple[bytes, bytes, bytes]:
        clock = VirtualClock(datetime(2027, 1, 1, tzinfo=UTC))
        fleet = Fleet(configs, TrustedKeys(), clock, host="127.0.0.1", port=1, sip_port=port,
                      sip_logins=[None, ("1002", "pw"), None])  # fmt: skip
        running = asyncio.ensure_future(fleet.run(30))
        for _ in range(200):  # until the phones listen
            await asyncio.sleep(0.02)
            if all(p.sip is not None for p in fleet.phones):
                break
        second = await _sip_over_tcp(fleet.phones[1].address, port, sip_request("OPTIONS", port))
        third = await _sip_over_tcp(fleet.phones[2].address, port, sip_request("OPTIONS", port))
        other = await _sip_over_tcp("127.0.0.1", port, sip_request("OPTIONS", port))
        fleet.stopping.set()
        await running
        return second, third, other

    second, third, other = asyncio.run(scenario())
    assert second.startswith(b"SIP/2.0 401 Unauthorized")  # the phone with a login: its own
    assert third.startswith(b"SIP/2.0 200 OK")
    assert other == b""  # not a phone's address: closed at once
