"""Every error fleetkey raises on purpose.

The tree::

    FleetkeyError                     root: catch this to catch everything fleetkey means to raise
    ├── LicenseFormatError            a license file does not parse (file, key index, attribute)
    │   ├── FileTooLargeError         over the size cap, rejected before parsing
    │   ├── EncodingDeclarationError  a byte-order mark, or an XML declaration not naming ISO-8859-1
    │   ├── UnsafeXMLError            a DTD, an entity declaration or an external reference
    │   ├── MalformedXMLError         not well-formed XML
    │   ├── LicenseStructureError     wrong root, unexpected element, stray text
    │   └── LicenseAttributeError     a missing, extra or ill-formed attribute value
    ├── LicenseValueError             a license we are asked to issue breaks the rules of spec §2
    ├── FeatureCatalogError           the feature catalog is malformed or names an unknown feature
    ├── SignatureError                a signature does not verify against any trusted key
    ├── KeyringError                  the keyring: unknown key, wrong or missing passphrase, bad PEM
    │   └── PassphraseError           the passphrase is missing or does not open the key
    └── InputError                    operator input (a CSV row, a date, a MAC) is not acceptable

This module imports nothing from fleetkey.
"""

from __future__ import annotations


class FleetkeyError(Exception):
    """Root of every error fleetkey raises on purpose.

    ``hint`` says what the user can do about it; the CLI prints it under the message.
    """

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


class LicenseFormatError(FleetkeyError):
    """A license file does not parse. Carries the file, the key index and the attribute."""

    hint = "a license file is <licenses> with <licenseKey .../> elements, see spec §2"

    def __init__(
        self,
        detail: str,
        *,
        source: str = "<bytes>",
        key_index: int | None = None,
        attribute: str | None = None,
    ) -> None:
        where = source
        if key_index is not None:
            where += f" key {key_index}"
        super().__init__(f"{where}: {detail}")
        self.source = source
        self.key_index = key_index
        self.attribute = attribute
        self.detail = detail


class FileTooLargeError(LicenseFormatError):
    """The file is larger than the parser's size cap."""


class EncodingDeclarationError(LicenseFormatError):
    """The file does not declare ISO-8859-1 (or carries a byte-order mark)."""


class UnsafeXMLError(LicenseFormatError):
    """The file holds a DTD, an entity declaration or an external reference."""


class MalformedXMLError(LicenseFormatError):
    """The file is not well-formed XML."""


class LicenseStructureError(LicenseFormatError):
    """Wrong root element, an unexpected element, or text where none belongs."""


class LicenseAttributeError(LicenseFormatError):
    """A licenseKey attribute is missing, extra, or not of the expected form."""


class LicenseValueError(FleetkeyError):
    """A license fleetkey is asked to build or issue breaks the rules of spec §2."""


class FeatureCatalogError(FleetkeyError):
    """The feature catalog is malformed, or a feature name is not in it."""


class SignatureError(FleetkeyError):
    """A license key's signature does not verify against any trusted key."""


class KeyringError(FleetkeyError):
    """A keyring operation failed: unknown key, bad PEM, a key that cannot sign."""


class PassphraseError(KeyringError):
    """The passphrase for an encrypted private key is missing or wrong."""

    hint = "set FLEETKEY_KEY_PASSPHRASE to the passphrase the key was created with"


class InputError(FleetkeyError):
    """Operator input (a CSV row, a date, a MAC, a feature list) is not acceptable."""
