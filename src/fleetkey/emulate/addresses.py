"""Where emulated phones live: a loopback address of its own for each, derived from its MAC,
and the MACs the emulator makes up.

A server knows an untagged phone by the MAC its address named earlier in the boot, and holds
that for a while (``serve.addresses``: 120 s); an address several MACs used within that time is
ambiguous, and its phones get no site license (spec §6). Addresses handed out by a phone's
place in the fleet (127.10.1.1 for the first, …) made a second run within two minutes, with
other MACs, ambiguous everywhere. An address derived from the MAC is the same at every run
for the same phone and differs between phones: ``phone_address`` maps a MAC's 48 bits, modulo
``SLOTS``, onto 127.10.1.1 … 127.255.250.250 (never a .0 or a .255 in the last two octets, 250
per value of the third, 62,500 per value of the second); MACs counted up in one range (a
vendor's, or the emulator's own) get consecutive addresses. Two MACs of one fleet that land on
one address (MACs ``SLOTS`` apart) are told apart by ``assign_addresses``: the later one in the
fleet's order takes the next free address, so a fleet keeps its addresses from run to run.

The emulator's own MACs are locally administered (``02…``: bit 1 of the first octet, IEEE 802
§8.2.2), so they never stand for a vendor's phone, a real one in the inventory included:
``generated_mac`` for ``fleetkey emulate``, ``probe_mac`` for ``capacity measure``, in ranges
that do not meet below a million phones.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Final

from fleetkey.errors import InputError

PER_THIRD: Final = 250  # .1 … .250 in the last octet
PER_SECOND: Final = PER_THIRD * PER_THIRD  # 62,500
SLOTS: Final = (256 - 10) * PER_SECOND  # 127.10.*.* … 127.255.*.*: 15,375,000 addresses
GENERATED_FROM: Final = 0x100000  # fleetkey emulate's first made-up MAC: 020000100000


def phone_address(mac: str) -> str:
    """The loopback address of the phone with ``mac`` (12 hex digits)."""
    return _address(int(mac, 16) % SLOTS)


def assign_addresses(macs: Sequence[str]) -> list[str]:
    """Each phone's address, in order: ``phone_address``, or the next free one when an
    earlier phone of the fleet holds it."""
    taken: set[int] = set()
    found = []
    for mac in macs:
        slot = int(mac, 16) % SLOTS
        while slot in taken:
            slot = (slot + 1) % SLOTS
        taken.add(slot)
        found.append(_address(slot))
    return found


def generated_mac(index: int) -> str:
    """The ``index``-th MAC ``fleetkey emulate`` makes up: 020000100000, 020000100001, …"""
    return f"02{GENERATED_FROM + index:010x}"


def probe_mac(index: int) -> str:
    """The ``index``-th boot's MAC of ``capacity measure``: 020000000000, 020000000001, …"""
    return f"02{index:010x}"


def require_loopback(host: str, option: str = "--server") -> None:
    """Raise InputError unless ``host`` is on this machine's loopback: phones on loopback
    addresses cannot reach another host (the kernel refuses the connection with EINVAL, which
    reached the administrator as "[Errno 22] Invalid argument")."""
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None, socket.AF_INET)}
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(
            f"cannot resolve {host!r} to an IPv4 address",
            field=option.lstrip("-"),
            hint="run the emulator on the server's machine against 127.0.0.1",
        ) from exc
    remote = sorted(a for a in found if not ipaddress.IPv4Address(a).is_loopback)
    if remote:
        named = host if remote == [host] else f"{host} ({', '.join(remote)})"
        raise InputError(
            f"{named} is not a loopback address: the emulated phones live on loopback "
            "addresses (127.10.0.0 and up) and reach only a server on this machine",
            field=option.lstrip("-"),
            hint="run the emulator on the server's machine against 127.0.0.1 (fleetkey serve "
            "--http 127.0.0.1:PORT, or its 0.0.0.0 listener)",
        )


def _address(slot: int) -> str:
    second, rest = divmod(slot, PER_SECOND)
    third, fourth = divmod(rest, PER_THIRD)
    return f"127.{10 + second}.{third + 1}.{fourth + 1}"
