"""The keyring in ``<data>/keys``: signing keys (private part encrypted at rest) and trusted keys.

One key is active and signs; every other key stays trusted for verification, so licenses signed
before a rotation keep verifying. ``keyring.json`` indexes the keys; each key has
``<name>.pub.pem`` and, when we hold it, ``<name>.key.pem`` (PKCS#8, mode 0600, encrypted with
the passphrase unless created with the explicit unencrypted flag: scrypt N=2^17, r=8, p=1 and
AES-256-CBC, see ``core/signing.py``; ``rewrap`` re-encrypts a key written by an earlier version
with PBKDF2 at 2,048 iterations). Every file is written whole or not at all
(``authority/files.py``); a key that cannot be written whole leaves the keyring as it was.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from fleetkey.authority.files import atomic_write, write_new
from fleetkey.clock import Clock
from fleetkey.core.keyfile import KeyProtection, key_protection
from fleetkey.core.signing import Algorithm, PublicKey, SigningKey, TrustedKeys
from fleetkey.errors import KeyringError, PassphraseError

PASSPHRASE_ENV: Final = "FLEETKEY_KEY_PASSPHRASE"  # noqa: S105  # a variable name, not a secret
INDEX: Final = "keyring.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class KeyEntry:
    name: str
    algorithm: Algorithm
    fingerprint: str
    created_at: str
    private: bool
    encrypted: bool
    active: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"algorithm": self.algorithm.value}


def passphrase_from_env(env: Mapping[str, str] = os.environ) -> bytes | None:
    """``FLEETKEY_KEY_PASSPHRASE`` as bytes; None when unset or empty."""
    value = env.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


class Keyring:
    """The keys in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._entries = self._load()

    def _load(self) -> list[KeyEntry]:
        index = self.directory / INDEX
        if not index.exists():
            return []
        try:
            document = json.loads(index.read_text(encoding="utf-8"))
            active = document.get("active")
            return [
                KeyEntry(
                    name=item["name"],
                    algorithm=Algorithm(item["algorithm"]),
                    fingerprint=item["fingerprint"],
                    created_at=item["created_at"],
                    private=bool(item["private"]),
                    encrypted=bool(item["encrypted"]),
                    active=item["name"] == active,
                )
                for item in document["keys"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"{index} is damaged: {exc}") from exc

    def _save(self) -> None:
        active = next((entry.name for entry in self._entries if entry.active), None)
        document = {
            "version": 1,
            "active": active,
            "keys": [
                {k: v for k, v in entry.to_json().items() if k != "active"}
                for entry in self._entries
            ],
        }
        text = json.dumps(document, indent=2) + "\n"
        atomic_write(self.directory / INDEX, text.encode("utf-8"))

    def entries(self) -> list[KeyEntry]:
        return list(self._entries)

    def entry(self, name: str) -> KeyEntry:
        for entry in self._entries:
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in self._entries) or "none"
        raise KeyringError(f"no key named {name!r} in the keyring (keys: {known})")

    @property
    def active(self) -> KeyEntry:
        for entry in self._entries:
            if entry.active:
                return entry
        raise KeyringError(
            "the keyring has no active signing key",
            hint="create one with `fleetkey keys create --activate`",
        )

    def _check_new(self, name: str, fingerprint: str) -> None:
        if not _NAME.fullmatch(name):
            raise KeyringError(
                f"key name {name!r} is not valid: expected letters, digits, '.', '_', '-' "
                "(at most 64, starting with a letter or digit)"
            )
        for entry in self._entries:
            if entry.name == name:
                raise KeyringError(f"a key named {name!r} already exists")
            if entry.fingerprint == fingerprint:
                raise KeyringError(f"this key is already in the keyring as {entry.name!r}")

    def create(
        self,
        clock: Clock,
        *,
        algorithm: Algorithm = Algorithm.ED25519,
        name: str | None = None,
        passphrase: bytes | None,
        unencrypted: bool = False,
        activate: bool = False,
    ) -> KeyEntry:
        """Generate a signing key; the first key, or ``activate``, makes it the active one."""
        if passphrase is None and not unencrypted:
            raise PassphraseError(
                f"{PASSPHRASE_ENV} is not set: private keys are encrypted at rest",
                hint=f"export {PASSPHRASE_ENV}=..., or pass --unencrypted-key to store the "
                "key in clear (file mode 0600)",
            )
        key = SigningKey.generate(algorithm)
        fingerprint = key.public.fingerprint
        name = f"{algorithm.value}-{fingerprint[:8]}" if name is None else name
        self._check_new(name, fingerprint)
        entry = KeyEntry(
            name=name,
            algorithm=algorithm,
            fingerprint=fingerprint,
            created_at=clock.now().isoformat(timespec="seconds"),
            private=True,
            encrypted=not unencrypted,
        )
        files = {
            self._private_path(name): key.to_pem(None if unencrypted else passphrase),
            self._public_path(name): key.public.to_pem(),
        }
        self._add(entry, files, activate=activate or not self._entries)
        return self.entry(name)

    def _add(self, entry: KeyEntry, files: dict[Path, bytes], *, activate: bool) -> None:
        """Write ``files`` and record ``entry``: all of it, or (on any failure) none of it."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        before, written = list(self._entries), []
        try:
            for path, data in files.items():
                write_new(path, data)
                written.append(path)
            self._entries.append(entry)
            if activate:
                self._set_active(entry.name)
            self._save()
        except BaseException:
            self._entries = before
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def import_public(self, pem: bytes, clock: Clock, *, name: str | None, source: str) -> KeyEntry:
        """Trust a public key (PEM) for verification; it can never sign."""
        public = PublicKey.from_pem(pem, source=source)
        name = f"{public.algorithm.value}-{public.fingerprint[:8]}" if name is None else name
        self._check_new(name, public.fingerprint)
        entry = KeyEntry(
            name=name,
            algorithm=public.algorithm,
            fingerprint=public.fingerprint,
            created_at=clock.now().isoformat(timespec="seconds"),
            private=False,
            encrypted=False,
        )
        self._add(entry, {self._public_path(name): public.to_pem()}, activate=False)
        return entry

    def activate(self, name: str) -> KeyEntry:
        """Make ``name`` the signing key; the previous one stays trusted."""
        if not self.entry(name).private:
            raise KeyringError(
                f"key {name!r} is a public key only and cannot sign",
                hint="activate a key created with `fleetkey keys create`",
            )
        self._set_active(name)
        self._save()
        return self.entry(name)

    def _set_active(self, name: str) -> None:
        self._entries = [replace(e, active=e.name == name) for e in self._entries]

    def public_key(self, name: str) -> PublicKey:
        path = self._public_path(self.entry(name).name)
        try:
            pem = path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyringError(f"public key file {path} is missing") from exc
        public = PublicKey.from_pem(pem, source=str(path))
        if public.fingerprint != self.entry(name).fingerprint:
            raise KeyringError(f"{path} does not match the fingerprint recorded in {INDEX}")
        return public

    def trusted(self) -> TrustedKeys:
        """Every key, the active one first (most files are signed by it)."""
        ordered = sorted(self._entries, key=lambda entry: not entry.active)
        return TrustedKeys((entry.name, self.public_key(entry.name)) for entry in ordered)

    def signer(self, passphrase: bytes | None) -> tuple[str, SigningKey]:
        """The active key, opened with ``passphrase`` when it is encrypted."""
        entry = self.active
        return entry.name, self._open(entry, self._private_pem(entry), passphrase)

    def protection(self, name: str) -> KeyProtection | None:
        """How key ``name``'s private part is protected on disk; None for a public-only key."""
        entry = self.entry(name)
        if not entry.private:
            return None
        return key_protection(self._private_pem(entry), source=str(self._private_path(name)))

    def to_rewrap(self) -> list[tuple[str, KeyProtection]]:
        """Encrypted private keys not protected the current way, with how they are."""
        found = []
        for entry in self._entries:
            kept = self.protection(entry.name) if entry.encrypted else None
            if kept is not None and not kept.current:
                found.append((entry.name, kept))
        return found

    def rewrap(self, name: str, passphrase: bytes | None) -> tuple[KeyProtection, KeyProtection]:
        """Re-encrypt key ``name`` the current way (``CURRENT_PROTECTION``), same passphrase.

        Returns the protection before and after; a key already current is left as it is. The
        file is replaced atomically: a failure leaves the old file, which still opens.
        """
        entry = self.entry(name)
        if not entry.private or not entry.encrypted:
            raise KeyringError(
                f"key {name!r} has no encrypted private key to rewrap",
                hint="rewrap applies to keys created with a passphrase",
            )
        pem = self._private_pem(entry)
        path = self._private_path(name)
        before = key_protection(pem, source=str(path))
        if before.current:
            return before, before
        if passphrase is None:
            raise PassphraseError(f"{PASSPHRASE_ENV} is not set and key {name!r} is encrypted")
        fresh = self._open(entry, pem, passphrase).to_pem(passphrase)
        atomic_write(path, fresh)
        return before, key_protection(fresh, source=str(path))

    def _private_pem(self, entry: KeyEntry) -> bytes:
        path = self._private_path(entry.name)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyringError(f"private key file {path} is missing") from exc

    def _open(self, entry: KeyEntry, pem: bytes, passphrase: bytes | None) -> SigningKey:
        path = self._private_path(entry.name)
        if entry.encrypted and passphrase is None:
            raise PassphraseError(
                f"{PASSPHRASE_ENV} is not set and key {entry.name!r} is encrypted"
            )
        key = SigningKey.from_pem(pem, passphrase, source=str(path))
        if key.public.fingerprint != entry.fingerprint:
            raise KeyringError(f"{path} does not match the fingerprint recorded in {INDEX}")
        return key

    def _private_path(self, name: str) -> Path:
        return self.directory / f"{name}.key.pem"

    def _public_path(self, name: str) -> Path:
        return self.directory / f"{name}.pub.pem"
