"""Per-feature terms and their 16-bit encoding in ``Duration`` (spec §2).

A term is the last valid day of a feature (a :class:`datetime.date`) or :data:`NEVER`. On the wire
each of the 28 slots has one big-endian 16-bit word: ``0000`` = not granted, ``FFFF`` = no expiry,
anything else the last valid day as days since 2000-01-01. Word values grow with the term, so the
"longest duration" of rule R7 is a plain integer comparison of words.
"""

from __future__ import annotations

import enum
from datetime import date, timedelta
from typing import Final

from fleetkey.errors import InputError, LicenseValueError


class Never(enum.Enum):
    """The term of a feature that does not expire."""

    NEVER = "never"

    def __str__(self) -> str:
        return "never"


NEVER: Final = Never.NEVER

#: A feature's term: its last valid day, or NEVER.
Term = date | Never

EPOCH: Final = date(2000, 1, 1)  # spec §2: day numbers count from 2000-01-01 (UTC)
WORD_NOT_GRANTED: Final = 0x0000  # spec §2
WORD_NEVER: Final = 0xFFFF  # spec §2
FIRST_DAY: Final = EPOCH + timedelta(days=1)  # day 0 would read as "not granted"
LAST_DAY: Final = EPOCH + timedelta(days=0xFFFE)  # 2179-06-05; 0xFFFF means "never"


def encode_term(term: Term) -> int:
    """The Duration word for ``term``.

    Raises LicenseValueError for a day that 16 bits cannot carry (before 2000-01-02 or after
    2179-06-05).
    """
    if term is NEVER:
        return WORD_NEVER
    if not FIRST_DAY <= term <= LAST_DAY:
        raise LicenseValueError(
            f"expiry {term.isoformat()} cannot be encoded: "
            f"expected a day from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}"
        )
    return (term - EPOCH).days


def decode_term(word: int) -> Term | None:
    """The term a Duration word stands for; None for ``0000`` (not granted)."""
    if word == WORD_NOT_GRANTED:
        return None
    if word == WORD_NEVER:
        return NEVER
    return EPOCH + timedelta(days=word)


def term_covers(term: Term, on: date) -> bool:
    """True when a feature with ``term`` is valid on day ``on`` (the last day is included)."""
    return term is NEVER or on <= term


def parse_term(text: str) -> Term:
    """Read ``never`` or an ISO date (``YYYY-MM-DD``) as a term, for operator input."""
    cleaned = text.strip()
    if cleaned.lower() == "never":
        return NEVER
    try:
        day = date.fromisoformat(cleaned)
    except ValueError as exc:
        raise LicenseValueError(
            f"expiry {text!r} is not a date: expected YYYY-MM-DD or 'never'"
        ) from exc
    encode_term(day)  # range check
    return day


def format_term(term: Term | None) -> str | None:
    """ISO date, ``"never"``, or None for not granted: for tables."""
    if term is None:
        return None
    return str(term) if term is NEVER else term.isoformat()


def term_to_json(term: Term) -> str | None:
    """JSON form of a term: an ISO date, or null for never (the inspect interface)."""
    return None if term is NEVER else term.isoformat()


def expiry_horizon(today: date, expiring_within: int) -> date:
    """The last day a term may end on to end within ``expiring_within`` days of ``today``."""
    if expiring_within < 0:
        raise InputError(
            f"expiring within {expiring_within} days: expected a number of days, 0 or more",
            field="expiring_within",
        )
    try:
        return today + timedelta(days=expiring_within)
    except OverflowError as exc:
        raise InputError(
            f"expiring within {expiring_within} days: that is past the year 9999",
            field="expiring_within",
        ) from exc
