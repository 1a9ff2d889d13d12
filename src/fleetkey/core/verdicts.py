"""What verifying a key's signature concluded (spec §2), apart from how it was verified.

Read by the store, alerts and the CLI, which show verdicts but never verify: kept out of
``core.signing`` so that reading them does not import cryptography (a read command starts
faster without it, issue 24).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SignatureStatus(enum.StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNVERIFIABLE = "unverifiable"
    # never a verdict of verification: an unverifiable key (a vendor's) whose signature an
    # operator vouched for, with a reason, in the store (``fleetkey licenses trust``)
    TRUSTED_BY_OPERATOR = "trusted-by-operator"


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The verdict on one key's signature, the trusted key that made it, and why."""

    status: SignatureStatus
    key_name: str | None
    reason: str

    @property
    def valid(self) -> bool:
        return self.status is SignatureStatus.VALID
