"""A virtual clock for emulated phones: days pass in minutes.

``now`` is the virtual moment; waiting for a virtual moment sleeps the real time it takes at
``speed`` virtual seconds per real second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from fleetkey.errors import InputError


class VirtualClock:
    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if start.tzinfo is None:
            raise InputError("the virtual clock needs a start with a time zone (e.g. ...Z)")
        if speed <= 0:
            raise InputError(f"virtual clock speed {speed} must be above 0", field="speed")
        self.start = start
        self.speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(self._monotonic() - self._origin) * self.speed)

    def real_s_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self.speed)

    async def sleep_until(self, moment: datetime) -> None:
        await asyncio.sleep(self.real_s_until(moment))
