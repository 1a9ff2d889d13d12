"""The keyring on disk: encryption at rest, file modes, rotation, import and export."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fleetkey.authority.keyring import Keyring
from fleetkey.clock import FixedClock
from fleetkey.core.signing import Algorithm, SigningKey
from fleetkey.errors import KeyringError, PassphraseError
from fleetkey.testing import make_license

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
