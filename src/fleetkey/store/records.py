"""What the store hands out: plain frozen values, no SQLAlchemy objects, and each one's JSON
document (one builder per type, for the CLI's ``--json`` and the admin API alike)."""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from fleetkey.core.features import FeatureCatalog, default_catalog
from fleetkey.core.license import LicenseState, LicenseType
from fleetkey.core.rollout.windows import Window
from fleetkey.core.terms import NEVER, Term, format_term
from fleetkey.core.verdicts import SignatureStatus


class LicenseOrigin(enum.StrEnum):
    ISSUED = "issued"  # signed by this fleetkey
    IMPORTED = "imported"  # read from an existing file (vendor files included)


@dataclass(frozen=True, slots=True)
class Site:
    serial: str
    name: str
    timezone: str
    window: Window  # the maintenance window, local time
    contact: str | None = None

    def __post_init__(self) -> None:
        # Transitional: code in another change in flight (tests/integration/serve/test_view.py,
        # bench/plan.py) still builds Site(serial, name, timezone, "HH:MM", "HH:MM"); remove
        # this once it passes a Window.
        if isinstance(self.window, str):
            object.__setattr__(self, "window", Window.parse(self.window, self.contact))
            object.__setattr__(self, "contact", None)


@dataclass(frozen=True, slots=True)
class Phone:
    mac: str
    site: str
    model: str
    firmware: str | None = None
    prov_user: str | None = None
    has_password: bool = False
    sip_contact: str | None = None
    last_address: str | None = None
    last_user_agent: str | None = None
    last_seen_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredLicense:
    id: int
    serial: str
    type: LicenseType
    options: str
    terms: dict[int, Term]
    expires_on: date | None  # None: never
    signing_key: str | None
    signature: SignatureStatus  # the verdict when the key was recorded
    digest: str
    file_name: str
    origin: LicenseOrigin
    state: LicenseState
    issued_at: datetime
    posted_at: datetime | None
    succeeds_id: int | None


class FetchRecord(NamedTuple):
    """One request a phone made: what it asked for, what it got, how long it took.

    A named tuple rather than a frozen dataclass: servers make one per request, and building
    a frozen dataclass costs 2.7 µs here against 0.4 µs for a tuple.
    """

    path: str
    protocol: str
    status: int
    bytes: int
    duration_ms: float
    at: datetime
    method: str = "GET"
    mac: str | None = None
    digest: str | None = None
    remote_addr: str | None = None
    user_agent: str | None = None
    # how the server knew ``mac``: "agent" (the User-Agent's (SN:)), "name" (the file name),
    # "login", "address" (the MAC the address named within the boot), or "ambiguous" (several
    # phones shared the address, so ``mac`` is None); None when nothing named a phone
    identified_by: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""


def utc(moment: datetime) -> datetime:
    """A datetime read back from any database, as aware UTC (SQLite returns naive ones)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_last_second: tuple[int, str] = (-1, "")  # the second formatted last, and its text


def sqlite_time(at: datetime) -> str:
    """UTC, naive, the storage format of SQLAlchemy's SQLite DATETIME.

    Rows written in bulk mostly come in time order, so the date and time of day are formatted
    once per second (strftime per row cost a writer of a million rows 7 % of its time).
    """
    global _last_second  # a one-entry cache; replaced in one assignment
    if at.tzinfo is not UTC:
        at = utc(at)
    second = math.floor(at.timestamp())
    cached_second, text = _last_second
    if second != cached_second:
        text = at.strftime("%Y-%m-%d %H:%M:%S")
        _last_second = (second, text)
    return f"{text}.{at.microsecond:06d}"


def phone_json(phone: Phone) -> dict[str, Any]:
    """A phone as JSON: what ``phones list|show --json`` print and the admin API answers.

    Built member by member: ``dataclasses.asdict`` deep-copies and cost 13 µs a phone, most of
    the time ``phones list --json`` took for 100,000 (docs/store.md, "Lists").
    """
    return {
        "mac": phone.mac,
        "site": phone.site,
        "model": phone.model,
        "firmware": phone.firmware,
        "prov_user": phone.prov_user,
        "has_password": phone.has_password,
        "sip_contact": phone.sip_contact,
        "last_address": phone.last_address,
        "last_user_agent": phone.last_user_agent,
        "last_seen_at": phone.last_seen_at.isoformat() if phone.last_seen_at else None,
    }


def fetch_json(record: FetchRecord) -> dict[str, Any]:
    """A fetch record as JSON: what ``fetches --json`` prints and the admin API answers."""
    return record._asdict() | {"at": record.at.isoformat()}


def site_json(site: Site) -> dict[str, Any]:
    """A site as JSON: what ``sites list --json`` prints and the admin API answers."""
    return {
        "serial": site.serial,
        "name": site.name,
        "timezone": site.timezone,
        "window_start": f"{site.window.start:%H:%M}",
        "window_end": f"{site.window.end:%H:%M}",
        "contact": site.contact,
    }


def license_json(
    item: StoredLicense, catalog: FeatureCatalog | None = None, today: date | None = None
) -> dict[str, Any]:
    """A stored key as JSON: what ``licenses list|show --json`` print and the admin API answers.

    ``terms`` is keyed by feature name (``slot-N`` for a slot ``catalog`` does not name; the
    shipped catalog when None), ``terms_by_slot`` by slot number as before; ``features`` lists
    each feature with its slot, and with ``today``, its ``days_left`` (null for never; the key's
    own ``days_left`` is that of its latest term).
    """
    names = catalog if catalog is not None else default_catalog()
    ordered = sorted(item.terms.items())
    document = asdict(item)
    document.update(
        type=item.type.value,
        signature=item.signature.value,
        terms={names.label(slot): format_term(term) for slot, term in ordered},
        terms_by_slot={str(slot): format_term(term) for slot, term in ordered},
        features=[
            {"slot": slot, "name": names.label(slot), "expires": format_term(term)}
            | ({} if today is None else {"days_left": days_left(term, today)})
            for slot, term in ordered
        ],
        expires_on=item.expires_on.isoformat() if item.expires_on else None,
        origin=item.origin.value,
        state=item.state.value,
        issued_at=item.issued_at.isoformat(),
        posted_at=item.posted_at.isoformat() if item.posted_at else None,
    )
    if today is not None:
        document["days_left"] = None if item.expires_on is None else (item.expires_on - today).days
    return document


def days_left(term: Term, today: date) -> int | None:
    """Days from ``today`` to the term's last day (0: ends today, below 0: expired); None for
    never."""
    return None if term is NEVER else (term - today).days
