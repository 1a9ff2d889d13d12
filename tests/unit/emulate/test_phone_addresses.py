"""Where emulated phones live: an address derived from each phone's MAC, the same at every run
and another for every phone of a fleet; the MACs the emulator makes up are never a vendor's."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetkey.emulate.addresses import (
    SLOTS,
    assign_addresses,
    generated_mac,
    phone_address,
    probe_mac,
)


@pytest.mark.parametrize(
    ("mac", "address"),
    [
        ("000000000000", "127.10.1.1"),
        ("000000000001", "127.10.1.2"),
        (f"{249:012x}", "127.10.1.250"),
        (f"{250:012x}", "127.10.2.1"),
        (f"{62_499:012x}", "127.10.250.250"),
        (f"{62_500:012x}", "127.11.1.1"),
        (f"{SLOTS - 1:012x}", "127.255.250.250"),
        (f"{SLOTS:012x}", "127.10.1.1"),
    ],
)
def test_an_address_is_the_macs_place_skipping_0_and_255(mac: str, address: str) -> None:
    assert phone_address(mac) == address


def test_two_runs_with_other_macs_use_other_addresses() -> None:
    """A server holds an address's MAC for 120 s: a second run of other phones on the same
    addresses made them all ambiguous (no site license). Runs keep each MAC on its address."""
    first = assign_addresses([generated_mac(i) for i in range(500)])
    again = assign_addresses([generated_mac(i) for i in range(500)])
    others = assign_addresses([f"0004f2{i:06x}" for i in range(500)])
    assert first == again
    assert not set(first) & set(others)
    assert first[:2] == [phone_address(generated_mac(0)), phone_address(generated_mac(1))]


def test_macs_on_one_address_are_told_apart_in_the_fleets_order() -> None:
    macs = ["000000000005", f"{SLOTS + 5:012x}", "000000000006"]
    assert assign_addresses(macs) == ["127.10.1.6", "127.10.1.7", "127.10.1.8"]


@given(st.lists(st.integers(0, 2**48 - 1), max_size=300, unique=True))
def test_every_phone_of_a_fleet_has_an_address_of_its_own(values: list[int]) -> None:
    addresses = assign_addresses([f"{v:012x}" for v in values])
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        parsed = ipaddress.IPv4Address(address)
        assert parsed.is_loopback
        octets = address.split(".")
        assert int(octets[1]) >= 10
        assert all(0 < int(o) < 255 for o in octets[2:])


@pytest.mark.parametrize("mac", [generated_mac(0), generated_mac(59_999), probe_mac(0)])
def test_made_up_macs_are_locally_administered(mac: str) -> None:
    """0004f2… is Polycom's range: a made-up MAC there was a real phone's in the inventory."""
    first = int(mac[:2], 16)
    assert first & 0b10  # locally administered (IEEE 802)
    assert not first & 0b01  # unicast
    assert len(mac) == 12


def test_the_emulators_and_the_probes_macs_do_not_meet() -> None:
    assert not {generated_mac(i) for i in range(1000)} & {probe_mac(i) for i in range(1000)}
