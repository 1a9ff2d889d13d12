"""The license key model (spec §2): what a ``<licenseKey/>`` element says, independent of XML."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from datetime import date
from typing import Final

from fleetkey.core.terms import (
    WORD_NOT_GRANTED,
    Term,
    decode_term,
    encode_term,
    term_covers,
)
from fleetkey.errors import LicenseValueError

VERSION: Final = "2.0"  # spec §2: the only version
SLOT_COUNT: Final = 28  # spec §2: Duration holds 28 words, slots 0-27
RESERVED_MASK: Final = 0xF000_0000  # spec §2: bits 28-31 must be clear in files fleetkey issues
SIGNED_PREFIX: Final = b"fleetkey-license-v1\n"  # spec §2: first line of the signed message


_WIRE_WORDS: Final = struct.Struct(f">{SLOT_COUNT}H")  # Duration: big-endian 16-bit words


class LicenseType(enum.StrEnum):
    """``Type`` attribute: a phone license is bound to a MAC, a site license to a site serial."""

    PHONE = "Phone"
    SITE = "Site"


class LicenseState(enum.StrEnum):
    """Where a key fleetkey keeps stands: issued → posted → superseded, or revoked at any point."""

    ISSUED = "issued"
    POSTED = "posted"  # served to phones
    SUPERSEDED = "superseded"  # a newer key for the same serial was posted
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class LicenseKey:
    """One ``<licenseKey/>``.

    ``words`` holds the 28 Duration words in slot order (``words[i]`` is the term of slot ``i``);
    the wire order is reversed (spec §2). ``serial`` is lowercase, ``validation`` raw bytes.
    """

    serial: str
    type: LicenseType
    options: int
    words: tuple[int, ...]
    validation: bytes
    version: str = VERSION

    @property
    def options_hex(self) -> str:
        """``Options`` as written: 8 uppercase hex digits."""
        return f"{self.options:08X}"

    @property
    def duration_hex(self) -> str:
        """``Duration`` as written: 112 uppercase hex digits, slot 0 last."""
        return _WIRE_WORDS.pack(*reversed(self.words)).hex().upper()

    def signed_message(self) -> bytes:
        """The exact bytes the signature covers (spec §2)."""
        return signed_message(
            self.serial, self.version, self.type, self.options_hex, self.duration_hex
        )

    def granted_slots(self) -> tuple[int, ...]:
        """Slots whose Options bit is set and whose term is not ``0000``."""
        options, words = self.options, self.words
        return tuple(
            slot
            for slot in range(SLOT_COUNT)
            if options >> slot & 1 and words[slot] != WORD_NOT_GRANTED
        )

    def terms(self) -> dict[int, Term]:
        """Granted slot → term."""
        terms: dict[int, Term] = {}
        for slot in self.granted_slots():
            term = decode_term(self.words[slot])
            if term is not None:
                terms[slot] = term
        return terms

    @property
    def duration_rank(self) -> int:
        """The key's duration for rule R7: its latest term as a word (0 = grants nothing)."""
        return max((self.words[slot] for slot in self.granted_slots()), default=WORD_NOT_GRANTED)

    def expiry(self) -> Term | None:
        """The key's latest term (its "duration"); None when it grants nothing."""
        return decode_term(self.duration_rank)

    def is_expired(self, on: date) -> bool:
        """True when no granted feature is valid on ``on``; a key granting nothing is expired."""
        latest = self.expiry()
        return latest is None or not term_covers(latest, on)

    def valid_terms(self, on: date) -> dict[int, Term]:
        """Granted slots still valid on ``on``, with their terms."""
        return {slot: term for slot, term in self.terms().items() if term_covers(term, on)}


def signed_message(
    serial: str, version: str, license_type: LicenseType, options_hex: str, duration_hex: str
) -> bytes:
    """``"fleetkey-license-v1\\n" + serial_lower + "\\n" + version + ... + duration_upper``."""
    text = f"{serial.lower()}\n{version}\n{license_type.value}\n{options_hex.upper()}\n"
    return SIGNED_PREFIX + (text + duration_hex.upper()).encode("ascii")


def encode_terms(terms: dict[int, Term]) -> tuple[int, tuple[int, ...]]:
    """Options mask and slot-ordered Duration words for ``terms`` (slot → term).

    In an issued file a slot's Options bit is set exactly when its term is non-zero (spec §2).
    """
    if not terms:
        raise LicenseValueError("a license must grant at least one feature")
    words = [WORD_NOT_GRANTED] * SLOT_COUNT
    options = 0
    for slot, term in terms.items():
        if not 0 <= slot < SLOT_COUNT:
            raise LicenseValueError(f"feature slot {slot} does not exist: expected 0-27")
        words[slot] = encode_term(term)
        options |= 1 << slot
    return options, tuple(words)


def check_issuable(key: LicenseKey) -> None:
    """Raise LicenseValueError unless ``key`` is one fleetkey may issue (``issuance_problems``)."""
    problems = issuance_problems(key)
    if problems:
        raise LicenseValueError("; ".join(problems))


def issuance_problems(key: LicenseKey) -> list[str]:
    """Every way ``key`` breaks the rules for files fleetkey issues (spec §2); empty if none.

    Parsing accepts what the wire format can carry; issuing, and ``fleetkey verify``, are
    stricter: version 2.0, reserved Options bits clear, Options bits exactly where terms are
    non-zero, at least one feature.
    """
    problems = []
    if key.version != VERSION:
        problems.append(f"Version is {key.version!r}, expected {VERSION!r}")
    reserved = [bit for bit in range(SLOT_COUNT, 32) if key.options >> bit & 1]
    if reserved:
        problems.append(
            f"Options {key.options_hex} sets reserved bits 28-31 (set: "
            f"{', '.join(map(str, reserved))}), expected them clear"
        )
    for slot in range(SLOT_COUNT):
        bit = bool(key.options >> slot & 1)
        if bit != (key.words[slot] != WORD_NOT_GRANTED):
            state = "set" if bit else "clear"
            problems.append(
                f"slot {slot}: Options bit is {state} but its Duration word is "
                f"{key.words[slot]:04X}; expected the bit set exactly when the term is non-zero"
            )
    if key.options & ~RESERVED_MASK == 0:
        problems.append("a license must grant at least one feature")
    return problems
