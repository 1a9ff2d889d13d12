"""Per-device provisioning credentials, stored hashed.

HTTP Basic checks a password against a salted scrypt hash; HTTP Digest (RFC 7616) needs
HA1 = MD5(user:realm:password), which is password-equivalent for that realm. Both are kept; the
scrypt cost is moderate (n=2^12, ~10 ms) because device passwords are machine-generated and
imports hash thousands of them, spread over all cores.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from fleetkey.core.digest import ha1

DIGEST_REALM: Final = "fleetkey"  # the realm phones authenticate to (RFC 7616 §3.3)
_N, _R, _P = 2**12, 8, 1


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    scheme, n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    again = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(again.hex(), digest)


def digest_ha1(user: str, password: str, realm: str = DIGEST_REALM) -> str:
    """What the store keeps for Digest: HA1 in the realm phones authenticate to."""
    return ha1(user, realm, password)


def hash_passwords(passwords: Sequence[str]) -> list[str]:
    """``hash_password`` for many, on every core (scrypt releases the GIL)."""
    if len(passwords) < 4:
        return [hash_password(p) for p in passwords]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(hash_password, passwords))
