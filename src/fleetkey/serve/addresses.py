"""Which phone an address stands for: the MAC it named within the current boot (spec §6).

A phone names itself at the start of every boot and every few requests after (``<mac>.cfg``,
``<mac>-phone.cfg``, ``<mac>-license.cfg``, uploads of ``<mac>-app.log``: domain.md §5.1), but
asks for the shared files (``000000000000.cfg``, ``000000000000-license.cfg``, the firmware)
without its MAC when its User-Agent carries no ``(SN:…)`` (the default) and always over TFTP.
So the server remembers, per address, the MAC named from it last and when; a request that names
no phone is taken to come from that MAC while the naming is recent (``hold_s``).

Behind NAT several phones share an address. Two MACs named from one address within ``hold_s``
of each other make it ambiguous: requests from it then name nobody (records say so) until only
one of them has named itself within ``hold_s`` again. Nothing is guessed.

Times are the caller's monotonic seconds; the table is bounded (``limit`` addresses; the
oldest half is forgotten beyond) and ``forget_older`` drops what no boot can still use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

HOLD_S: Final = 120.0  # a boot's requests come seconds apart; a firmware download may take more
LIMIT: Final = 1_000_000  # addresses remembered (~150 bytes each)


@dataclass(frozen=True, slots=True)
class Sharing:
    """An address several phones used within the hold time: who they were."""

    macs: frozenset[str]


class Addresses:
    """address → the MAC it named last (and when), or the MACs sharing it."""

    def __init__(self, hold_s: float = HOLD_S, limit: int = LIMIT) -> None:
        self.hold_s = hold_s
        self._limit = limit
        self._named: dict[str, tuple[str, float]] = {}  # address → (mac, when named)
        self._shared: dict[str, dict[str, float]] = {}  # address → {mac: when named}

    def __len__(self) -> int:
        return len(self._named)

    def named(self, address: str, mac: str, now: float) -> None:
        """``mac`` named itself in a request from ``address`` at ``now``."""
        last = self._named.get(address)
        self._named[address] = (mac, now)
        if last is None:
            if len(self._named) > self._limit:
                self._shrink()
            return
        if last[0] == mac and address not in self._shared:
            return  # the common case: the same phone again
        if address in self._shared:
            self._shared[address][mac] = now
        elif now - last[1] <= self.hold_s:
            self._shared[address] = {last[0]: last[1], mac: now}

    def who(self, address: str, now: float) -> str | Sharing | None:
        """The MAC ``address`` stands for now, the phones sharing it, or None (no recent MAC)."""
        last = self._named.get(address)
        if last is None:
            return None
        shared = self._shared.get(address)
        if shared is None:
            return last[0] if now - last[1] <= self.hold_s else None
        recent = {mac for mac, at in shared.items() if now - at <= self.hold_s}
        if len(recent) > 1:
            return Sharing(frozenset(recent))
        del self._shared[address]  # back to one phone (or none) within the hold time
        if not recent:
            return None
        mac = recent.pop()
        self._named[address] = (mac, shared[mac])
        return mac

    def forget_older(self, now: float) -> int:
        """Drop addresses not named within the hold time; how many were dropped."""
        cutoff = now - self.hold_s
        stale = [address for address, (_, at) in self._named.items() if at < cutoff]
        for address in stale:
            del self._named[address]
            self._shared.pop(address, None)
        return len(stale)

    def _shrink(self) -> None:
        oldest = sorted(self._named.items(), key=lambda item: item[1][1])
        for address, _ in oldest[: len(oldest) // 2]:
            del self._named[address]
            self._shared.pop(address, None)
