"""``fleetkey db check``: the per-phone state (``store/phonestate.py``) against the raw records.

The writer keeps the state by upserts; this computes it again from every raw fetch record and
names each phone where the two differ. An entry the records no longer show is right only when
its records aged out: it must be older than the oldest record kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, select

from fleetkey.store.phonestate import (
    Newest,
    file_values,
    from_records,
    seen_values,
)
from fleetkey.store.records import utc
from fleetkey.store.schema import PhoneFileRow, PhoneSeenRow

SHOWN: Final = 1000  # differences a check lists (all are counted)


@dataclass(frozen=True, slots=True)
class Difference:
    """Where the state and the raw records disagree, for one phone."""

    mac: str
    what: str  # "seen", or "<file name> <kind>"
    expected: dict[str, Any] | None  # what the raw records say (None: nothing)
    stored: dict[str, Any] | None  # what the state holds (None: nothing)

    def to_json(self) -> dict[str, Any]:
        return {
            "mac": self.mac,
            "what": self.what,
            "expected": _json(self.expected),
            "stored": _json(self.stored),
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    phones: int  # phones in the state
    entries: int  # state rows compared
    oldest_record: datetime | None
    differences: Sequence[Difference]

    @property
    def differing_phones(self) -> list[str]:
        return sorted({d.mac for d in self.differences})


def _json(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


def check(connection: Connection) -> CheckResult:
    """Compare the stored state with the state the raw records say."""
    newest, oldest = from_records(connection)
    expected = _expected(newest)
    stored = _stored(connection)
    differences = []
    for key in sorted(expected.keys() | stored.keys()):
        want, have = expected.get(key), stored.get(key)
        if want == have:
            continue
        if want is None and have is not None and oldest is not None and have["at"] < oldest:
            continue  # its records aged out; the state keeps the last one
        if want is None and have is not None and oldest is None:
            continue  # every record aged out
        differences.append(Difference(key[0], key[1], want, have))
    seen_count = sum(1 for key in stored if key[1] == "seen")
    return CheckResult(seen_count, len(stored), oldest, differences)


def _expected(newest: Newest) -> dict[tuple[str, str], dict[str, Any]]:
    found = {(mac, "seen"): _comparable(seen_values(row)) for mac, row in newest.seen.items()}
    for key, row in newest.files.items():
        found[key[0], f"{key[1]} {key[2]}"] = _comparable(file_values(key, row))
    return found


def _stored(connection: Connection) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for row in connection.execute(select(PhoneSeenRow.__table__)).mappings():
        found[row["mac"], "seen"] = _comparable(dict(row))
    for row in connection.execute(select(PhoneFileRow.__table__)).mappings():
        found[row["mac"], f"{row['file_name']} {row['kind']}"] = _comparable(dict(row))
    return found


def _comparable(values: dict[str, Any]) -> dict[str, Any]:
    """The values a state row is compared on (its key is in the dictionary's key)."""
    kept = {k: v for k, v in values.items() if k not in ("mac", "file_name", "kind")}
    kept["at"] = utc(kept["at"])
    return kept
