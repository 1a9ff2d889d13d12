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


def test_phones_of_one_site_sharing_an_address_say_their_site() -> None:
    table = Addresses(hold_s=120)
    for n in range(5):
        table.named("10.0.0.1", f"0004f20000{n:02x}", float(n), "100000000001")
    found = table.who("10.0.0.1", 10.0)
    assert isinstance(found, Sharing)
    assert found.site == "100000000001"
    table.named("10.0.0.1", "0004f2000099", 11.0, "100000000002")
    mixed = table.who("10.0.0.1", 12.0)
    assert isinstance(mixed, Sharing)
    assert (len(mixed.macs), mixed.site) == (6, None)
    assert table.who("10.0.0.1", 126.0) == "0004f2000099"  # the others fell silent


def test_the_answer_for_a_shared_address_is_made_again_only_when_who_shares_it_changes() -> None:
    table = Addresses(hold_s=120)
    macs = [f"0004f2{n:06x}" for n in range(2000)]
    for n, mac in enumerate(macs):
        table.named("10.0.0.1", mac, n / 100, "100000000001")
    first = table.who("10.0.0.1", 30.0)
    assert isinstance(first, Sharing)
    assert len(first.macs) == 2000
    table.named("10.0.0.1", macs[7], 31.0, "100000000001")  # a phone of the set again
    assert table.who("10.0.0.1", 31.0) is first  # not rebuilt: O(1) per request
    later = table.who("10.0.0.1", 120.0 + 10.0)  # those named before t=10 s fell silent
    assert isinstance(later, Sharing)
    assert later is not first
    assert len(later.macs) == 2000 - 1000 + 1  # macs 1000.. and macs[7], named again at 31 s
