"""Building signed license keys from a serial and per-feature terms (spec §2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fleetkey.core.features import FeatureCatalog
from fleetkey.core.license import (
    SIGNED_PREFIX,
    VERSION,
    LicenseKey,
    LicenseType,
    check_issuable,
    encode_terms,
    signed_message,
)
from fleetkey.core.terms import Term
from fleetkey.errors import LicenseValueError


class Signer(Protocol):
    """Anything that signs bytes: a SigningKey, or a test double."""

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """Everything of a key but its serial and signature, encoded and checked once.

    Batches issue thousands of keys with the same terms; the template does the encoding and the
    spec §2 checks once and leaves one signature per key.
    """

    type: LicenseType
    options: int
    words: tuple[int, ...]
    message_tail: bytes

    @classmethod
    def for_terms(cls, license_type: LicenseType, terms: Mapping[int, Term]) -> KeyTemplate:
        options, words = encode_terms(dict(terms))
        unsigned = LicenseKey("0" * 12, license_type, options, words, b"", VERSION)
        check_issuable(unsigned)
        message = signed_message(
            "", VERSION, license_type, unsigned.options_hex, unsigned.duration_hex
        )
        return cls(license_type, options, words, message[len(SIGNED_PREFIX) :])

    def message(self, serial: str) -> bytes:
        """The signed message for ``serial`` (spec §2)."""
        return SIGNED_PREFIX + serial.lower().encode("ascii") + self.message_tail

    def issue(self, serial: str, signer: Signer) -> LicenseKey:
        """The key for ``serial`` (normalized), signed by ``signer``."""
        signature = signer.sign(self.message(serial))
        return LicenseKey(serial, self.type, self.options, self.words, signature, VERSION)


def issue_key(
    serial: str, license_type: LicenseType, terms: Mapping[int, Term], signer: Signer
) -> LicenseKey:
    """A signed key granting ``terms`` (slot → term); ``serial`` already normalized."""
    return KeyTemplate.for_terms(license_type, terms).issue(serial, signer)


def resolve_terms(
    catalog: FeatureCatalog,
    features: list[str],
    expires: Term | None,
    overrides: Mapping[str, Term] | None = None,
) -> dict[int, Term]:
    """Slot → term from feature names all expiring at ``expires`` plus per-feature overrides."""
    terms: dict[int, Term] = {}
    names = [name.strip() for name in features if name.strip()]
    if names:
        if expires is None:
            raise LicenseValueError("features were named without an expiry", field="expires")
        for name in names:
            slot = catalog.slot_of(name)
            if slot in terms:
                raise LicenseValueError(f"feature {name!r} is named twice")
            terms[slot] = expires
    for name, term in (overrides or {}).items():
        terms[catalog.slot_of(name)] = term
    if not terms:
        raise LicenseValueError("a license must grant at least one feature", field="features")
    return terms
