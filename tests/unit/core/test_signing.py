"""Signing and verification: valid, invalid (tampered) and unverifiable (foreign key)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkey.core.codec import parse_license_file, serialize_keys
from fleetkey.core.license import LicenseType
from fleetkey.core.signing import Algorithm, PublicKey, SigningKey, TrustedKeys
from fleetkey.core.terms import NEVER
from fleetkey.core.verdicts import SignatureStatus
from fleetkey.errors import KeyringError, PassphraseError, SignatureError
from fleetkey.testing import make_license, signing_key_for, trusted_keys_for

from tests.helpers import VENDOR_FILE

HEX = "0123456789abcdef"


def tamper(data: bytes, attribute: str, position: int) -> bytes:
    """Change one hex digit of ``attribute`` in a serialized one-key file."""
    text = data.decode("iso-8859-1")
    start = text.index(f"{attribute}='") + len(attribute) + 2
    end = text.index("'", start)
    index = start + position % (end - start)
    old = text[index].lower()
    new = HEX[(HEX.index(old) + 1) % 16]
    return (text[:index] + new + text[index + 1 :]).encode("iso-8859-1")


class TestVerification:
    @pytest.mark.parametrize("algorithm", list(Algorithm))
    def test_issued_key_verifies_against_its_signer(self, algorithm: Algorithm) -> None:
        key = make_license(signer=signing_key_for(algorithm))
        check = trusted_keys_for(algorithm).check(key)
        assert check.status is SignatureStatus.VALID
        assert check.key_name == f"test-{algorithm.value}"

    @given(
        attribute=st.sampled_from(["Serial", "Options", "Duration", "Validation"]),
        position=st.integers(0, 511),
        algorithm=st.sampled_from(list(Algorithm)),
    )
    @settings(max_examples=150, deadline=None)
    def test_changing_any_hex_digit_makes_verification_fail(
        self, attribute: str, position: int, algorithm: Algorithm
    ) -> None:
        data = serialize_keys([make_license(signer=signing_key_for(algorithm), expires=NEVER)])
        (key,) = parse_license_file(tamper(data, attribute, position)).keys
        check = trusted_keys_for(algorithm).check(key)
        assert check.status is not SignatureStatus.VALID
        if attribute != "Validation" or algorithm is Algorithm.ED25519:
            # content changed under an intact signature: provably altered. A changed RSA
            # signature no longer decodes under our key, like one made by a foreign key.
            assert check.status is SignatureStatus.INVALID
        with pytest.raises(SignatureError):
            trusted_keys_for(algorithm).verify(key)

    @pytest.mark.parametrize("algorithm", list(Algorithm))
    def test_changing_the_type_makes_verification_fail(self, algorithm: Algorithm) -> None:
        data = serialize_keys([make_license(signer=signing_key_for(algorithm))])
        (key,) = parse_license_file(data.replace(b"Type='Phone'", b"Type='Site'")).keys
        assert key.type is LicenseType.SITE
        assert trusted_keys_for(algorithm).check(key).status is SignatureStatus.INVALID

    def test_rsa_tampering_is_attributed_to_the_key_that_signed(self) -> None:
        key = make_license(signer=signing_key_for(Algorithm.RSA2048))
        check = trusted_keys_for(Algorithm.RSA2048).check(replace(key, options=3))
        assert check.status is SignatureStatus.INVALID
        assert check.key_name == "test-rsa2048"
        assert "altered" in check.reason

    def test_vendor_file_is_unverifiable_with_no_rsa_key(self) -> None:
        (key,) = parse_license_file(VENDOR_FILE.read_bytes()).keys
        check = trusted_keys_for(Algorithm.ED25519).check(key)
        assert check.status is SignatureStatus.UNVERIFIABLE
        assert check.reason == "no trusted RSA-2048 key"

    def test_vendor_file_is_unverifiable_even_with_our_rsa_key(self) -> None:
        (key,) = parse_license_file(VENDOR_FILE.read_bytes()).keys
        check = trusted_keys_for(*Algorithm).check(key)
        assert check.status is SignatureStatus.UNVERIFIABLE
        assert "RSA-2048 key fleetkey does not hold" in check.reason

    def test_key_signed_by_untrusted_ed25519_key_is_invalid(self) -> None:
        key = make_license(signer=SigningKey.generate())
        check = trusted_keys_for().check(key)
        assert check.status is SignatureStatus.INVALID
        assert "does not verify against any of 1 trusted Ed25519 key(s)" in check.reason

    def test_rotation_keeps_old_signatures_valid(self) -> None:
        old, new = SigningKey.generate(), SigningKey.generate()
        trusted = TrustedKeys([("new", new.public), ("old", old.public)])
        assert trusted.check(make_license(signer=old)).key_name == "old"
        assert trusted.check(make_license(signer=new)).key_name == "new"

    def test_empty_trust_makes_everything_unverifiable(self) -> None:
        check = TrustedKeys().check(make_license())
        assert check.status is SignatureStatus.UNVERIFIABLE


class TestKeyMaterial:
    @pytest.mark.parametrize("algorithm", list(Algorithm))
    def test_private_key_pem_round_trips_encrypted(self, algorithm: Algorithm) -> None:
        key = signing_key_for(algorithm)
        pem = key.to_pem(b"pass")
        assert b"ENCRYPTED PRIVATE KEY" in pem
        again = SigningKey.from_pem(pem, b"pass")
        assert again.public.fingerprint == key.public.fingerprint

    def test_wrong_passphrase_is_a_passphrase_error(self) -> None:
        pem = signing_key_for().to_pem(b"pass")
        with pytest.raises(PassphraseError, match="passphrase does not open this key"):
            SigningKey.from_pem(pem, b"wrong", source="k.pem")

    def test_missing_passphrase_for_encrypted_key_is_a_passphrase_error(self) -> None:
        pem = signing_key_for().to_pem(b"pass")
        with pytest.raises(PassphraseError, match="encrypted and no passphrase"):
            SigningKey.from_pem(pem, None, source="k.pem")

    def test_public_pem_round_trips(self) -> None:
        public = signing_key_for().public
        assert PublicKey.from_pem(public.to_pem()).fingerprint == public.fingerprint

    def test_private_pem_is_refused_as_public_key(self) -> None:
        with pytest.raises(KeyringError, match="holds a private key"):
            PublicKey.from_pem(signing_key_for().to_pem(None), source="k.pem")

    def test_garbage_is_refused_as_public_key(self) -> None:
        with pytest.raises(KeyringError, match="is not a PEM public key"):
            PublicKey.from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")

    def test_rsa_1024_is_refused(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        small = small.public_key()
        pem = small.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(KeyringError, match="RSA key has 1024 bits, expected 2048"):
            PublicKey.from_pem(pem)

    def test_ec_key_is_refused(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        pem = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        with pytest.raises(KeyringError, match="expected an Ed25519 or RSA-2048 key"):
            PublicKey.from_pem(pem)
