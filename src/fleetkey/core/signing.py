"""Signing and verifying license keys (spec §2): one of the two modules that touch cryptography's
hazmat (the other, ``core.keyfile``, encrypts private keys at rest).

Ed25519 by default; RSA-2048 with PKCS#1 v1.5 and SHA-256 on request (the Validation length of
vendor files). A verifier tries each trusted public key of the signature's algorithm.

Verdicts: ``valid`` (a trusted key verifies it), ``invalid`` (it claims to come from a key we trust
but does not verify: tampered), ``unverifiable`` (we hold no key that could have made it, e.g. a
vendor file). For RSA the distinction is exact: PKCS#1 v1.5 lets us recover the signed digest with
each public key, so a signature that decodes to a well-formed SHA-256 DigestInfo under one of our
keys was made by it and a digest mismatch means tampering. Ed25519 has no such recovery: a
signature of an algorithm we hold keys for that verifies under none of them is reported invalid.

Private keys are read with cryptography's ``load_pem_private_key`` (any PKCS#8 PEM, encrypted
with scrypt or PBKDF2) and written as ``core.keyfile`` encrypts them.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fleetkey.core.keyfile import encrypt_pkcs8
from fleetkey.core.license import LicenseKey
from fleetkey.core.verdicts import SignatureCheck, SignatureStatus
from fleetkey.errors import KeyringError, PassphraseError, SignatureError

RSA_BITS: Final = 2048  # spec §2: RSA-2048, the length of vendor Validation values
RSA_EXPONENT: Final = 65537
# RFC 8017 §9.2 note 1: DER prefix of a SHA-256 DigestInfo in an EMSA-PKCS1-v1_5 encoding.
SHA256_DIGEST_INFO: Final = bytes.fromhex("3031300d060960864801650304020105000420")


class Algorithm(enum.StrEnum):
    """Signature algorithms fleetkey signs with."""

    ED25519 = "ed25519"
    RSA2048 = "rsa2048"

    @property
    def signature_bytes(self) -> int:
        return 64 if self is Algorithm.ED25519 else RSA_BITS // 8


_PublicKeyObject = Ed25519PublicKey | rsa.RSAPublicKey
_PrivateKeyObject = Ed25519PrivateKey | rsa.RSAPrivateKey


class PublicKey:
    """A public key that can check license signatures."""

    __slots__ = ("_key", "algorithm", "fingerprint")

    def __init__(self, key: _PublicKeyObject) -> None:
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size != RSA_BITS:
                raise KeyringError(f"RSA key has {key.key_size} bits, expected {RSA_BITS}")
            self.algorithm = Algorithm.RSA2048
        else:
            self.algorithm = Algorithm.ED25519
        self._key = key
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.fingerprint = hashlib.sha256(der).hexdigest()

    @classmethod
    def from_pem(cls, pem: bytes, *, source: str = "<pem>") -> PublicKey:
        """Load a SubjectPublicKeyInfo PEM; refuse private keys and unsupported algorithms."""
        if b"PRIVATE KEY" in pem:
            raise KeyringError(f"{source} holds a private key, expected a public key PEM")
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyringError(f"{source} is not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey | rsa.RSAPublicKey):
            raise KeyringError(
                f"{source} holds a {type(key).__name__}, expected an Ed25519 or RSA-2048 key"
            )
        return cls(key)

    def to_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> None:
        """Return None when ``signature`` over ``message`` is this key's; raise SignatureError."""
        try:
            if isinstance(self._key, rsa.RSAPublicKey):
                self._key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                self._key.verify(signature, message)
        except InvalidSignature as exc:
            raise SignatureError("signature does not verify") from exc

    def made(self, signature: bytes) -> bool:
        """True when ``signature`` was produced by this key, whatever message it signed.

        Exact for RSA (the PKCS#1 v1.5 encoding recovers to a SHA-256 DigestInfo only under the
        signer's key); for Ed25519 it cannot be known, and the answer is False.
        """
        if not isinstance(self._key, rsa.RSAPublicKey) or len(signature) != RSA_BITS // 8:
            return False
        try:
            recovered = self._key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
        except InvalidSignature:
            return False
        return len(recovered) == len(SHA256_DIGEST_INFO) + 32 and recovered.startswith(
            SHA256_DIGEST_INFO
        )


class SigningKey:
    """A private key that signs license keys."""

    __slots__ = ("_key", "algorithm", "public")

    def __init__(self, key: _PrivateKeyObject) -> None:
        self._key = key
        self.public = PublicKey(key.public_key())
        self.algorithm = self.public.algorithm

    @classmethod
    def generate(cls, algorithm: Algorithm = Algorithm.ED25519) -> SigningKey:
        if algorithm is Algorithm.RSA2048:
            return cls(rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=RSA_BITS))
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, passphrase: bytes | None, *, source: str = "<pem>") -> SigningKey:
        """Load a PKCS#8 PEM private key, encrypted (with ``passphrase``) or not."""
        encrypted = b"ENCRYPTED" in pem
        if encrypted and passphrase is None:
            raise PassphraseError(f"{source} is encrypted and no passphrase was given")
        try:
            key = serialization.load_pem_private_key(pem, passphrase if encrypted else None)
        except (ValueError, TypeError) as exc:
            if encrypted:
                raise PassphraseError(f"{source}: the passphrase does not open this key") from exc
            raise KeyringError(f"{source} is not a PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey | rsa.RSAPrivateKey):
            raise KeyringError(f"{source} holds a {type(key).__name__}, expected Ed25519 or RSA")
        return cls(key)

    def to_pem(self, passphrase: bytes | None) -> bytes:
        """PKCS#8 PEM; encrypted (scrypt, AES-256-CBC: ``keyfile.CURRENT_PROTECTION``) when
        ``passphrase`` is given, which costs one scrypt (~0.3 s)."""
        if not passphrase:
            return self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        plain = self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return encrypt_pkcs8(plain, passphrase)

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return self._key.sign(message)


class TrustedKeys:
    """The public keys a verifier trusts, by name; checks license signatures against them.

    Immutable once built, so one instance serves many threads; cryptography releases the GIL
    while it verifies.
    """

    def __init__(self, keys: Iterable[tuple[str, PublicKey]] = ()) -> None:
        self._keys: tuple[tuple[str, PublicKey], ...] = tuple(keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def names(self) -> Sequence[str]:
        return [name for name, _ in self._keys]

    def check(self, key: LicenseKey) -> SignatureCheck:
        """Verdict on ``key``'s Validation (see the module docstring for the three verdicts)."""
        signature = key.validation
        candidates = [
            (name, public)
            for name, public in self._keys
            if public.algorithm.signature_bytes == len(signature)
        ]
        algorithm = "Ed25519" if len(signature) == 64 else "RSA-2048"
        if not candidates:
            return SignatureCheck(
                SignatureStatus.UNVERIFIABLE,
                None,
                f"no trusted {algorithm} key",
            )
        message = key.signed_message()
        for name, public in candidates:  # in trust order: the keyring puts the active key first
            try:
                public.verify(signature, message)
            except SignatureError:
                continue
            return SignatureCheck(SignatureStatus.VALID, name, f"signed by trusted key {name!r}")
        for name, public in candidates:
            if public.made(signature):
                return SignatureCheck(
                    SignatureStatus.INVALID,
                    name,
                    f"signature was made by trusted key {name!r} over different content: "
                    "the file was altered",
                )
        if candidates[0][1].algorithm is Algorithm.RSA2048:
            return SignatureCheck(
                SignatureStatus.UNVERIFIABLE,
                None,
                "made by an RSA-2048 key fleetkey does not hold",
            )
        return SignatureCheck(
            SignatureStatus.INVALID,
            None,
            f"signature does not verify against any of {len(candidates)} trusted {algorithm} "
            "key(s): altered, or signed by a key fleetkey does not trust",
        )

    def verify(self, key: LicenseKey) -> str:
        """Name of the trusted key that signed ``key``; raise SignatureError otherwise."""
        check = self.check(key)
        if not check.valid or check.key_name is None:
            raise SignatureError(f"license {key.serial} ({key.type.value}): {check.reason}")
        return check.key_name
