"""The admin API's bearer token: made by `fleetkey init` (or `fleetkey token`), kept hashed.

The token is 256 random bits, shown once; the data directory keeps only its SHA-256 (a slow
hash adds nothing against a brute force of 2^256). Checking compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Final

from fleetkey.authority.files import atomic_write
from fleetkey.errors import TokenFileError

PREFIX: Final = "sha256:"


def create_token(path: Path) -> str:
    """A new token; its hash replaces any previous one (which stops working at once)."""
    token = "fk_" + secrets.token_urlsafe(32)
    atomic_write(path, f"{PREFIX}{_digest(token)}\n".encode(), mode=0o600)
    return token


def has_token(path: Path) -> bool:
    return path.is_file()


def token_matches(path: Path, presented: str) -> bool:
    """Whether ``presented`` is the current token (False when there is none)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the API token hash {path}: {exc}") from exc
    if not text.startswith(PREFIX) or len(text) != len(PREFIX) + 64:
        raise TokenFileError(
            f"{path} is not an API token hash", hint="run `fleetkey token` to make a new token"
        )
    return hmac.compare_digest(text[len(PREFIX) :], _digest(presented))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
