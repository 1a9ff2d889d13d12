"""What the audit chain says the licenses, sites and phones tables hold (docs/store.md).

Every audited change leaves, for each row it changed, the digest of the row's covered columns
in ``audit_rows`` with the sequence number of its event. The chain holds the state of all those
entries as one value: an incremental multiset hash, the sum modulo 2^4096 of a 4096-bit hash of
each entry (Bellare-Micciancio AdHash; at 4096 bits a generalized-birthday forgery costs about
2^128), of which each row-changing event records the SHA-256. An append reads only the entries
of the rows it changed; ``audit verify`` recomputes the sum from every entry and every digest
from its row, so a row added, changed or deleted outside an audited store function, or an entry
forged to match it, no longer agrees with the chain.

Rows are noted as they are flushed (a session listener) or, for bulk statements, with
:func:`touch`; :func:`apply` runs inside ``audit.append`` under the head lock and reads the
noted rows back from the database, so the digest is of what the database holds. Columns that
servers update at request rates without an audit event (a phone's firmware, last address,
User-Agent and time seen) are not covered. Changing ``COVERED`` needs a migration that takes a
new baseline (as 0007 does).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final
from typing import cast as cast_type

from sqlalchemy import String, Table, cast, delete, event, func, insert, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from fleetkey.store.records import utc
from fleetkey.store.schema import AuditRowStateRow, AuditRowSumRow, LicenseRow, PhoneRow, SiteRow

MODULUS_BITS: Final = 4096
_MASK: Final = (1 << MODULUS_BITS) - 1
_SUM_ID: Final = 1
_CHUNK: Final = 1000  # keys per IN (...)
_NOTED: Final = "fleetkey.rowstate.noted"  # session.info: table -> keys changed, not yet audited

# the columns whose values the chain vouches for, the row's key first (frozen: see above)
COVERED: Final[dict[str, tuple[str, ...]]] = {
    "licenses": (
        "id", "serial", "type", "options", "terms", "expires_on", "signing_key", "signature",
        "digest", "content", "file_name", "origin", "state", "issued_at", "posted_at",
        "succeeds_id",
    ),
    "sites": ("serial", "name", "timezone", "window_start", "window_end", "contact", "created_at"),
    "phones": (
        "mac", "site_serial", "model", "prov_user", "password_hash", "digest_ha1", "sip_contact",
        "created_at",
    ),
}  # fmt: skip
MODELS: Final = {"licenses": LicenseRow, "sites": SiteRow, "phones": PhoneRow}
NOUNS: Final = {"licenses": "license", "sites": "site", "phones": "phone"}  # for messages
_TABLE_OF: Final = {model: table for table, model in MODELS.items()}
_ENTRIES: Final = cast_type(Table, AuditRowStateRow.__table__)
_AS_IS: Final = frozenset({str, int, type(None)})  # JSON as they are


def row_digest(table: str, values: Sequence[Any]) -> str:
    """SHA-256 over a row's covered values (``COVERED[table]`` order), canonically written:
    moments as UTC ISO text to the microsecond, dates ISO, bytes as their SHA-256."""
    written = [table, *(v if type(v) in _AS_IS else _canonical(v) for v in values)]
    body = json.dumps(written, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def entry_hash(table: str, key: str, digest: str, seq: int) -> int:
    """The 4096-bit hash of one ``audit_rows`` entry, an element of the sum."""
    data = f"{table}\n{key}\n{digest}\n{seq}".encode()
    return int.from_bytes(hashlib.shake_256(data).digest(MODULUS_BITS // 8), "big")


def state_of(total: int) -> str:
    """What the chain records for a sum of entry hashes: its SHA-256."""
    return hashlib.sha256((total & _MASK).to_bytes(MODULUS_BITS // 8, "big")).hexdigest()


EMPTY_STATE: Final = state_of(0)


def touch(session: Session, table: str, keys: Iterable[object]) -> None:
    """Note rows changed by a bulk statement (the ORM's changes are noted by themselves)."""
    session.info.setdefault(_NOTED, {}).setdefault(table, set()).update(map(str, keys))


@event.listens_for(Session, "after_flush")
def _note_flushed(session: Session, _context: object) -> None:
    """After a flush, before its history is reset: note the tracked rows it wrote."""
    noted: dict[str, list[object]] = {}
    for instance in (*session.new, *session.deleted):
        if (table := _TABLE_OF.get(type(instance))) is not None:
            noted.setdefault(table, []).append(getattr(instance, COVERED[table][0]))
    for instance in session.dirty:  # one pass: the property walks the whole identity map
        table = _TABLE_OF.get(type(instance))
        if table is not None and session.is_modified(instance):
            noted.setdefault(table, []).append(getattr(instance, COVERED[table][0]))
    for table, keys in noted.items():
        touch(session, table, keys)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, *_args: object) -> None:
    session.info.pop(_NOTED, None)


@dataclass(frozen=True, slots=True)
class Applied:
    changed: int  # rows whose audited state this event changed
    state: str  # SHA-256 of the new sum


def apply(session: Session, seq: int) -> Applied | None:
    """Record the noted rows' states as changed by event ``seq``; None when none changed.

    Call under the audit head lock (``audit.append`` does), after the changes were flushed.
    """
    noted: dict[str, set[str]] = session.info.pop(_NOTED, {})
    if not noted:
        return None
    total_row = session.get(AuditRowSumRow, _SUM_ID)
    total, changed = int(total_row.total, 16) if total_row else 0, 0
    for table, keys in sorted(noted.items()):
        ordered = sorted(keys)
        for start in range(0, len(ordered), _CHUNK):
            part = ordered[start : start + _CHUNK]
            now = dict(digests(session, table, part))
            before = _entries(session, table, part)
            gone, added = [], []
            for key in part:
                old, new = before.get(key), now.get(key)
                if (old[0] if old else None) == new:
                    continue
                if old is not None:
                    total -= entry_hash(table, key, *old)
                    gone.append(key)
                if new is not None:
                    total += entry_hash(table, key, new, seq)
                    added.append({"table_name": table, "key": key, "digest": new, "seq": seq})
                changed += 1
            _write(session, table, gone, added)
    if not changed:
        return None
    text = f"{total & _MASK:0{MODULUS_BITS // 4}x}"
    if total_row is None:
        session.add(AuditRowSumRow(id=_SUM_ID, total=text))
    else:
        total_row.total = text
    return Applied(changed, state_of(total))


def digests(session: Session, table: str, keys: Sequence[str] | None) -> Iterator[tuple[str, str]]:
    """(key, digest) of the table's rows, of ``keys`` only unless None (then every row)."""
    columns = [_column(table, name) for name in COVERED[table]]
    query = select(*columns).order_by(columns[0])
    if keys is not None:
        wanted = [int(k) for k in keys if k.isdigit()] if table == "licenses" else list(keys)
        query = query.where(columns[0].in_(wanted))
    for values in session.execute(query.execution_options(yield_per=_CHUNK)):
        yield str(values[0]), row_digest(table, values)


def audited(
    session: Session, table: str
) -> Generator[tuple[str, str, str | None, int | None], None, None]:
    """Every row of ``table`` with its audited entry: (key, digest now, digest audited, seq)."""
    columns = [_column(table, name) for name in COVERED[table]]
    key = cast(columns[0], String) if table == "licenses" else columns[0]
    query = (
        select(*columns, AuditRowStateRow.digest, AuditRowStateRow.seq)
        .outerjoin(
            AuditRowStateRow,
            (AuditRowStateRow.table_name == table) & (AuditRowStateRow.key == key),
        )
        .order_by(columns[0])
        .execution_options(yield_per=_CHUNK)
    )
    width = len(columns)
    result = session.execute(query)
    try:  # a server-side cursor on PostgreSQL: closed when the caller stops early, too
        for values in result:
            yield (
                str(values[0]),
                row_digest(table, values[:width]),
                values[width],
                values[width + 1],
            )
    finally:
        result.close()


def orphans(session: Session, table: str) -> Iterator[tuple[str, int]]:
    """Entries of ``table`` whose row is gone: (key, seq of the event that last changed it)."""
    entries = session.execute(
        select(AuditRowStateRow.key, AuditRowStateRow.seq)
        .where(AuditRowStateRow.table_name == table)
        .order_by(AuditRowStateRow.key)
        .execution_options(yield_per=_CHUNK)
    ).all()
    for start in range(0, len(entries), _CHUNK):
        part = entries[start : start + _CHUNK]
        present = {key for key, _ in digests(session, table, [key for key, _ in part])}
        yield from ((key, seq) for key, seq in part if key not in present)


def entry_count(session: Session, table: str) -> int:
    return session.scalar(select(func.count()).where(AuditRowStateRow.table_name == table)) or 0


def entries_state(session: Session) -> str:
    """The state the entries of ``audit_rows`` sum to (what the chain's newest should say)."""
    total = 0
    query = select(
        AuditRowStateRow.table_name, AuditRowStateRow.key, AuditRowStateRow.digest,
        AuditRowStateRow.seq,
    ).execution_options(yield_per=_CHUNK)  # fmt: skip
    for table, key, digest, seq in session.execute(query):
        total += entry_hash(table, key, digest, seq)
    return state_of(total)


def _entries(session: Session, table: str, keys: list[str]) -> dict[str, tuple[str, int]]:
    rows = session.execute(
        select(AuditRowStateRow.key, AuditRowStateRow.digest, AuditRowStateRow.seq).where(
            AuditRowStateRow.table_name == table, AuditRowStateRow.key.in_(keys)
        )
    )
    return {key: (digest, seq) for key, digest, seq in rows}


def _write(session: Session, table: str, gone: list[str], added: list[dict[str, Any]]) -> None:
    """Core statements on the entries: the ORM's bulk forms cost as much again per entry."""
    if gone:
        session.execute(
            delete(_ENTRIES).where(_ENTRIES.c.table_name == table, _ENTRIES.c.key.in_(gone))
        )
    if added:
        session.execute(insert(_ENTRIES), added)


def _column(table: str, name: str) -> InstrumentedAttribute[Any]:
    column: InstrumentedAttribute[Any] = getattr(MODELS[table], name)
    return column


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return hashlib.sha256(bytes(value)).hexdigest()
    return value
