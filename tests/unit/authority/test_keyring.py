"""The keyring on disk: encryption at rest and its cost, file modes, rotation, import and export,
a full disk."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fleetkey.authority.keyring import Keyring
from fleetkey.clock import FixedClock
from fleetkey.core.keyfile import CURRENT_PROTECTION, Kdf, KeyProtection
from fleetkey.core.signing import Algorithm, SigningKey
from fleetkey.errors import KeyringError, PassphraseError
from fleetkey.testing import make_license

from tests.tmpfs import fill, mounted_tmpfs, snapshot

PASS = b"s3cret passphrase"


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "keys")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestCreate:
    def test_first_key_is_active_and_encrypted_with_mode_0600(self, keyring: Keyring) -> None:
        entry = keyring.create(FixedClock(), passphrase=PASS)
        assert entry.active
        assert entry.encrypted
        private = keyring.directory / f"{entry.name}.key.pem"
        assert mode(private) == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in private.read_bytes()
        assert mode(keyring.directory) == 0o700

    def test_unencrypted_key_needs_the_flag_and_is_still_0600(self, keyring: Keyring) -> None:
        with pytest.raises(PassphraseError, match="FLEETKEY_KEY_PASSPHRASE is not set"):
            keyring.create(FixedClock(), passphrase=None)
        entry = keyring.create(FixedClock(), passphrase=None, unencrypted=True)
        private = keyring.directory / f"{entry.name}.key.pem"
        assert b"BEGIN PRIVATE KEY" in private.read_bytes()
        assert mode(private) == 0o600

    def test_signer_opens_the_key_with_the_passphrase(self, keyring: Keyring) -> None:
        entry = keyring.create(FixedClock(), passphrase=PASS)
        name, signer = keyring.signer(PASS)
        assert name == entry.name
        assert signer.public.fingerprint == entry.fingerprint

    def test_wrong_or_missing_passphrase_is_refused(self, keyring: Keyring) -> None:
        keyring.create(FixedClock(), passphrase=PASS)
        with pytest.raises(PassphraseError, match="does not open this key"):
            keyring.signer(b"wrong")
        with pytest.raises(PassphraseError, match="is encrypted"):
            keyring.signer(None)

    def test_rsa_key_signs_rsa_sized_licenses(self, keyring: Keyring) -> None:
        keyring.create(FixedClock(), algorithm=Algorithm.RSA2048, passphrase=PASS)
        _, signer = keyring.signer(PASS)
        assert len(make_license(signer=signer).validation) == 256

    @pytest.mark.parametrize("name", ["", "-x", "a/b", "../up", "x" * 65, "sp ace"])
    def test_bad_names_are_refused(self, keyring: Keyring, name: str) -> None:
        with pytest.raises(KeyringError, match="is not valid"):
            keyring.create(FixedClock(), passphrase=PASS, name=name)
        assert keyring.entries() == []

    def test_duplicate_name_is_refused(self, keyring: Keyring) -> None:
        keyring.create(FixedClock(), passphrase=PASS, name="k")
        with pytest.raises(KeyringError, match="a key named 'k' already exists"):
            keyring.create(FixedClock(), passphrase=PASS, name="k")


class TestRotation:
    def test_old_key_stays_trusted_after_activating_a_new_one(self, keyring: Keyring) -> None:
        keyring.create(FixedClock(), passphrase=PASS, name="old")
        _, old_signer = keyring.signer(PASS)
        old_license = make_license(signer=old_signer)
        keyring.create(FixedClock(), passphrase=PASS, name="new", activate=True)
        reopened = Keyring(keyring.directory)
        assert reopened.active.name == "new"
        assert reopened.trusted().check(old_license).key_name == "old"
        _, new_signer = reopened.signer(PASS)
        assert reopened.trusted().check(make_license(signer=new_signer)).key_name == "new"

    def test_new_key_is_not_active_unless_asked(self, keyring: Keyring) -> None:
        keyring.create(FixedClock(), passphrase=PASS, name="a")
        keyring.create(FixedClock(), passphrase=PASS, name="b")
        assert keyring.active.name == "a"
        keyring.activate("b")
        assert Keyring(keyring.directory).active.name == "b"

    def test_unknown_key_cannot_be_activated(self, keyring: Keyring) -> None:
        keyring.create(FixedClock(), passphrase=PASS, name="a")
        with pytest.raises(KeyringError, match=r"no key named 'zz' in the keyring \(keys: a\)"):
            keyring.activate("zz")


class TestPublicKeys:
    def test_imported_public_key_verifies_but_cannot_sign(self, keyring: Keyring) -> None:
        keyring.create(FixedClock(), passphrase=PASS, name="ours")
        distributor = SigningKey.generate()
        entry = keyring.import_public(
            distributor.public.to_pem(), FixedClock(), name="dist", source="dist.pem"
        )
        assert not entry.private
        assert keyring.trusted().check(make_license(signer=distributor)).key_name == "dist"
        with pytest.raises(KeyringError, match="public key only and cannot sign"):
            keyring.activate("dist")

    def test_same_key_twice_is_refused(self, keyring: Keyring) -> None:
        entry = keyring.create(FixedClock(), passphrase=PASS)
        pem = keyring.public_key(entry.name).to_pem()
        with pytest.raises(KeyringError, match="already in the keyring"):
            keyring.import_public(pem, FixedClock(), name="again", source="p.pem")

    def test_public_key_file_swapped_on_disk_is_detected(self, keyring: Keyring) -> None:
        entry = keyring.create(FixedClock(), passphrase=PASS)
        (keyring.directory / f"{entry.name}.pub.pem").write_bytes(
            SigningKey.generate().public.to_pem()
        )
        with pytest.raises(KeyringError, match="does not match the fingerprint"):
            keyring.trusted()

    def test_damaged_index_is_reported(self, keyring: Keyring) -> None:
        keyring.create(FixedClock(), passphrase=PASS)
        (keyring.directory / "keyring.json").write_text(json.dumps({"keys": [{"name": 1}]}))
        with pytest.raises(KeyringError, match=r"keyring\.json is damaged"):
            Keyring(keyring.directory)


class TestFullDisk:
    def test_a_key_that_cannot_be_written_whole_leaves_the_keyring_as_it_was(
        self, tmp_path: Path
    ) -> None:
        with mounted_tmpfs(tmp_path / "disk") as disk:
            keyring = Keyring(disk / "keys")
            first = keyring.create(FixedClock(), passphrase=PASS, name="first")
            before = snapshot(keyring.directory)
            fill(disk)
            with pytest.raises(OSError, match="No space left on device") as caught:
                keyring.create(FixedClock(), passphrase=PASS, name="second", activate=True)
            assert caught.value.filename == str(keyring.directory / "second.key.pem")
            assert snapshot(keyring.directory) == before  # no 0-byte, partial or temporary file
            assert [entry.name for entry in keyring.entries()] == ["first"]
            reopened = Keyring(keyring.directory)
            assert reopened.active.name == "first"
            assert reopened.signer(PASS)[1].public.fingerprint == first.fingerprint


def write_the_old_way(keyring: Keyring, name: str, passphrase: bytes) -> None:
    """Replace key ``name``'s file with what fleetkey wrote before scrypt: PKCS#8 encrypted by
    cryptography's BestAvailableEncryption (PBKDF2-HMAC-SHA256, 2,048 iterations)."""
    path = keyring.directory / f"{name}.key.pem"
    key = serialization.load_pem_private_key(path.read_bytes(), passphrase)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
    )


class TestRewrap:
    def test_new_keys_are_protected_the_current_way(self, keyring: Keyring) -> None:
        entry = keyring.create(FixedClock(), passphrase=PASS)
        assert keyring.protection(entry.name) == CURRENT_PROTECTION
        assert keyring.to_rewrap() == []

    def test_a_key_written_the_old_way_opens_and_is_rewrapped_to_the_current_cost(
        self, keyring: Keyring
    ) -> None:
        entry = keyring.create(FixedClock(), passphrase=PASS, name="old")
        write_the_old_way(keyring, "old", PASS)
        old = KeyProtection(Kdf.PBKDF2, (("iterations", 2048),))
        assert keyring.to_rewrap() == [("old", old)]
        assert keyring.signer(PASS)[1].public.fingerprint == entry.fingerprint  # still opens
        assert keyring.rewrap("old", PASS) == (old, CURRENT_PROTECTION)
        assert Keyring(keyring.directory).to_rewrap() == []
        assert keyring.signer(PASS)[1].public.fingerprint == entry.fingerprint
        assert mode(keyring.directory / "old.key.pem") == 0o600

    def test_rewrap_with_a_wrong_passphrase_leaves_the_file_as_it_was(
        self, keyring: Keyring
    ) -> None:
        keyring.create(FixedClock(), passphrase=PASS, name="old")
        write_the_old_way(keyring, "old", PASS)
        before = snapshot(keyring.directory)
        with pytest.raises(PassphraseError, match="does not open this key"):
            keyring.rewrap("old", b"wrong")
        with pytest.raises(PassphraseError, match="is not set"):
            keyring.rewrap("old", None)
        assert snapshot(keyring.directory) == before

    def test_unencrypted_and_public_keys_are_not_rewrapped(self, keyring: Keyring) -> None:
        keyring.create(FixedClock(), passphrase=None, unencrypted=True, name="clear")
        keyring.import_public(
            SigningKey.generate().public.to_pem(), FixedClock(), name="pub", source="p.pem"
        )
        assert keyring.to_rewrap() == []
        assert keyring.protection("clear") == KeyProtection(Kdf.NONE)
        assert keyring.protection("pub") is None
        for name in ("clear", "pub"):
            with pytest.raises(KeyringError, match="no encrypted private key to rewrap"):
                keyring.rewrap(name, PASS)
