"""What the dashboard's servers share through the store: the key its session cookies are
signed with, and the sessions signed out before they expired.

The key is made once, by whichever server needs it first: each server inserts a random one
if none is stored (``INSERT … ON CONFLICT DO NOTHING``) and reads back the one stored, so
two servers starting at once use the same key whichever insert won. A sign-out keeps the
session's id until the session would have expired, so its cookie is refused wherever it was
copied; later sign-outs clear the ids whose sessions have expired anyway.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fleetkey.clock import Clock
from fleetkey.errors import DatabaseError
from fleetkey.store.records import utc
from fleetkey.store.schema import DashboardSecretRow, DashboardSignOutRow

SESSION_SECRET: Final = "session"  # noqa: S105  # the secret's name, not a secret
SECRET_BYTES: Final = 32
SESSION_ID_CHARS: Final = 64


def secret(session: Session, clock: Clock, name: str = SESSION_SECRET) -> bytes:
    """The secret called ``name``, made (random, ``SECRET_BYTES``) if the store has none:
    the one stored wins over one made at the same moment by another server."""
    stored = _stored(session, name)
    if stored is not None:
        return stored
    session.execute(
        _insert(session, DashboardSecretRow)
        .values(
            name=name,
            value=secrets.token_bytes(SECRET_BYTES).hex(),
            created_at=utc(clock.now()),
        )
        .on_conflict_do_nothing(index_elements=["name"])
    )
    stored = _stored(session, name)
    if stored is None:  # the insert did nothing, yet nothing is there: not a state to sign with
        raise DatabaseError(f"the dashboard's {name} secret was neither stored nor found")
    return stored


def _stored(session: Session, name: str) -> bytes | None:
    value = session.scalar(select(DashboardSecretRow.value).where(DashboardSecretRow.name == name))
    return None if value is None else bytes.fromhex(value)


def sign_out(session: Session, clock: Clock, session_id: str, expires_at: datetime) -> None:
    """Refuse session ``session_id`` from now until ``expires_at``; forget the sign-outs of
    sessions that have expired since."""
    now = utc(clock.now())
    session.execute(delete(DashboardSignOutRow).where(DashboardSignOutRow.expires_at <= now))
    session.execute(
        _insert(session, DashboardSignOutRow)
        .values(session_id=session_id, expires_at=utc(expires_at))
        .on_conflict_do_nothing(index_elements=["session_id"])
    )


def signed_out(session: Session, session_id: str) -> bool:
    """Whether session ``session_id`` was signed out."""
    return session.get(DashboardSignOutRow, session_id) is not None


def _insert(
    session: Session, table: type[DashboardSecretRow] | type[DashboardSignOutRow]
) -> postgresql.Insert | sqlite.Insert:
    """An insert that can be told to do nothing on a conflict, in the store's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
