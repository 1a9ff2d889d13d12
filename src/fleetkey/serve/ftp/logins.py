"""Who may log in over FTP: the phones' own provisioning logins, and the shared factory login.

A per-device login is the phone's ``device.prov.user`` / ``device.prov.password`` as the store
keeps them for HTTP Basic (a scrypt hash, ``fleetkey.store.credentials``); the session is that
phone. The shared login (Polycom's factory ``PlcmSpIp`` / ``PlcmSpIp``, domain.md §5.3) is off
unless the operator names it; its sessions are the phone that the first per-phone name asked
for says (``<mac>.cfg``, ``<mac>-license.cfg``…). Anonymous never.

A good per-device password is remembered (under an HMAC of it, never the password) so a phone's
next boot does not pay scrypt (~10 ms) again. Wrong passwords are counted per address: beyond
``FAILURES_PER_ADDRESS`` within ``FAILURE_WINDOW_S`` an address's logins are refused before any
scrypt runs (pyftpdlib itself answers every failure after a delay and disconnects after three).
A refused login says which phone's login it was (``named``: the session records it as a
fetch refused, as HTTP records its 401s, under that phone's MAC).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass, replace
from typing import Final

from fleetkey.serve.view import ViewSource
from fleetkey.store.credentials import check_password

FAILURES_PER_ADDRESS: Final = 20
FAILURE_WINDOW_S: Final = 60.0
_ADDRESSES_MAX: Final = 100_000
ANONYMOUS: Final = frozenset({"anonymous", "ftp"})


@dataclass(frozen=True, slots=True)
class SharedLogin:
    user: str
    password: str


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A login's outcome: ``mac`` for a per-device login, ``shared`` for the factory login,
    else ``reason`` (what the client is told) and ``outcome`` (the metrics label)."""

    outcome: str  # device, shared, wrong, unknown-user, anonymous, throttled
    mac: str | None = None
    shared: bool = False
    reason: str = ""
    named: str | None = None  # refused: the phone whose per-device login it was, if one

    @property
    def ok(self) -> bool:
        return self.mac is not None or self.shared


def parse_shared_login(text: str) -> SharedLogin:
    """``USER:PASSWORD`` (the password may contain ':'); ValueError says what is wrong."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{text!r} is not USER:PASSWORD (both non-empty)")
    if user.lower() in ANONYMOUS:
        raise ValueError(f"{user!r} is an anonymous login, which is never accepted")
    if any(ord(c) < 32 or c in " \x7f" for c in text):
        raise ValueError("a login has no spaces or control characters")
    return SharedLogin(user, password)


class Logins:
    """Checks FTP logins; called on the FTP thread only."""

    def __init__(self, view: ViewSource, shared: SharedLogin | None) -> None:
        self._live = view
        self._shared = shared
        self._secret = os.urandom(32)
        self._good: dict[tuple[str, str], tuple[str, str]] = {}  # (user, tag) → (mac, hash)
        self._failed: dict[str, tuple[int, float]] = {}  # address → (failures, window start)
        self.outcomes: dict[str, int] = {}

    def check(self, user: str, password: str, address: str) -> LoginResult:
        result = self._check(user, password, address)
        self.outcomes[result.outcome] = self.outcomes.get(result.outcome, 0) + 1
        if result.ok:
            return result
        if result.outcome != "throttled":
            self._failed_once(address)
        return replace(result, named=self._named(user))

    def _named(self, user: str) -> str | None:
        """The phone a per-device login names (one phone has it), else None."""
        macs = {c.mac for c in self._live.view.credentials.get(user, ()) if c.password_hash}
        return macs.pop() if len(macs) == 1 else None

    def _check(self, user: str, password: str, address: str) -> LoginResult:
        if user.lower() in ANONYMOUS:
            return LoginResult("anonymous", reason="anonymous logins are not accepted.")
        wait = self._held_back(address)
        if wait is not None:
            return LoginResult(
                "throttled",
                reason=f"too many failed logins from this address; retry in {wait:.0f} seconds.",
            )
        shared = self._shared
        if shared is not None and hmac.compare_digest(user, shared.user):
            if hmac.compare_digest(password.encode(), shared.password.encode()):
                return LoginResult("shared", shared=True)
            return LoginResult("wrong", reason="authentication failed.")
        candidates = self._live.view.credentials.get(user, ())
        if not any(c.password_hash for c in candidates):
            return LoginResult("unknown-user", reason="authentication failed.")
        tag = hmac.new(self._secret, password.encode(), hashlib.sha256).hexdigest()
        remembered = self._good.get((user, tag))
        if remembered is not None:
            mac, stored = remembered
            if any(c.mac == mac and c.password_hash == stored for c in candidates):
                return LoginResult("device", mac=mac)
        for credential in candidates:
            stored_hash = credential.password_hash
            if stored_hash and check_password(password, stored_hash):
                if len(self._good) >= _ADDRESSES_MAX:
                    self._good.clear()
                self._good[(user, tag)] = (credential.mac, stored_hash)
                return LoginResult("device", mac=credential.mac)
        return LoginResult("wrong", reason="authentication failed.")

    def _held_back(self, address: str) -> float | None:
        count, began = self._failed.get(address, (0, 0.0))
        elapsed = time.monotonic() - began
        if count >= FAILURES_PER_ADDRESS and elapsed < FAILURE_WINDOW_S:
            return max(1.0, FAILURE_WINDOW_S - elapsed)
        return None

    def _failed_once(self, address: str) -> None:
        now = time.monotonic()
        count, began = self._failed.get(address, (0, now))
        if now - began >= FAILURE_WINDOW_S:
            count, began = 0, now
        if len(self._failed) >= _ADDRESSES_MAX:
            self._failed.clear()
        self._failed[address] = (count + 1, began)
