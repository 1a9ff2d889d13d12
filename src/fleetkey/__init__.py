"""fleetkey: feature-license lifecycle and provisioning for fleets of SIP desk phones.

The public API is re-exported here and loaded on first use (PEP 562): ``import fleetkey`` is
what every ``fleetkey`` command pays first, and the CLI must start in a fraction of a second
(``fleetkey --version`` loads neither the codec nor cryptography; docs/cli.md).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from fleetkey.clock import Clock, FixedClock, SystemClock
    from fleetkey.core.codec import LicenseFile, parse_license_file, serialize_license_file
    from fleetkey.core.features import Feature, FeatureCatalog, default_catalog
    from fleetkey.core.issuing import KeyTemplate, issue_key
    from fleetkey.core.license import LicenseKey, LicenseType
    from fleetkey.core.rules import (
        Decision,
        Grant,
        InstalledKeys,
        Outcome,
        effective_features,
        judge,
    )
    from fleetkey.core.signing import Algorithm, PublicKey, SigningKey, TrustedKeys
    from fleetkey.core.terms import NEVER, Term
    from fleetkey.core.verdicts import SignatureCheck, SignatureStatus
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

_HOME: Final = {  # public name -> the module that defines it
    **dict.fromkeys(("Clock", "FixedClock", "SystemClock"), "fleetkey.clock"),
    **dict.fromkeys(
        ("LicenseFile", "parse_license_file", "serialize_license_file"), "fleetkey.core.codec"
    ),
    **dict.fromkeys(("Feature", "FeatureCatalog", "default_catalog"), "fleetkey.core.features"),
    **dict.fromkeys(("KeyTemplate", "issue_key"), "fleetkey.core.issuing"),
    **dict.fromkeys(("LicenseKey", "LicenseType"), "fleetkey.core.license"),
    **dict.fromkeys(
        ("Decision", "Grant", "InstalledKeys", "Outcome", "effective_features", "judge"),
        "fleetkey.core.rules",
    ),
    **dict.fromkeys(
        ("Algorithm", "PublicKey", "SigningKey", "TrustedKeys"), "fleetkey.core.signing"
    ),
    **dict.fromkeys(("SignatureCheck", "SignatureStatus"), "fleetkey.core.verdicts"),
    **dict.fromkeys(("NEVER", "Term"), "fleetkey.core.terms"),
    "FleetkeyError": "fleetkey.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'fleetkey' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # once loaded, an ordinary module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
