"""Measured server capacities: what ``fleetkey capacity measure`` found, newest last.

Each measurement says the storm it measured (``details["storm"]``): ``license-lapse`` (boots
that download no firmware) or ``firmware-change`` (every boot downloads the image). Those
recorded before storms were told apart downloaded no firmware: they count as license-lapse.
Each says the protocol it measured by its target's scheme (``http``, ``ftp``; ``capacity
measure`` cannot probe TFTP).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.store.records import utc
from fleetkey.store.schema import CapacityRow

LICENSE_LAPSE: Final = "license-lapse"
_LOOK_BACK: Final = 1000  # measurements searched for one of a storm


@dataclass(frozen=True, slots=True)
class Measurement:
    at: datetime
    target: str
    requests_per_s: float
    details: dict[str, Any]

    @property
    def storm(self) -> str:
        return str(self.details.get("storm", LICENSE_LAPSE))

    @property
    def protocol(self) -> str:
        """The protocol the probe booted over: the target's scheme (``http``, ``ftp``)."""
        return self.target.partition("://")[0].lower()


def record(
    session: Session, clock: Clock, target: str, requests_per_s: float, details: dict[str, Any]
) -> Measurement:
    row = CapacityRow(
        at=utc(clock.now()),
        target=target,
        requests_per_s=requests_per_s,
        details=json.dumps(details, sort_keys=True),
    )
    session.add(row)
    session.flush()
    return _measurement(row)


def latest(
    session: Session, storm: str | None = None, protocol: str | None = None
) -> Measurement | None:
    """The newest measurement (of ``storm``, over ``protocol``, when given)."""
    query = select(CapacityRow).order_by(CapacityRow.id.desc())
    every = storm is None and protocol is None
    for row in session.scalars(query.limit(1 if every else _LOOK_BACK)):
        found = _measurement(row)
        if storm not in (None, found.storm) or protocol not in (None, found.protocol):
            continue
        return found
    return None


def _measurement(row: CapacityRow) -> Measurement:
    return Measurement(utc(row.at), row.target, row.requests_per_s, json.loads(row.details))
