"""Public helpers for tests of code built on fleetkey: keys, licenses and clocks made to order."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any

from fleetkey.clock import FixedClock
from fleetkey.core.issuing import issue_key
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.signing import Algorithm, SigningKey, TrustedKeys
from fleetkey.core.terms import NEVER, Term

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["FixedClock", "make_license", "record_license", "signing_key_for", "trusted_keys_for"]

TEST_MAC = "0004f2000001"


def signing_key_for(algorithm: Algorithm = Algorithm.ED25519) -> SigningKey:
    """One signing key per algorithm and process, generated on first use."""
    return _generated(algorithm)


@cache
def _generated(algorithm: Algorithm) -> SigningKey:
    return SigningKey.generate(algorithm)


def trusted_keys_for(*algorithms: Algorithm) -> TrustedKeys:
    """TrustedKeys holding the test signing keys (Ed25519 when no algorithm is named)."""
    chosen = algorithms or (Algorithm.ED25519,)
    return TrustedKeys((f"test-{a.value}", signing_key_for(a).public) for a in chosen)


def make_license(
    *,
    serial: str = TEST_MAC,
    type: LicenseType = LicenseType.PHONE,  # mirrors the Type attribute
    terms: Mapping[int, Term] | None = None,
    expires: Term = NEVER,
    signer: SigningKey | None = None,
    **overrides: Any,
) -> LicenseKey:
    """A signed license key; every field can be overridden (overrides apply after signing).

    By default: a phone license for 0004f2000001 granting slot 0 with no expiry, signed by the
    test Ed25519 key. ``terms`` (slot → term) wins over ``expires`` (the term of slot 0).
    """
    granted = dict(terms) if terms is not None else {0: expires}
    key = issue_key(serial, type, granted, signer or signing_key_for())
    if overrides:
        fields = {name: getattr(key, name) for name in LicenseKey.__slots__}
        fields.update(overrides)
        key = LicenseKey(**fields)
    return key


def day(text: str) -> date:
    """``date.fromisoformat``, shorter in tables."""
    return date.fromisoformat(text)


def record_license(
    session: Session, key: LicenseKey, *, post: bool = True, clock: FixedClock | None = None
) -> int:
    """Store ``key`` (signed by :func:`make_license`'s test key) as a license file, posted
    unless ``post`` is false (forced: setting up a state, not judging a post); returns its
    license id."""
    from fleetkey.core.codec import serialize_keys  # keeps core imports lean
    from fleetkey.store import posting, registry  # only tests that store need the store

    name = (
        "000000000000-license.cfg" if key.type is LicenseType.SITE else f"{key.serial}-license.cfg"
    )
    stored = registry.record(
        session,
        clock or FixedClock(),
        "tester",
        key,
        trusted_keys_for().check(key),
        content=serialize_keys([key]),
        file_name=name,
    )
    if post:
        posting.post(session, clock or FixedClock(), "tester", stored.id, force=True)
    return stored.id
