"""What one boot costs the server, measured from fetch records (or a profile when too few).

A *boot* is a run of requests from one MAC with no gap over ``BOOT_GAP`` seconds that includes
a license file (R2: every boot fetches both); boots of a phone closer together are one run with
their requests together, and the source says so (``ONE_RUN``). Requests and bytes per boot are
means (the load of N boots is N times the mean; rare firmware downloads count in it), seconds
the 90th percentile of the time from a boot's first to its last request (to the millisecond), so
the planner's "boots finish inside the window" holds for nine boots in ten even before the
slot's own slack.

What is measured is a license boot, the one rollouts and license-lapse storms cause: the phone
keeps its firmware image. A boot that downloaded one (an answer of ``FIRMWARE_BYTES`` or more:
after a firmware change, or a ``capacity measure`` firmware-change storm run against this
server) costs another order of magnitude and is left out, and the source says how many were.

The measure goes through a :class:`BootTally`: the boots of some records summed (counts, sums,
and each boot's length), which adds up exactly. The store keeps one a day (``store/bootdays.py``)
so the alerts and the planner read a few rows, not the newest 200,000 records; a tally of the
same records gives the same cost whichever way it was summed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from fleetkey.core.rollout.plan import BootCost

BOOT_GAP: Final = 120.0
# what "N boots" counts, said with it: a trial rebooting phones minutes apart merges their boots
ONE_RUN: Final = f"a phone's boots under {BOOT_GAP:.0f} s apart count as one"
MIN_BOOTS: Final = 20
FIRMWARE_BYTES: Final = 1024 * 1024  # an answer this large is a firmware image (~150 MB, §5.1)
DEFAULT: Final = BootCost(  # domain.md §5.1/§6: ~8-12 small files per boot, no firmware
    requests=12, bytes=60_000, seconds=120, source="default profile (domain.md §6)"
)
_P90: Final = 0.9


@dataclass(slots=True)
class BootTally:
    """Boots summed: how many, their requests and bytes, and how many lasted each number of
    milliseconds (the lengths, so a percentile of several tallies is exact); ``firmware``: the
    boots left out because they downloaded a firmware image."""

    boots: int = 0
    requests: int = 0
    bytes: int = 0
    spans_ms: Counter[int] = field(default_factory=Counter)
    firmware: int = 0

    def add(self, other: BootTally) -> None:
        self.firmware += other.firmware
        self.boots += other.boots
        self.requests += other.requests
        self.bytes += other.bytes
        self.spans_ms.update(other.spans_ms)

    def p90_ms(self) -> int:
        """The 90th percentile of the lengths (the rank ``int(0.9 * (boots - 1))`` in order)."""
        rank = int(_P90 * (self.boots - 1))
        seen = 0
        for span, count in sorted(self.spans_ms.items()):
            seen += count
            if seen > rank:
                return span
        raise ValueError("an empty tally has no percentile")


def tally(requests: Iterable[tuple[str, datetime, str, int]]) -> BootTally:
    """The boots of (mac, at, path, bytes) rows in (mac, at) order."""
    found = BootTally()
    current: list[tuple[datetime, str, int]] = []
    last_mac = None

    def close() -> None:
        if current and any(path.endswith("-license.cfg") for _, path, _ in current):
            if any(size >= FIRMWARE_BYTES for _, _, size in current):
                found.firmware += 1
                current.clear()
                return
            span = (current[-1][0] - current[0][0]).total_seconds()
            found.boots += 1
            found.requests += len(current)
            found.bytes += sum(size for _, _, size in current)
            found.spans_ms[round(span * 1000)] += 1
        current.clear()

    for mac, at, path, size in requests:
        if mac != last_mac or (current and (at - current[-1][0]).total_seconds() > BOOT_GAP):
            close()
        last_mac = mac
        current.append((at, path, size))
    close()
    return found


def cost_of(found: BootTally, where: str, fallback: BootCost = DEFAULT) -> BootCost:
    """The cost of a boot from a tally (``where``: of what records, for the source);
    ``fallback`` with fewer than 20 boots."""
    if found.boots < MIN_BOOTS:
        return fallback
    return BootCost(
        requests=found.requests / found.boots,
        bytes=found.bytes / found.boots,
        seconds=max(found.p90_ms() / 1000, 1.0),
        source=f"measured from {found.boots:,} boots in {where}"
        + (f" ({found.firmware:,} that downloaded firmware left out)" if found.firmware else "")
        + f"; {ONE_RUN}",
    )


def measure(
    requests: Iterable[tuple[str, datetime, str, int]], fallback: BootCost = DEFAULT
) -> BootCost:
    """From (mac, at, path, bytes) in (mac, at) order; ``fallback`` with fewer than 20 boots."""
    return cost_of(tally(requests), "the fetch records", fallback)
