"""Private keys at rest: scrypt at the current cost, keys written the old way still open, the
protection of any key PEM read without its passphrase."""

from __future__ import annotations

import time

import pytest

from fleetkey.core.keyfile import (
    CURRENT_PROTECTION,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    Kdf,
    KeyProtection,
    key_protection,
)
from fleetkey.core.signing import Algorithm, SigningKey
from fleetkey.errors import KeyringError, PassphraseError
from fleetkey.testing import signing_key_for


class TestPassphraseCost:
    """Private keys at rest: scrypt N=2^17, r=8, p=1; keys written before still open."""

    def test_encrypted_keys_use_scrypt_at_the_current_cost(self) -> None:
        pem = signing_key_for().to_pem(b"pass")
        assert key_protection(pem) == CURRENT_PROTECTION
        assert str(CURRENT_PROTECTION) == "scrypt N=131072 r=8 p=1"
        assert (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2**17, 8, 1)  # 128 * r * N bytes = 128 MiB

    def test_a_passphrase_guess_costs_at_least_100_ms(self) -> None:
        pem = signing_key_for().to_pem(b"the passphrase")
        started = time.perf_counter()
        with pytest.raises(PassphraseError):
            SigningKey.from_pem(pem, b"a guess")
        elapsed = time.perf_counter() - started
        assert elapsed >= 0.1, f"a wrong guess took {elapsed * 1000:.0f} ms"

    @pytest.mark.parametrize("algorithm", list(Algorithm))
    def test_a_key_written_the_old_way_still_opens(self, algorithm: Algorithm) -> None:
        from cryptography.hazmat.primitives import serialization

        key = signing_key_for(algorithm)
        # what fleetkey wrote before: cryptography's BestAvailableEncryption, PBKDF2 at 2,048
        old = serialization.load_pem_private_key(key.to_pem(None), None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
        assert key_protection(old) == KeyProtection(Kdf.PBKDF2, (("iterations", 2048),))
        assert SigningKey.from_pem(old, b"pass").public.fingerprint == key.public.fingerprint
        with pytest.raises(PassphraseError):
            SigningKey.from_pem(old, b"wrong")

    def test_an_unencrypted_key_says_so(self) -> None:
        assert key_protection(signing_key_for().to_pem(None)) == KeyProtection(Kdf.NONE)
        assert str(KeyProtection(Kdf.NONE)) == "unencrypted"

    def test_a_damaged_encrypted_key_is_reported(self) -> None:
        pem = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"
        with pytest.raises(KeyringError, match=r"k\.pem is not a PKCS#8 encrypted private key"):
            key_protection(pem, source="k.pem")
