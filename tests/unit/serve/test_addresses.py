"""Which phone an address stands for: the MAC it named within the hold time, never a guess."""

from __future__ import annotations

from fleetkey.serve.addresses import Addresses, Sharing

A, B = "0004f2000001", "0004f2000002"


def test_an_address_stands_for_the_mac_it_named_within_the_hold_time() -> None:
    table = Addresses(hold_s=120)
    table.named("10.0.0.1", A, 0.0)
    assert table.who("10.0.0.1", 120.0) == A
    assert table.who("10.0.0.1", 120.5) is None
    assert table.who("10.0.0.2", 1.0) is None


def test_naming_again_keeps_the_address_fresh() -> None:
    table = Addresses(hold_s=120)
    table.named("10.0.0.1", A, 0.0)
    table.named("10.0.0.1", A, 100.0)
    assert table.who("10.0.0.1", 219.0) == A


def test_two_macs_within_the_hold_time_make_the_address_ambiguous() -> None:
    table = Addresses(hold_s=120)
    table.named("10.0.0.1", A, 0.0)
    table.named("10.0.0.1", B, 60.0)
    assert table.who("10.0.0.1", 61.0) == Sharing(frozenset({A, B}))


def test_it_names_one_phone_again_when_the_other_fell_silent() -> None:
    table = Addresses(hold_s=120)
    table.named("10.0.0.1", A, 0.0)
    table.named("10.0.0.1", B, 60.0)
    table.named("10.0.0.1", B, 150.0)
    assert table.who("10.0.0.1", 150.0) == B  # A last named itself 150 s ago
    assert table.who("10.0.0.1", 300.0) is None


def test_a_new_phone_after_the_hold_time_is_not_ambiguous() -> None:
    table = Addresses(hold_s=120)
    table.named("10.0.0.1", A, 0.0)
    table.named("10.0.0.1", B, 500.0)  # an address reused by DHCP, or the next boot behind NAT
    assert table.who("10.0.0.1", 501.0) == B


def test_forgetting_drops_only_what_no_boot_can_use() -> None:
    table = Addresses(hold_s=120)
    table.named("10.0.0.1", A, 0.0)
    table.named("10.0.0.2", B, 100.0)
    assert table.forget_older(150.0) == 1
    assert len(table) == 1
    assert table.who("10.0.0.2", 150.0) == B


def test_the_table_is_bounded() -> None:
    table = Addresses(hold_s=120, limit=100)
    for n in range(1000):
        table.named(f"10.0.{n // 250}.{n % 250}", A, float(n))
    assert len(table) <= 101
    assert table.who("10.0.3.249", 999.0) == A  # the newest are kept
