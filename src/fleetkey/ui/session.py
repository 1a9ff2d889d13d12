"""Dashboard sessions: a signed, expiring cookie instead of a table, and CSRF tokens.

Signing in with the admin token gives a cookie ``v1.<id>.<expires>.<mac>``: a random session
id, the Unix second it expires, and an HMAC-SHA256 over both. The HMAC key mixes a random
secret kept in the store (``store/dashboard.py``: made once, by whichever server needs it
first) with the admin token's stored hash, so making a new token (``fleetkey token``) ends
every session at once, and several servers sharing the store accept each other's cookies.
Signing out records the session's id in the store, so a copied cookie is refused too.

A form that changes something carries ``csrf``, an HMAC of the session id: a page of another
site cannot read it, and the cookie is ``SameSite=Strict`` besides. The sign-in form has its
own: a random nonce in a short-lived cookie and its HMAC in the form (double submit).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from fleetkey.errors import TokenFileError

COOKIE: Final = "fleetkey_session"
LOGIN_COOKIE: Final = "fleetkey_signin"
SESSION_S: Final = 8 * 3600  # a working day
LOGIN_S: Final = 15 * 60  # how long a sign-in form stays good
MIN_SESSION_S: Final = 5
MAX_SESSION_S: Final = 7 * 24 * 3600
_VERSION: Final = "v1"
_MAX_COOKIE: Final = 200  # a longer cookie value is not ours; not worth hashing


@dataclass(frozen=True, slots=True)
class Session:
    """A valid session: its id (for CSRF tokens) and when it ends."""

    id: str
    expires: int  # Unix seconds


class Signer:
    """Makes and checks session cookies and CSRF tokens with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_secret(cls, secret: bytes, token_file: Path) -> Signer:
        """The key from the store's session secret and the admin token's hash (a new token, a
        new key)."""
        try:
            token_hash = token_file.read_bytes()
        except FileNotFoundError:
            token_hash = b""  # no token: nobody can sign in anyway
        except OSError as exc:
            raise TokenFileError(f"cannot read the API token hash {token_file}: {exc}") from exc
        return cls(hmac.digest(secret, token_hash, "sha256"))

    def _mac(self, purpose: str, text: str) -> str:
        return hmac.digest(self._key, f"{purpose}.{text}".encode(), "sha256").hex()

    def issue(self, now: datetime, lifetime_s: int) -> str:
        """A new session's cookie value."""
        body = f"{_VERSION}.{secrets.token_urlsafe(18)}.{int(now.timestamp()) + lifetime_s}"
        return f"{body}.{self._mac('session', body)}"

    def check(self, value: str | None, now: datetime) -> Session | None:
        """The session the cookie names, or None: missing, malformed, forged or expired."""
        if value is None or len(value) > _MAX_COOKIE:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
            return None
        body = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3], self._mac("session", body)):
            return None
        expires = int(parts[2])
        if expires <= now.timestamp():
            return None
        return Session(parts[1], expires)

    def csrf(self, session: Session) -> str:
        return self._mac("csrf", session.id)[:32]

    def csrf_matches(self, session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf(session))

    def login_nonce(self) -> str:
        return secrets.token_urlsafe(18)

    def login_csrf(self, nonce: str) -> str:
        return self._mac("signin", nonce)[:32]

    def login_csrf_matches(self, nonce: str | None, presented: str | None) -> bool:
        if nonce is None or presented is None or len(nonce) > _MAX_COOKIE:
            return False
        return hmac.compare_digest(presented, self.login_csrf(nonce))
