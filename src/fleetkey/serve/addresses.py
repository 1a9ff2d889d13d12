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
half named longest ago is forgotten beyond) and ``forget_older`` drops what no boot can still
use. Every operation is O(1) amortized, however many phones share an address: dicts kept in
the order of naming are pruned from the front, and the answer for a shared address is made
again only when who shares it changes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final

HOLD_S: Final = 120.0  # a boot's requests come seconds apart; a firmware download may take more
LIMIT: Final = 1_000_000  # addresses remembered (~150 bytes each)


@dataclass(frozen=True, slots=True)
class Sharing:
    """An address several phones used within the hold time: who they were, and the site
    the inventory's phones among them all belong to if one (as the caller said when each was
    named; a phone not in the inventory, a new one, belongs to none and changes nothing)."""

    macs: frozenset[str]
    site: str | None = None


class _Shared:
    """The phones named from one address within the hold time, oldest naming first."""

    __slots__ = ("answer", "recent", "sites")

    def __init__(self) -> None:
        self.recent: dict[str, tuple[float, str | None]] = {}  # mac → (when named, site)
        self.sites: dict[str | None, int] = {}  # site → phones of it in ``recent``
        self.answer: Sharing | None = None  # made when asked, dropped when ``recent`` changes

    def add(self, mac: str, now: float, site: str | None) -> None:
        old = self.recent.pop(mac, None)  # popped and put back: the dict stays in naming order
        self.recent[mac] = (now, site)
        if old is not None and old[1] == site:
            return  # the same phone again: who shares the address is unchanged
        if old is not None:
            self._count(old[1], -1)
        self._count(site, 1)
        self.answer = None

    def prune(self, cutoff: float) -> None:
        stale = list(itertools.takewhile(lambda item: item[1][0] < cutoff, self.recent.items()))
        for mac, (_, site) in stale:
            del self.recent[mac]
            self._count(site, -1)
        if stale:
            self.answer = None

    def sharing(self) -> Sharing:
        if self.answer is None:  # phones not in the inventory (site None) belong to no site
            known = [site for site in self.sites if site is not None]
            site = known[0] if len(known) == 1 else None
            self.answer = Sharing(frozenset(self.recent), site)
        return self.answer

    def _count(self, site: str | None, step: int) -> None:
        left = self.sites.get(site, 0) + step
        if left:
            self.sites[site] = left
        else:
            self.sites.pop(site, None)


class Addresses:
    """address → the MAC it named last (and when), or the MACs sharing it."""

    def __init__(self, hold_s: float = HOLD_S, limit: int = LIMIT) -> None:
        self.hold_s = hold_s
        self._limit = limit
        # address → (mac, when named, its site), in the order of naming (oldest first)
        self._named: dict[str, tuple[str, float, str | None]] = {}
        self._shared: dict[str, _Shared] = {}

    def __len__(self) -> int:
        return len(self._named)

    def named(self, address: str, mac: str, now: float, site: str | None = None) -> None:
        """``mac`` (of ``site``, if known) named itself in a request from ``address``."""
        last = self._named.pop(address, None)
        self._named[address] = (mac, now, site)
        if last is None:
            if len(self._named) > self._limit:
                self._shrink()
            return
        shared = self._shared.get(address)
        if shared is None:
            if last[0] == mac or now - last[1] > self.hold_s:
                return  # the common case: the same phone again (or a new one, the last gone)
            shared = self._shared[address] = _Shared()
            shared.add(last[0], last[1], last[2])
        shared.add(mac, now, site)

    def who(self, address: str, now: float) -> str | Sharing | None:
        """The MAC ``address`` stands for now, the phones sharing it, or None (no recent MAC)."""
        last = self._named.get(address)
        if last is None:
            return None
        shared = self._shared.get(address)
        if shared is None:
            return last[0] if now - last[1] <= self.hold_s else None
        shared.prune(now - self.hold_s)
        if len(shared.recent) > 1:
            return shared.sharing()
        del self._shared[address]  # back to one phone (or none) within the hold time
        if not shared.recent:
            return None
        mac, (at, site) = next(iter(shared.recent.items()))
        self._named[address] = (mac, at, site)
        return mac

    def forget_older(self, now: float) -> int:
        """Drop addresses not named within the hold time; how many were dropped."""
        cutoff = now - self.hold_s
        stale = [address for address, last in self._named.items() if last[1] < cutoff]
        for address in stale:
            del self._named[address]
            self._shared.pop(address, None)
        return len(stale)

    def _shrink(self) -> None:
        """Forget the half named longest ago: the front of the dict, no sort."""
        oldest = list(itertools.islice(self._named, len(self._named) // 2))
        for address in oldest:
            del self._named[address]
            self._shared.pop(address, None)
