"""Where emulated phones live: one loopback address each, in a documented order."""

from __future__ import annotations

import pytest

from fleetkey.emulate.fleet import phone_address


@pytest.mark.parametrize(
    ("index", "address"),
    [
        (0, "127.10.1.1"),
        (1, "127.10.1.2"),
        (249, "127.10.1.250"),
        (250, "127.10.2.1"),
        (62_499, "127.10.250.250"),
        (62_500, "127.11.1.1"),
    ],
)
def test_addresses_skip_0_and_255_and_start_at_127_10_1_1(index: int, address: str) -> None:
    assert phone_address(index) == address
