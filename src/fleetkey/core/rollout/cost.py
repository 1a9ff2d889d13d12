"""What one boot costs the server, measured from fetch records (or a profile when too few).

A *boot* is a run of requests from one MAC with no gap over ``BOOT_GAP`` seconds that includes
a license file (R2: every boot fetches both). Requests and bytes per boot are means (the load
of N boots is N times the mean), seconds the 90th percentile of the time from a boot's first to
its last request, so the planner's "boots finish inside the window" holds for nine boots in ten
even before the slot's own slack.

What is measured is a license boot, the one rollouts and license-lapse storms cause: the phone
keeps its firmware image. A boot that downloaded one (an answer of ``FIRMWARE_BYTES`` or more:
after a firmware change, or a ``capacity measure`` firmware-change storm run against this
server) costs another order of magnitude and is left out, and the source says how many were.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from fleetkey.core.rollout.plan import BootCost

BOOT_GAP: Final = 120.0
MIN_BOOTS: Final = 20
FIRMWARE_BYTES: Final = 1024 * 1024  # an answer this large is a firmware image (~150 MB, §5.1)
DEFAULT: Final = BootCost(  # domain.md §5.1/§6: ~8-12 small files per boot, no firmware
    requests=12, bytes=60_000, seconds=120, source="default profile (domain.md §6)"
)


def measure(
    requests: Iterable[tuple[str, datetime, str, int]], fallback: BootCost = DEFAULT
) -> BootCost:
    """From (mac, at, path, bytes) in (mac, at) order; ``fallback`` with fewer than 20 boots."""
    boots: list[tuple[int, int, float]] = []  # (requests, bytes, seconds)
    current: list[tuple[datetime, str, int]] = []
    last_mac = None
    firmware = 0  # boots left out: they downloaded an image

    def close() -> None:
        nonlocal firmware
        if current and any(path.endswith("-license.cfg") for _, path, _ in current):
            if any(size >= FIRMWARE_BYTES for _, _, size in current):
                firmware += 1
            else:
                span = (current[-1][0] - current[0][0]).total_seconds()
                boots.append((len(current), sum(size for _, _, size in current), span))
        current.clear()

    for mac, at, path, size in requests:
        if mac != last_mac or (current and (at - current[-1][0]).total_seconds() > BOOT_GAP):
            close()
        last_mac = mac
        current.append((at, path, size))
    close()
    if len(boots) < MIN_BOOTS:
        return fallback
    spans = sorted(seconds for _, _, seconds in boots)
    return BootCost(
        requests=statistics.fmean(n for n, _, _ in boots),
        bytes=statistics.fmean(size for _, size, _ in boots),
        seconds=max(spans[int(0.9 * (len(spans) - 1))], 1.0),
        source=f"measured from {len(boots):,} boots in the fetch records"
        + (f" ({firmware:,} that downloaded firmware left out)" if firmware else ""),
    )
