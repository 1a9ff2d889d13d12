"""fleetkey: feature-license lifecycle and provisioning for fleets of SIP desk phones."""

from __future__ import annotations

from fleetkey.clock import Clock, FixedClock, SystemClock
from fleetkey.core.codec import LicenseFile, parse_license_file, serialize_license_file
from fleetkey.core.features import Feature, FeatureCatalog, default_catalog
from fleetkey.core.issuing import KeyTemplate, issue_key
from fleetkey.core.license import LicenseKey, LicenseType
from fleetkey.core.rules import Decision, Grant, InstalledKeys, Outcome, effective_features, judge
from fleetkey.core.signing import (
    Algorithm,
    PublicKey,
    SignatureCheck,
    SignatureStatus,
    SigningKey,
    TrustedKeys,
)
from fleetkey.core.terms import NEVER, Term
from fleetkey.errors import FleetkeyError

__all__ = [
    "NEVER",
    "Algorithm",
    "Clock",
    "Decision",
    "Feature",
    "FeatureCatalog",
    "FixedClock",
    "FleetkeyError",
    "Grant",
    "InstalledKeys",
    "KeyTemplate",
    "LicenseFile",
    "LicenseKey",
    "LicenseType",
    "Outcome",
    "PublicKey",
    "SignatureCheck",
    "SignatureStatus",
    "SigningKey",
    "SystemClock",
    "Term",
    "TrustedKeys",
    "default_catalog",
    "effective_features",
    "issue_key",
    "judge",
    "parse_license_file",
    "serialize_license_file",
]
