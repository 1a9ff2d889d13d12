"""Every error fleetkey raises on purpose: the whole tree is here, and only here.

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
    │   └── UnknownFeatureError       a feature name that is not in the catalog
    ├── SignatureError                a signature does not verify against any trusted key
    ├── KeyringError                  the keyring: unknown key, wrong or missing passphrase, bad PEM
    │   └── PassphraseError           the passphrase is missing or does not open the key
    ├── InputError                    operator input (a CSV row, a date, a MAC) is not acceptable
    │   ├── RowError                  bad rows of a CSV, each by its line (``problems``)
    │   ├── RequestPathError          a request path fleetkey refuses to serve (``reason``)
    │   ├── SipFormatError            a SIP contact URI or challenge fleetkey cannot use
    │   ├── DigestError               a Digest challenge fleetkey cannot answer (not MD5, no auth)
    │   ├── ConflictError             what is recorded forbids it: a site that exists, a revoked key
    │   │   └── UnsafePostError       posting would take from phones what they have (``losses``)
    │   ├── UploadRefusedError        a name phones do not upload, or over its size cap
    │   ├── MasterConfigError         a master configuration (``<mac>.cfg``) does not parse
    │   └── ScenarioError             a simulation scenario (file or built in code) is inconsistent
    ├── NotFoundError                 a site, phone, license or rollout that does not exist
    ├── NotInitializedError           the data directory has not been set up
    ├── TokenFileError                the admin API token file is not one fleetkey wrote
    ├── DatabaseError                 the database cannot be opened, or is at another schema
    ├── HeldFileError                 a spill or fallback file of fetch records is damaged
    ├── QueueFullError                the fetch-record queue stayed full for the whole timeout
    ├── ListenError                   a server cannot listen where it was told (port in use…)
    ├── EmulationError                emulated phones cannot boot: nothing listens, or all failed
    ├── PlanInfeasibleError           a rollout's phones do not fit before its deadline
    ├── WebhookError                  a signed webhook POST got no 2xx answer (``url``, ``status``)
    └── CommandFailedError            a check the operator ran failed (verify, audit verify, import)

Errors carry their context as attributes (``source``, ``key_index``, ``problems``, ``reason``,
``left``); ``hint`` says what the user can do about it. An error about one input names it in
``field`` as the library calls it (``expires``, ``capacity``), never as one edge spells it: the
CLI shows it as its flag (``--expires``), the admin API takes the same name as a JSON member.

This module imports nothing from fleetkey.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

ROWS_SHOWN: Final = 50  # bad CSV rows a RowError prints; the rest are counted


class FleetkeyError(Exception):
    """Root of every error fleetkey raises on purpose.

    ``hint`` says what the user can do about it; the CLI prints it under the message.
    ``field`` names the input at fault (a parameter or attribute name), when there is one.
    """

    hint: str | None = None
    field: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        if field is not None:
            self.field = field

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


class UnknownFeatureError(FeatureCatalogError):
    """A feature name (or ``slot-N``) that is not in the catalog."""


class SignatureError(FleetkeyError):
    """A license key's signature does not verify against any trusted key."""


class KeyringError(FleetkeyError):
    """A keyring operation failed: unknown key, bad PEM, a key that cannot sign."""


class PassphraseError(KeyringError):
    """The passphrase for an encrypted private key is missing or wrong."""

    hint = "set FLEETKEY_KEY_PASSPHRASE to the passphrase the key was created with"


class InputError(FleetkeyError):
    """Operator input (a CSV row, a date, a MAC, a feature list) is not acceptable."""


class ScenarioError(InputError):
    """A simulation scenario, read from a file or built in code, does not hold together: two
    sites with one serial, an event naming a license or site it lacks, or outside its period."""


class RowError(InputError):
    """Bad rows in a CSV; ``problems`` names each line. Nothing was done with any row."""

    def __init__(self, source: str, problems: Sequence[str], outcome: str) -> None:
        shown = "\n  ".join(problems[:ROWS_SHOWN])
        more = (
            f"\n  ... and {len(problems) - ROWS_SHOWN} more" if len(problems) > ROWS_SHOWN else ""
        )
        super().__init__(f"{source}: {len(problems)} bad row(s), {outcome}:\n  {shown}{more}")
        self.problems = list(problems)


class RequestPathError(InputError):
    """A request path fleetkey refuses to serve; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused path: {reason}")
        self.reason = reason


class UploadRefusedError(InputError):
    """The name is not one phones write, or the file is over its cap."""


class MasterConfigError(InputError):
    """A master configuration file does not parse; names the file and what is wrong."""


class SipFormatError(InputError):
    """A SIP contact URI or challenge fleetkey cannot use."""


class ConflictError(InputError):
    """The input is well-formed, but what is recorded forbids it: a site that already exists,
    a key that is not in a state to be posted or revoked, a rollout that cannot move so."""


class UnsafePostError(ConflictError):
    """Posting a key would take something from phones: it is expired, lasts less than the key
    it replaces (R7), ends a feature earlier or drops one. ``losses`` says each; the operator
    may force it."""

    def __init__(self, message: str, losses: Sequence[str], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, field="force")
        self.losses = list(losses)


class DigestError(InputError):
    """A Digest challenge fleetkey cannot answer: no nonce, not MD5, no ``qop=auth``."""


class NotFoundError(FleetkeyError):
    """A site, phone, license or rollout that does not exist."""


class NotInitializedError(FleetkeyError):
    """The data directory has not been set up."""

    hint = "run `fleetkey init` first (FLEETKEY_DATA chooses the directory)"


class TokenFileError(FleetkeyError):
    """The token file exists but is not one fleetkey wrote."""


class DatabaseError(FleetkeyError):
    """The database cannot be opened, or is not at the schema fleetkey expects."""


class HeldFileError(FleetkeyError):
    """A spill or fallback file of fetch records is damaged (not only torn at its end)."""


class QueueFullError(FleetkeyError):
    """The fetch-record queue stayed full for the whole timeout."""


class EmulationError(FleetkeyError):
    """Emulated phones cannot boot from their server: nothing listens there, it does not
    answer, or every phone failed (the message says the commonest reason)."""


class AnswerTooLargeError(EmulationError):
    """An emulated phone was sent a file larger than the emulator keeps (``path``, ``cap``
    bytes): the request failed, the phone goes on."""

    def __init__(self, path: str, cap: int) -> None:
        super().__init__(f"{path}: the answer is over {cap:,} bytes, the most the emulator keeps")
        self.path, self.cap = path, cap


class ListenError(FleetkeyError):
    """A server cannot listen at an address: the port is in use, needs privileges, or the
    address is not this machine's. ``protocol``, ``host``, ``port`` and ``errno`` say which."""

    def __init__(
        self,
        message: str,
        *,
        protocol: str,
        host: str,
        port: int,
        errno: int | None,
        hint: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, field=field)
        self.protocol, self.host, self.port, self.errno = protocol, host, port, errno


class PlanInfeasibleError(FleetkeyError):
    """The phones do not fit before the deadline; the message says what would be needed.

    ``left`` counts the phones left over per site; ``needed_capacity`` is the capacity that
    would have fitted them (None when more capacity would not help).
    """

    def __init__(self, message: str, left: dict[str, int], needed_capacity: float | None) -> None:
        super().__init__(message)
        self.left = left
        self.needed_capacity = needed_capacity


class WebhookError(FleetkeyError):
    """A signed webhook POST was not accepted: no answer (``status`` None) or not a 2xx."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class CommandFailedError(FleetkeyError):
    """A check the operator ran failed (a file that does not verify, a broken audit chain,
    files that do not parse); the message lists why."""
