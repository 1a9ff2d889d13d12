"""Signing and verifying license keys (spec §2). The one module that touches cryptography's hazmat.

Ed25519 by default; RSA-2048 with PKCS#1 v1.5 and SHA-256 on request (the Validation length of
vendor files). A verifier tries each trusted public key of the signature's algorithm.

Verdicts: ``valid`` (a trusted key verifies it), ``invalid`` (it claims to come from a key we trust
but does not verify: tampered), ``unverifiable`` (we hold no key that could have made it, e.g. a
vendor file). For RSA the distinction is exact: PKCS#1 v1.5 lets us recover the signed digest with
each public key, so a signature that decodes to a well-formed SHA-256 DigestInfo under one of our
keys was made by it and a digest mismatch means tampering. Ed25519 has no such recovery: a
signature of an algorithm we hold keys for that verifies under none of them is reported invalid.

Private keys at rest are PKCS#8 ``ENCRYPTED PRIVATE KEY`` PEM: PBES2 (RFC 8018 §6.2) with the
scrypt KDF (RFC 7914 §7) and AES-256-CBC, as ``openssl pkcs8 -topk8 -scrypt`` writes them. scrypt
at N=2^17, r=8, p=1 takes 128 MiB and ~0.3 s per passphrase guess on one core (docs/authority.md
has the measurement). cryptography writes PKCS#8 only with PBKDF2 at 2,048 iterations (what
fleetkey wrote before, ~0.4 ms a guess), so the DER around its scrypt and AES is written here;
reading stays cryptography's, which opens both, so keys written before still load.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.padding import PKCS7

from fleetkey.core.license import LicenseKey
from fleetkey.errors import KeyringError, PassphraseError, SignatureError

RSA_BITS: Final = 2048  # spec §2: RSA-2048, the length of vendor Validation values
RSA_EXPONENT: Final = 65537
# RFC 8017 §9.2 note 1: DER prefix of a SHA-256 DigestInfo in an EMSA-PKCS1-v1_5 encoding.
SHA256_DIGEST_INFO: Final = bytes.fromhex("3031300d060960864801650304020105000420")
# OWASP Password Storage Cheat Sheet, scrypt: "N=2^17 (128 MiB), r=8 (1024 bytes), p=1" minimum.
SCRYPT_N: Final = 2**17
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_SALT_BYTES: Final = 16
_AES_KEY_BYTES: Final = 32  # AES-256
_AES_BLOCK_BITS: Final = 128
# Object identifiers as DER (tag, length, value): RFC 8018 A.4 id-PBES2, A.2 id-PBKDF2;
# RFC 7914 §7 id-scrypt; NIST aes256-CBC (2.16.840.1.101.3.4.1.42).
_PBES2: Final = bytes.fromhex("06092a864886f70d01050d")
_PBKDF2: Final = bytes.fromhex("06092a864886f70d01050c")
_SCRYPT: Final = bytes.fromhex("06092b06010401da47040b")
_AES256_CBC: Final = bytes.fromhex("060960864801650304012a")
_SEQUENCE, _INTEGER, _OCTETS = 0x30, 0x02, 0x04
_ENCRYPTED_PEM: Final = "ENCRYPTED PRIVATE KEY"


class Algorithm(enum.StrEnum):
    """Signature algorithms fleetkey signs with."""

    ED25519 = "ed25519"
    RSA2048 = "rsa2048"

    @property
    def signature_bytes(self) -> int:
        return 64 if self is Algorithm.ED25519 else RSA_BITS // 8


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
        except InvalidSignature:
            raise SignatureError("signature does not verify") from None

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


@dataclass(frozen=True, slots=True)
class KeyProtection:
    """How a private key PEM is protected at rest: its KDF and the KDF's cost parameters."""

    kdf: str  # "none" (unencrypted), "scrypt", "pbkdf2", or "other" (e.g. PKCS#5 v1.5 PBES1)
    cost: tuple[tuple[str, int], ...] = ()

    @property
    def current(self) -> bool:
        """Encrypted the way fleetkey encrypts keys now (``keys rewrap`` brings others here)."""
        return self == CURRENT_PROTECTION

    def __str__(self) -> str:
        if self.kdf == "none":
            return "unencrypted"
        return " ".join([self.kdf, *(f"{name}={value}" for name, value in self.cost)])


CURRENT_PROTECTION: Final = KeyProtection(
    "scrypt", (("N", SCRYPT_N), ("r", SCRYPT_R), ("p", SCRYPT_P))
)


def key_protection(pem: bytes, *, source: str = "<pem>") -> KeyProtection:
    """Read from a PKCS#8 PEM how its private key is protected (without the passphrase)."""
    text = pem.decode("ascii", "replace")
    if f"-----BEGIN {_ENCRYPTED_PEM}-----" not in text:
        return KeyProtection("none")
    try:
        body = text.split(f"-----BEGIN {_ENCRYPTED_PEM}-----", 1)[1].split("-----END", 1)[0]
        (algorithm, _data) = _der_items(_der_items(base64.b64decode(body))[0][1])
        (scheme, parameters) = _der_items(algorithm[1])
        if scheme[2] != _PBES2:
            return KeyProtection("other")
        kdf = _der_items(_der_items(parameters[1])[0][1])
        values = _der_items(kdf[1][1])
    except (IndexError, ValueError, binascii.Error) as exc:
        raise KeyringError(f"{source} is not a PKCS#8 encrypted private key: {exc}") from exc
    numbers = [int.from_bytes(value, "big") for tag, value, _ in values if tag == _INTEGER]
    if kdf[0][2] == _SCRYPT and len(numbers) >= 3:
        return KeyProtection("scrypt", tuple(zip(("N", "r", "p"), numbers, strict=False)))
    if kdf[0][2] == _PBKDF2 and numbers:
        return KeyProtection("pbkdf2", (("iterations", numbers[0]),))
    return KeyProtection("other")


def _der_items(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """The DER elements in ``data``, in order: (tag, value, whole encoding)."""
    items, at = [], 0
    while at < len(data):
        tag, length, start = data[at], data[at + 1], at + 2
        if length & 0x80:
            size, length = length & 0x7F, int.from_bytes(data[start : start + (length & 0x7F)])
            start += size
        if start + length > len(data):
            raise ValueError("DER element runs past its container")
        items.append((tag, data[start : start + length], data[at : start + length]))
        at = start + length
    return items


def _der(tag: int, value: bytes) -> bytes:
    length = len(value)
    if length < 0x80:
        return bytes((tag, length)) + value
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + value


def _der_int(value: int) -> bytes:
    return _der(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _encrypt_pkcs8(plain: bytes, passphrase: bytes) -> bytes:
    """PEM ``ENCRYPTED PRIVATE KEY`` of a PKCS#8 DER: PBES2, scrypt, AES-256-CBC (RFC 7914 §7)."""
    salt, iv = os.urandom(_SALT_BYTES), os.urandom(_AES_BLOCK_BITS // 8)
    secret = Scrypt(salt=salt, length=_AES_KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(
        passphrase
    )
    padder = PKCS7(_AES_BLOCK_BITS).padder()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    padded = padder.update(plain) + padder.finalize()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    costs = _der_int(SCRYPT_N) + _der_int(SCRYPT_R) + _der_int(SCRYPT_P)
    kdf = _der(_SEQUENCE, _SCRYPT + _der(_SEQUENCE, _der(_OCTETS, salt) + costs))
    cipher = _der(_SEQUENCE, _AES256_CBC + _der(_OCTETS, iv))
    scheme = _der(_SEQUENCE, _PBES2 + _der(_SEQUENCE, kdf + cipher))
    der = _der(_SEQUENCE, scheme + _der(_OCTETS, ciphertext))
    text = base64.b64encode(der).decode("ascii")
    lines = [text[start : start + 64] for start in range(0, len(text), 64)]  # RFC 7468 §2
    armored = "\n".join(
        [f"-----BEGIN {_ENCRYPTED_PEM}-----", *lines, f"-----END {_ENCRYPTED_PEM}-----"]
    )
    return (armored + "\n").encode("ascii")


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
        """PKCS#8 PEM; encrypted (scrypt, AES-256-CBC: ``CURRENT_PROTECTION``) when
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
        return _encrypt_pkcs8(plain, passphrase)

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
