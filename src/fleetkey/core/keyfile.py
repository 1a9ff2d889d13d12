"""Private keys at rest: the PKCS#8 ``ENCRYPTED PRIVATE KEY`` PEM fleetkey writes, and what any
key PEM says about its own protection.

Written: PBES2 (RFC 8018 §6.2) with the scrypt KDF (RFC 7914 §7) and AES-256-CBC, as ``openssl
pkcs8 -topk8 -scrypt`` writes it. scrypt at N=2^17, r=8, p=1 takes 128 MiB and ~0.3 s per
passphrase guess on one core (docs/authority.md has the measurement). cryptography writes PKCS#8
only with PBKDF2 at 2,048 iterations (what fleetkey wrote before, ~0.4 ms a guess), so the DER
around its scrypt and AES is written here; reading stays cryptography's (``core.signing``), which
opens both, so keys written before still load.

Read: :func:`key_protection` walks the DER far enough to name the KDF and its cost parameters,
without the passphrase, so ``keys list`` and ``keys rewrap`` can tell old keys from current ones.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.padding import PKCS7

from fleetkey.errors import KeyringError

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
_ENCRYPTED_PEM: Final = "ENCRYPTED PRIVATE KEY"  # RFC 7468 §11: the PEM label


class Kdf(enum.StrEnum):
    """How a private key PEM turns a passphrase into its encryption key."""

    NONE = "none"  # unencrypted
    SCRYPT = "scrypt"  # PBES2 with scrypt: what fleetkey writes
    PBKDF2 = "pbkdf2"  # PBES2 with PBKDF2: cryptography's BestAvailableEncryption
    OTHER = "other"  # anything else, e.g. PKCS#5 v1.5 PBES1


@dataclass(frozen=True, slots=True)
class KeyProtection:
    """How a private key PEM is protected at rest: its KDF and the KDF's cost parameters."""

    kdf: Kdf
    cost: tuple[tuple[str, int], ...] = ()

    @property
    def current(self) -> bool:
        """Encrypted the way fleetkey encrypts keys now (``keys rewrap`` brings others here)."""
        return self == CURRENT_PROTECTION

    def __str__(self) -> str:
        if self.kdf is Kdf.NONE:
            return "unencrypted"
        return " ".join([self.kdf.value, *(f"{name}={value}" for name, value in self.cost)])


CURRENT_PROTECTION: Final = KeyProtection(
    Kdf.SCRYPT, (("N", SCRYPT_N), ("r", SCRYPT_R), ("p", SCRYPT_P))
)


def key_protection(pem: bytes, *, source: str = "<pem>") -> KeyProtection:
    """Read from a PKCS#8 PEM how its private key is protected (without the passphrase)."""
    text = pem.decode("ascii", "replace")
    if f"-----BEGIN {_ENCRYPTED_PEM}-----" not in text:
        return KeyProtection(Kdf.NONE)
    try:
        body = text.split(f"-----BEGIN {_ENCRYPTED_PEM}-----", 1)[1].split("-----END", 1)[0]
        (algorithm, _data) = _der_items(_der_items(base64.b64decode(body))[0][1])
        (scheme, parameters) = _der_items(algorithm[1])
        if scheme[2] != _PBES2:
            return KeyProtection(Kdf.OTHER)
        kdf = _der_items(_der_items(parameters[1])[0][1])
        values = _der_items(kdf[1][1])
    except (IndexError, ValueError, binascii.Error) as exc:
        raise KeyringError(f"{source} is not a PKCS#8 encrypted private key: {exc}") from exc
    numbers = [int.from_bytes(value, "big") for tag, value, _ in values if tag == _INTEGER]
    if kdf[0][2] == _SCRYPT and len(numbers) >= 3:
        return KeyProtection(Kdf.SCRYPT, tuple(zip(("N", "r", "p"), numbers, strict=False)))
    if kdf[0][2] == _PBKDF2 and numbers:
        return KeyProtection(Kdf.PBKDF2, (("iterations", numbers[0]),))
    return KeyProtection(Kdf.OTHER)


def encrypt_pkcs8(plain: bytes, passphrase: bytes) -> bytes:
    """PEM ``ENCRYPTED PRIVATE KEY`` of a PKCS#8 DER: PBES2, scrypt, AES-256-CBC (RFC 7914 §7),
    at ``CURRENT_PROTECTION``'s cost (one scrypt, ~0.3 s)."""
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
