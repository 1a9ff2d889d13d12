"""Tables, as SQLAlchemy 2 typed mappings. Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
# indexes migration 0014 makes per database, on expressions or only on PostgreSQL, which the
# models do not declare (the drift check leaves them out): the dashboard's search by prefix
DIALECT_INDEXES: Final = frozenset(
    {"ix_phones_model_lower", "ix_phones_firmware_lower", "ix_phones_mac_pattern"}
)

NAMING = {  # stable constraint names, so migrations agree on every database
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def epoch_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exact; a naive ``moment`` is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MICROSECOND


class Micros(TypeDecorator[datetime]):
    """A moment as integer microseconds since the epoch on SQLite, timestamptz elsewhere.

    For the fetch-record table, written at tens of thousands of rows a second: SQLAlchemy's
    SQLite DATETIME is 26 characters of text, an integer 8 bytes, which halves the entries of
    the (mac, at) index every record dirties (2 µs less per insert, docs/store.md). Reads give
    aware UTC datetimes, exact to the microsecond; comparisons bind the same way.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Integer())  # SQLite integers are 64-bit
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return epoch_micros(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None or dialect.name != "sqlite":
            return value  # type: ignore[no-any-return]  # the driver's datetime
        return EPOCH + timedelta(microseconds=value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SiteRow(Base):
    __tablename__ = "sites"

    serial: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[str] = mapped_column(String(5))  # HH:MM local
    window_end: Mapped[str] = mapped_column(String(5))
    contact: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PhoneRow(Base):
    __tablename__ = "phones"
    # a site's phones a page at a time, in MAC order (store/pages.py); also every lookup by site;
    # the dashboard's phones by site and last seen, and its search by address (migration 0014)
    __table_args__ = (
        Index("ix_phones_site_serial_mac", "site_serial", "mac"),
        Index("ix_phones_site_serial_seen", "site_serial", "last_seen_at"),
        Index(
            "ix_phones_last_address",
            "last_address",
            postgresql_ops={"last_address": "text_pattern_ops"},
        ),
    )

    mac: Mapped[str] = mapped_column(String(12), primary_key=True)
    site_serial: Mapped[str] = mapped_column(ForeignKey("sites.serial"))
    model: Mapped[str] = mapped_column(String(64))
    firmware: Mapped[str | None] = mapped_column(String(64))
    prov_user: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str | None] = mapped_column(String(200))  # scrypt, for HTTP Basic
    digest_ha1: Mapped[str | None] = mapped_column(String(32))  # MD5(user:realm:pw), RFC 7616
    sip_contact: Mapped[str | None] = mapped_column(String(255))
    last_address: Mapped[str | None] = mapped_column(String(64))
    last_user_agent: Mapped[str | None] = mapped_column(String(255))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LicenseRow(Base):
    __tablename__ = "licenses"
    __table_args__ = (Index("ix_licenses_type_serial_state", "type", "serial", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    serial: Mapped[str] = mapped_column(String(12))
    type: Mapped[str] = mapped_column(String(5))  # Phone | Site
    options: Mapped[str] = mapped_column(String(8))  # hex as written
    terms: Mapped[str] = mapped_column(Text)  # JSON: {"slot": "YYYY-MM-DD" | "never"}
    expires_on: Mapped[date | None] = mapped_column(Date, index=True)  # None: never
    signing_key: Mapped[str | None] = mapped_column(String(64))
    # valid | invalid | unverifiable | operator (trusted by an operator: store/registry.py)
    signature: Mapped[str] = mapped_column(String(12))
    digest: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the file bytes
    content: Mapped[bytes] = mapped_column(LargeBinary)  # the license file, as served
    file_name: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(10))  # issued | imported
    state: Mapped[str] = mapped_column(String(10))  # issued | posted | superseded | revoked
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    posted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    succeeds_id: Mapped[int | None] = mapped_column(ForeignKey("licenses.id"))


class FetchRow(Base):
    __tablename__ = "fetches"
    # a phone's records, found day by day (store/fetches.py): a batch's entries all go into
    # today's part of the index, so what a record costs does not grow with the table, as it
    # did on (mac, at), where each record dirtied a page anywhere in the index (migration 0013)
    __table_args__ = (Index("ix_fetches_day_mac", "day", "mac"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(Micros(), index=True)
    mac: Mapped[str | None] = mapped_column(String(12))
    # the path and the User-Agent are kept once each in fetch_texts (store/texts.py): the
    # User-Agent was ~60 bytes of every record, the path ~18 (migration 0017)
    path_id: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(8))  # http | https | tftp
    method: Mapped[str] = mapped_column(String(8))
    status: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str | None] = mapped_column(String(64))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[int | None] = mapped_column(Integer)  # fetch_texts, NULL: no User-Agent
    duration_ms: Mapped[float] = mapped_column(Float)
    # how the server knew the phone: agent, name, login, address, ambiguous; NULL: nothing said
    identified_by: Mapped[str | None] = mapped_column(String(9))
    day: Mapped[int | None] = mapped_column(Integer)  # UTC days since the epoch, of ``at``


class PhoneSeenRow(Base):
    """A phone's newest fetch record, kept by the writer in the batch's transaction
    (store/phonestate.py): what the fleet is now, without reading the history."""

    __tablename__ = "phone_seen"

    mac: Mapped[str] = mapped_column(String(12), primary_key=True)
    at: Mapped[datetime] = mapped_column(Micros())
    address: Mapped[str | None] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(8))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    firmware: Mapped[str | None] = mapped_column(String(64))  # from the User-Agent, if a phone's


class PhoneFileRow(Base):
    """A phone's newest request for a license file (``kind`` request) and its newest answer
    that served a version of it (``kind`` served: status under 400 with a digest)."""

    __tablename__ = "phone_files"
    # who was served a version: the dashboard's count of phones that fetched their site's
    # posted license reads the rows of one digest in MAC order (migration 0014)
    __table_args__ = (Index("ix_phone_files_digest", "digest", "file_name", "kind", "mac"),)

    mac: Mapped[str] = mapped_column(String(12), primary_key=True)
    file_name: Mapped[str] = mapped_column(String(64), primary_key=True)  # lowercase, no dirs
    kind: Mapped[str] = mapped_column(String(7), primary_key=True)  # request | served
    at: Mapped[datetime] = mapped_column(Micros())
    path: Mapped[str] = mapped_column(String(1024))
    protocol: Mapped[str] = mapped_column(String(8))
    status: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str | None] = mapped_column(String(64))


class FetchDayRow(Base):
    """A day (UTC) of one site's fetch records, rolled up before the raw records age out
    (store/retention.py) and kept for ever. Site ``-``: records of no phone in the inventory."""

    __tablename__ = "fetch_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    site_serial: Mapped[str] = mapped_column(String(12), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    by_answer: Mapped[str] = mapped_column(Text)  # JSON {"<protocol> <status>": requests}
    bytes: Mapped[int] = mapped_column(BigInteger)
    boots: Mapped[int] = mapped_column(BigInteger)  # requests for 000000000000-license.cfg (R2)
    phones: Mapped[int] = mapped_column(Integer)  # distinct MACs
    p50_ms: Mapped[float] = mapped_column(Float)
    p95_ms: Mapped[float] = mapped_column(Float)
    p99_ms: Mapped[float] = mapped_column(Float)


class FetchBatchRow(Base):
    """A batch of fetch records a writer committed (so a retried batch is never written twice)."""

    __tablename__ = "fetch_batches"

    writer: Mapped[str] = mapped_column(String(80), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    records: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """One row: the last sequence number and hash. Locking it serializes appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class RolloutRow(Base):
    """A planned rollout of one posted license: its parameters and its state."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id"), index=True)
    state: Mapped[str] = mapped_column(String(10))  # planned|running|paused|cancelled|done
    reboot: Mapped[bool] = mapped_column(Boolean)
    capacity: Mapped[float] = mapped_column(Float)  # requests/s
    headroom: Mapped[float] = mapped_column(Float)
    slot_seconds: Mapped[int] = mapped_column(Integer)
    boot_requests: Mapped[float] = mapped_column(Float)
    boot_seconds: Mapped[float] = mapped_column(Float)
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    explanation: Mapped[str] = mapped_column(Text)  # JSON list of lines
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the shared pace: check-syncs are started up to this moment (all executors together)
    paced_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # rollout run --now: every executor ignores the sites' windows from then until a pause or end
    windows_ignored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RolloutTargetRow(Base):
    """One phone of a rollout: when to notify it, and how far it got."""

    __tablename__ = "rollout_targets"
    __table_args__ = (Index("ix_rollout_targets_due", "rollout_id", "state", "notify_at"),)

    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), primary_key=True)
    mac: Mapped[str] = mapped_column(String(12), primary_key=True)
    site_serial: Mapped[str] = mapped_column(String(12))
    wave: Mapped[int] = mapped_column(Integer)
    notify_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(10))  # pending|notified|confirmed|failed
    attempts: Mapped[int] = mapped_column(Integer)
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sip_status: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(255))
    worker: Mapped[str | None] = mapped_column(String(64))


class AlertRow(Base):
    """One alert, deduplicated by its key; resolved when its condition no longer holds."""

    __tablename__ = "alerts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))  # info | warning | critical
    subject: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text)  # canonical JSON
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # silenced by an operator (``fleetkey alerts ack``): since when, by whom, until when
    # (NULL: until it resolves)
    acked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acked_by: Mapped[str | None] = mapped_column(String(100))
    acked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryRow(Base):
    """One alert event for one channel (a webhook URL or an e-mail address), until sent."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_state_next_at", "state", "next_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_key: Mapped[str] = mapped_column(ForeignKey("alerts.key"))
    event: Mapped[str] = mapped_column(String(10))  # fired | resolved
    channel: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(8))  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CapacityRow(Base):
    """A measured server capacity (``fleetkey capacity measure``)."""

    __tablename__ = "capacity_measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    target: Mapped[str] = mapped_column(String(255))
    requests_per_s: Mapped[float] = mapped_column(Float)
    details: Mapped[str] = mapped_column(Text)  # canonical JSON


class AuditRowStateRow(Base):
    """The newest audited state of each row of licenses, sites and phones (store/rowstate.py):
    the digest of the row's covered columns and the event that last changed it."""

    __tablename__ = "audit_rows"

    table_name: Mapped[str] = mapped_column(String(8), primary_key=True)  # licenses|sites|phones
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # the row's key, as text
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the covered columns
    seq: Mapped[int] = mapped_column(Integer)


class AuditRowSumRow(Base):
    """One row: the sum of the ``audit_rows`` entries' 4096-bit hashes, for the next append.
    Not trusted: ``audit verify`` recomputes it; the chain holds its SHA-256."""

    __tablename__ = "audit_rows_sum"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    total: Mapped[str] = mapped_column(Text)  # 1024 hex digits


class DashboardSecretRow(Base):
    """A secret the dashboard's servers share (``session``: the key its session cookies are
    signed with), made once by whichever server needs it first (store/dashboard.py)."""

    __tablename__ = "dashboard_secrets"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))  # hex
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DashboardSignOutRow(Base):
    """A dashboard session signed out before it expired: its cookie, wherever it was copied,
    is refused until then; the row goes once the session would have expired anyway."""

    __tablename__ = "dashboard_signouts"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# the fetch history's own tables, in a module of their own (this one had reached 400 lines);
# imported here so that every table is in Base.metadata once this module is
from fleetkey.store.historytables import BootDayRow, FetchTextRow  # noqa: E402

__all__ = ["BootDayRow", "FetchTextRow"]
