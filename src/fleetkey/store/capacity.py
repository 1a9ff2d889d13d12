"""Measured server capacities: what ``fleetkey capacity measure`` found, newest last.

Each measurement says the storm it measured (``details["storm"]``): ``license-lapse`` (boots
that download no firmware) or ``firmware-change`` (every boot downloads the image). Those
recorded before storms were told apart downloaded no firmware: they count as license-lapse.
Each says the protocol it measured by its target's scheme (``http``, ``ftp``; ``capacity
measure`` cannot probe TFTP; HTTPS and FTPS are measured as what they carry).

Which measurement phones count on (``choose``: the rollout planner, the alerts' storm
forecasts, `fleetkey simulate --from-store`): the one over the protocol they boot over, by each
phone's newest fetch; over a protocol, the newest license-lapse storm (its reboots download no
firmware), else the newest of any storm; when they boot over several, the lowest of them.
Without one over any of their protocols (TFTP cannot be probed; phones that never fetched boot
over no known one) the newest of any protocol, and the sentence that comes with it says so.
"""

from __future__ import annotations

import json
from collections import Counter
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


MEASURED_OVER: Final = {"https": "http", "ftps": "ftp"}  # what a measurement is over


@dataclass(frozen=True)
class Chosen:
    """A measurement and the words that say why it is the one: ``over …``."""

    measurement: Measurement
    over: str


def booting_over(protocols: Counter[str]) -> Counter[str]:
    """Phones by the protocol their newest fetch came over, as measurements name them."""
    found: Counter[str] = Counter()
    for protocol, phones in protocols.items():
        found[MEASURED_OVER.get(protocol, protocol)] += phones
    return found


def choose(session: Session, booting: Counter[str], phones: int) -> Chosen | None:
    """The capacity ``phones`` phones count on, ``booting`` of them by protocol (measurement
    names, ``booting_over``); None when nothing was measured."""
    chosen = [found for protocol in booting if (found := newest(session, protocol)) is not None]
    if chosen:
        measured = min(chosen, key=lambda m: m.requests_per_s)
        over = (
            f"over {measured.protocol}, as {booting[measured.protocol]:,} of the "
            f"{phones:,} phones boot"
        )
        if len(chosen) > 1:
            over += " (the lowest of the protocols they boot over)"
        missing = [p for p in booting if p not in {m.protocol for m in chosen}]
        if missing:
            over += f"; none over {', '.join(sorted(missing))}, which others boot over"
        return Chosen(measured, over)
    any_protocol = newest(session, None)
    if any_protocol is None:
        return None
    return Chosen(
        any_protocol,
        f"over {any_protocol.protocol}: "
        + (
            f"none was measured over {', '.join(sorted(booting))}, which these phones boot over"
            if booting
            else "no phone of these has fetched yet, so the protocol they boot over is unknown"
        ),
    )


def newest(session: Session, protocol: str | None) -> Measurement | None:
    """The newest license-lapse measurement over ``protocol``, else the newest of any storm."""
    return latest(session, LICENSE_LAPSE, protocol) or latest(session, None, protocol)
