"""Measured server capacities: what ``fleetkey capacity measure`` found, newest last."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.store.records import utc
from fleetkey.store.schema import CapacityRow


@dataclass(frozen=True, slots=True)
class Measurement:
    at: datetime
    target: str
    requests_per_s: float
    details: dict[str, Any]


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


def latest(session: Session) -> Measurement | None:
    row = session.scalars(select(CapacityRow).order_by(CapacityRow.id.desc()).limit(1)).first()
    return _measurement(row) if row else None


def _measurement(row: CapacityRow) -> Measurement:
    return Measurement(utc(row.at), row.target, row.requests_per_s, json.loads(row.details))
