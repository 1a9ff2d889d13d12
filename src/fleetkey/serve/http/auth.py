"""Per-device HTTP authentication: Basic and Digest (RFC 7617, RFC 7616 with MD5 and qop=auth).

Phones carry ``device.prov.user`` and ``device.prov.password`` and answer a 401 challenge with
either scheme. The store keeps, per phone, a scrypt hash (Basic) and HA1 (Digest); see
``fleetkey.store.credentials``. A successful Basic login is remembered (keyed by an HMAC of
the password, never the password) so a phone's next requests do not pay scrypt again; the
first check of each login runs on a worker thread, since scrypt takes milliseconds.

Digest nonces are stateless (time + HMAC under a per-process secret) and go stale after five
minutes; ``qop=auth`` is required and the nonce count of each nonce must grow, so a captured
request cannot be replayed (without ``qop`` there is no count, and a request could be).

Failed logins are limited before they cost anything: more than ``FAILURES_PER_LOGIN`` failures
of one login from one address, or ``FAILURES_PER_ADDRESS`` from one address in all, within
``FAILURE_WINDOW_S``, and that address's logins are refused at once (429 with Retry-After)
until the window has passed: 500 wrong Basic passwords used to queue 500 scrypt checks and held
a real phone's login up for 6 s. A phone's own good login is never held up by another user
failing from the same NAT address beyond the per-address share.
The nonces and their counts are kept here; the Digest computation and header syntax are
``fleetkey.core.digest``'s, shared with the SIP side.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from fleetkey.core import digest
from fleetkey.serve.view import Credential
from fleetkey.store.credentials import DIGEST_REALM, check_password

NONCE_TTL_S: Final = 300
FAILURE_WINDOW_S: Final = 10.0
FAILURES_PER_LOGIN: Final = 5  # from one address, within the window
FAILURES_PER_ADDRESS: Final = 50  # all logins from one address (a NAT of a site), likewise
_FAILURE_KEYS_MAX: Final = 100_000
_NONCES_MAX: Final = 200_000  # nonce counts remembered; the oldest half goes beyond
_NONCE = re.compile(r"[0-9a-f]{1,16}-[0-9a-f]{16}")
_NONCE_COUNT = re.compile(r"[0-9a-fA-F]{8}")


class AuthMode(enum.StrEnum):
    OFF = "off"
    BASIC = "basic"
    DIGEST = "digest"
    ANY = "any"  # either; the challenge offers both, Digest first


@dataclass(frozen=True, slots=True)
class Verdict:
    """``mac`` when authenticated; else why not, and whether to check Basic on a thread."""

    mac: str | None = None
    reason: str = ""
    stale: bool = False
    slow_basic: tuple[str, str] | None = None  # (user, password) to check with scrypt
    retry_after_s: float | None = None  # too many failures from this address: wait this long


class DeviceAuth:
    def __init__(
        self,
        mode: AuthMode,
        credentials: Callable[[str], tuple[Credential, ...]],
        *,
        secret: bytes | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.mode = mode
        self._credentials = credentials
        self._secret = secret or os.urandom(32)
        self._now = now
        self._basic_ok: dict[tuple[str, str], tuple[str, str]] = {}  # → (mac, stored hash)
        self._counts: dict[str, int] = {}  # nonce → highest nonce count seen
        # (address, user or "") → (failures in the window, when the window began)
        self._failed: dict[tuple[str, str], tuple[int, float]] = {}
        self._checking: dict[tuple[str, str], int] = {}  # scrypt checks under way, by key
        self._lock = threading.Lock()  # the two above are written by worker threads too
        self.failures = 0
        self.throttled = 0  # logins refused at once for an address's failures

    @property
    def enabled(self) -> bool:
        return self.mode is not AuthMode.OFF

    def challenges(self, stale: bool = False) -> list[tuple[str, str]]:
        """``WWW-Authenticate`` headers of a 401."""
        headers = []
        if self.mode in (AuthMode.DIGEST, AuthMode.ANY):
            challenge = digest.challenge(DIGEST_REALM, self._nonce(), stale=stale)
            headers.append(("www-authenticate", challenge))
        if self.mode in (AuthMode.BASIC, AuthMode.ANY):
            headers.append(("www-authenticate", f'Basic realm="{DIGEST_REALM}"'))
        return headers

    def check(
        self, method: str, target: str, authorization: str | None, address: str | None = None
    ) -> Verdict:
        """Who the credentials in ``authorization`` belong to, without waiting."""
        if authorization is None:
            return Verdict(reason="credentials required")
        scheme, _, rest = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and self.mode in (AuthMode.BASIC, AuthMode.ANY):
            verdict = self._basic(rest.strip(), address)
        elif scheme == "digest" and self.mode in (AuthMode.DIGEST, AuthMode.ANY):
            verdict = self._digest(method, target, rest, address)
        else:
            verdict = self._fail(f"{scheme or 'empty'} authentication is not accepted here")
        if verdict.mac is None and verdict.slow_basic is None and not verdict.stale:
            self._failed_once(address, "")
        return verdict

    def check_basic_slowly(self, user: str, password: str, address: str | None = None) -> Verdict:
        """Basic with scrypt: blocking, for a worker thread, after ``reserve_slow_check``.
        Remembers a success."""
        try:
            for credential in self._credentials(user):
                if credential.password_hash and check_password(password, credential.password_hash):
                    key = (user, self._tag(password))
                    self._basic_ok[key] = (credential.mac, credential.password_hash)
                    return Verdict(mac=credential.mac)
            self._failed_once(address, user)
            self._failed_once(address, "")
            return self._fail(f"wrong password for {user!r}")
        finally:
            self._checked(address, user)

    def _held_back(self, address: str | None, user: str) -> Verdict | None:
        """A refusal when ``address`` (for ``user``) failed too often in the window, checks
        under way counted as failures to come (an attack sends them all at once)."""
        if address is None:
            return None
        now = self._now()
        limits = (((address, user), FAILURES_PER_LOGIN), ((address, ""), FAILURES_PER_ADDRESS))
        with self._lock:
            for key, limit in limits:
                count, began = self._failed.get(key, (0, now))
                if now - began >= FAILURE_WINDOW_S:
                    count, began = 0, now
                if count + self._checking.get(key, 0) >= limit:
                    self.throttled += 1
                    wait = max(1.0, FAILURE_WINDOW_S - (now - began))
                    return Verdict(
                        reason="too many failed logins from this address", retry_after_s=wait
                    )
        return None

    def reserve_slow_check(self, user: str, address: str | None) -> Verdict | None:
        """Before handing a Basic login to ``check_basic_slowly``: None when it may go (it is
        counted as under way until that check ends), else the refusal."""
        held = self._held_back(address, user)
        if held is not None or address is None:
            return held
        with self._lock:
            for key in ((address, user), (address, "")):
                self._checking[key] = self._checking.get(key, 0) + 1
        return None

    def _checked(self, address: str | None, user: str) -> None:
        if address is None:
            return
        with self._lock:
            for key in ((address, user), (address, "")):
                left = self._checking.get(key, 1) - 1
                if left > 0:
                    self._checking[key] = left
                else:
                    self._checking.pop(key, None)

    def _failed_once(self, address: str | None, user: str) -> None:
        if address is None:
            return
        now = self._now()
        key = (address, user)
        with self._lock:
            count, began = self._failed.get(key, (0, now))
            if now - began >= FAILURE_WINDOW_S:
                count, began = 0, now
            if len(self._failed) >= _FAILURE_KEYS_MAX:
                self._failed.clear()
            self._failed[key] = (count + 1, began)

    def _basic(self, token: str, address: str | None) -> Verdict:
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return self._fail("Basic credentials are not base64 of user:password")
        user, sep, password = decoded.partition(":")
        if not sep or not user:
            return self._fail("Basic credentials are not user:password")
        candidates = self._credentials(user)
        if not any(c.password_hash for c in candidates):
            return self._fail(f"no phone has the login {user!r}")
        remembered = self._basic_ok.get((user, self._tag(password)))
        if remembered is not None:
            mac, stored = remembered
            if any(c.mac == mac and c.password_hash == stored for c in candidates):
                return Verdict(mac=mac)
        held = self._held_back(address, user)  # before scrypt, which is what an attack costs
        if held is not None:
            return held
        return Verdict(reason="checking", slow_basic=(user, password))

    def _digest(self, method: str, target: str, text: str, address: str | None) -> Verdict:
        params = digest.parse_params(text)
        if params is None:
            return self._fail("Digest credentials are malformed")
        user = params.get("username", "")
        held = self._held_back(address, user)
        if held is not None:
            return held
        nonce, uri, answer = params.get("nonce", ""), params.get("uri", ""), params.get("response")
        if not user or not nonce or answer is None:
            return self._fail("Digest credentials lack username, nonce or response")
        if params.get("realm") != DIGEST_REALM:
            return self._fail(f"Digest realm must be {DIGEST_REALM!r}")
        if params.get("algorithm", "MD5").upper() != "MD5":
            return self._fail("Digest algorithm must be MD5")
        if uri != target:
            return self._fail("Digest uri does not match the request")
        age = self._nonce_age(nonce)
        if age is None:
            return self._fail("Digest nonce was not issued here")
        if age > NONCE_TTL_S:
            return Verdict(reason="nonce is stale", stale=True)
        if params.get("qop") != "auth":  # without it, no nonce count: a replay would pass
            return self._fail("Digest needs qop=auth")
        if not _NONCE_COUNT.fullmatch(params.get("nc", "")) or not params.get("cnonce"):
            return self._fail("Digest with qop needs nc (8 hex digits) and cnonce")
        for credential in self._credentials(user):
            if credential.digest_ha1 is None:
                continue
            expected = digest.expected_response(credential.digest_ha1, method, params)
            if hmac.compare_digest(expected, answer.lower()):
                if not self._count(nonce, int(params["nc"], 16)):
                    return Verdict(reason="nonce count reused", stale=True)
                return Verdict(mac=credential.mac)
        self._failed_once(address, user)
        return self._fail(f"wrong Digest response for {user!r}")

    def _count(self, nonce: str, count: int) -> bool:
        """Nonce counts must grow: a repeated one is a replay."""
        if count <= self._counts.get(nonce, 0):
            return False
        if len(self._counts) >= _NONCES_MAX:
            for old in list(self._counts)[: _NONCES_MAX // 2]:
                del self._counts[old]
        self._counts[nonce] = count
        return True

    def _nonce(self) -> str:
        """Time, 64 random bits (every challenge its own nonce count), and their HMAC."""
        issued = f"{int(self._now()):x}-{os.urandom(8).hex()}"
        return f"{issued}.{self._sign(issued)}"

    def _nonce_age(self, nonce: str) -> float | None:
        issued, _, mac = nonce.partition(".")
        if not _NONCE.fullmatch(issued) or not hmac.compare_digest(mac, self._sign(issued)):
            return None
        return self._now() - int(issued.partition("-")[0], 16)

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()[:32]

    def _tag(self, password: str) -> str:
        return hmac.new(self._secret, password.encode(), hashlib.sha256).hexdigest()

    def _fail(self, reason: str) -> Verdict:
        self.failures += 1
        return Verdict(reason=reason)
