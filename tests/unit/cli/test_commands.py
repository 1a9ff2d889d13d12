"""The fleetkey CLI, command by command: output, JSON interface, files written, errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from fleetkey.authority.files import read_license
from fleetkey.authority.keyring import Keyring
from fleetkey.core.codec import serialize_keys
from fleetkey.core.license import SLOT_COUNT, LicenseKey, LicenseType
from fleetkey.core.signing import SigningKey
from fleetkey.core.terms import WORD_NEVER as NEVER_WORD
from fleetkey.testing import make_license

from tests.helpers import PASSPHRASE, VENDOR_FILE, Fleetkey

SITE_FILE = "000000000000-license.cfg"
SITE_PLACE = f"100000000001/{SITE_FILE}"  # site 100000000001's own place in the tree


def prov(data: Path, name: str) -> Path:
    return data / "provisioning" / name


class TestInit:
    def test_init_creates_data_dir_and_an_encrypted_ed25519_key(
        self, data_dir: Path, fleetkey: Fleetkey
    ) -> None:
        result = fleetkey("init", "--json")
        document = json.loads(result.stdout)
        assert document["created"] is True
        assert document["active_key"]["algorithm"] == "ed25519"
        assert document["active_key"]["encrypted"] is True
        assert (data_dir / "provisioning").is_dir()
        assert (data_dir / "features.toml").is_file()

    def test_init_twice_keeps_the_key(self, initialized: Path, fleetkey: Fleetkey) -> None:
        document = json.loads(fleetkey("init", "--json").stdout)
        assert document["created"] is False
        assert document["key_created"] is False
        assert len(json.loads(fleetkey("keys", "list", "--json").stdout)) == 1

    def test_init_without_passphrase_fails_with_a_hint(
        self, data_dir: Path, fleetkey: Fleetkey, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("FLEETKEY_KEY_PASSPHRASE")
        result = fleetkey("init", code=1)
        assert result.stderr.splitlines() == [
            "error: FLEETKEY_KEY_PASSPHRASE is not set: the first signing key is encrypted at "
            "rest; nothing was created",
            "hint: export FLEETKEY_KEY_PASSPHRASE=..., or pass --unencrypted-key to store the "
            "key in clear (file mode 0600)",
        ]
        assert "Traceback" not in result.output
        assert not data_dir.exists()

    def test_init_with_unencrypted_key_flag(
        self, data_dir: Path, fleetkey: Fleetkey, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("FLEETKEY_KEY_PASSPHRASE")
        document = json.loads(fleetkey("init", "--unencrypted-key", "--json").stdout)
        assert document["active_key"]["encrypted"] is False
        fleetkey(
            "issue", "phone", "--mac", "0004f2000001", "--features", "vqmon", "--expires", "never"
        )

    def test_command_before_init_says_run_init(self, data_dir: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey("keys", "list", code=1)
        assert "is not a fleetkey data directory" in result.stderr
        assert "hint: run `fleetkey init` first" in result.stderr

    def test_data_option_wins_over_environment(
        self, tmp_path: Path, data_dir: Path, fleetkey: Fleetkey
    ) -> None:
        other = tmp_path / "other"
        fleetkey("--data", str(other), "init")
        assert (other / "keys" / "keyring.json").is_file()
        assert not data_dir.exists()


class TestIssue:
    def test_issue_phone_writes_a_verifying_file(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        result = fleetkey(
            "issue",
            "phone",
            "--mac",
            "00:04:F2:00:00:01",
            "--features",
            "vqmon,call-recording",
            "--expires",
            "2030-06-30",
            "--feature",
            "corporate-directory=never",
            "--json",
        )
        document = json.loads(result.stdout)
        path = prov(initialized, "0004f2000001-license.cfg")
        assert document["file"] == str(path)
        assert document["signature"] == "valid"
        assert document["features"] == [
            {"slot": 0, "name": "corporate-directory", "expires": None},
            {"slot": 3, "name": "vqmon", "expires": "2030-06-30"},
            {"slot": 4, "name": "call-recording", "expires": "2030-06-30"},
        ]
        assert document["expires"] is None
        fleetkey("verify", str(path), "--mac", "0004f2000001")

    def test_issue_site_writes_the_site_file_in_the_sites_own_place(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey(
            "issue",
            "site",
            "--serial",
            "100000000001",
            "--features",
            "corporate-directory",
            "--expires",
            "2027-12-31",
        )
        (key,) = read_license(prov(initialized, SITE_PLACE)).keys
        assert key.serial == "100000000001"
        assert key.type.value == "Site"
        assert "2027-12-31" in fleetkey("inspect", str(prov(initialized, SITE_PLACE))).stdout
        assert not prov(initialized, SITE_FILE).exists()  # the tree's default: only on purpose

    def test_issue_to_stdout_writes_no_file(self, initialized: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey(
            "issue",
            "site",
            "--serial",
            "100000000001",
            "--features",
            "vqmon",
            "--expires",
            "never",
            "--out",
            "-",
        )
        assert result.stdout.startswith("<?xml version='1.0' encoding='ISO-8859-1'")
        assert not prov(initialized, SITE_FILE).exists()

    def test_issue_with_out_path(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        out = tmp_path / "elsewhere" / "site.cfg"
        fleetkey(
            "issue",
            "site",
            "--serial",
            "100000000001",
            "--features",
            "vqmon",
            "--expires",
            "never",
            "--out",
            str(out),
        )
        assert read_license(out).keys[0].serial == "100000000001"

    def test_shorter_successor_is_refused_without_force(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        args = ["issue", "site", "--serial", "100000000001", "--features", "vqmon", "--expires"]
        fleetkey(*args, "2031-01-01")
        posted = prov(initialized, SITE_PLACE).read_bytes()
        result = fleetkey(*args, "2030-01-01", code=1)
        assert result.stderr == (
            "error: issuing and posting the Site key for 100000000001 would take from phones "
            "what they have:\n"
            "  it lasts until 2030-01-01, license 1 until 2031-01-01: phones that installed "
            "license 1 ignore it (R7)\n"
            "  vqmon would end on 2030-01-01 instead of 2031-01-01 (365 days lost)\n"
            "it needs force (--force)\n"
            "hint: `fleetkey licenses list --state posted` shows the posted key; forcing it is "
            "recorded in the audit trail with what was lost\n"
        )
        assert prov(initialized, SITE_PLACE).read_bytes() == posted
        assert len(json.loads(fleetkey("licenses", "list", "--json").stdout)) == 1
        forced = fleetkey(*args, "2030-01-01", "--force")
        assert "warning: forced: it lasts until 2030-01-01, license 1 until 2031-01-01" in (
            forced.stderr
        )
        event = json.loads(fleetkey("audit", "list", "--json").stdout)[-1]
        assert (event["action"], event["details"]["forced"][1]) == (
            "license.post",
            "vqmon would end on 2030-01-01 instead of 2031-01-01 (365 days lost)",
        )

    def test_an_expired_key_is_not_issued_without_force_even_elsewhere(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        out = tmp_path / "old.cfg"
        args = ["issue", "phone", "--mac", "0004f2000001", "--features", "vqmon", "--expires",
                "2020-01-01", "--out", str(out)]  # fmt: skip
        result = fleetkey(*args, code=1)
        assert result.stderr.startswith(
            "error: issuing the Phone key for 0004f2000001 would take from phones what they "
            "have:\n  it expired on 2020-01-01: phones refuse an expired key (R5)\n"
        )
        assert not out.exists()
        assert json.loads(fleetkey("licenses", "list", "--json").stdout) == []
        fleetkey(*args, "--force")
        assert read_license(out).keys[0].serial == "0004f2000001"

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            (["--mac", "xyz", "--features", "vqmon", "--expires", "never"], "MAC 'xyz' is not"),
            (
                ["--mac", "0004f2000001", "--features", "fax", "--expires", "never"],
                "unknown feature 'fax'",
            ),
            (["--mac", "0004f2000001", "--features", "vqmon"], "without an expiry (--expires)"),
            (["--mac", "0004f2000001", "--expires", "never"], "at least one feature (--features)"),
            (
                ["--mac", "0004f2000001", "--features", "vqmon", "--expires", "2027-13-01"],
                "is not a date",
            ),
            (
                ["--mac", "0004f2000001", "--feature", "vqmon"],
                "per-feature expiry 'vqmon' is not NAME=DATE (--feature)",
            ),
            (
                ["--mac", "0004f2000001", "--features", "vqmon", "--expires", "1999-01-01"],
                "cannot be encoded",
            ),
        ],
    )
    def test_bad_issue_input_fails_cleanly_and_writes_nothing(
        self, initialized: Path, fleetkey: Fleetkey, args: list[str], fragment: str
    ) -> None:
        result = fleetkey("issue", "phone", *args, code=1)
        assert result.stderr.startswith("error: ")
        assert fragment in result.stderr
        assert list((initialized / "provisioning").iterdir()) == []

    def test_wrong_passphrase_fails_cleanly(
        self, initialized: Path, fleetkey: Fleetkey, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("FLEETKEY_KEY_PASSPHRASE", "wrong")
        result = fleetkey(
            "issue",
            "site",
            "--serial",
            "100000000001",
            "--features",
            "vqmon",
            "--expires",
            "never",
            code=1,
        )
        assert "the passphrase does not open this key" in result.stderr
        assert "hint: set FLEETKEY_KEY_PASSPHRASE" in result.stderr


class TestBatch:
    def test_batch_issues_every_row(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        csv = tmp_path / "phones.csv"
        csv.write_text(
            "mac,features,expires\n"
            + "".join(f"0004f2{i:06x},vqmon;nway-conference,2030-01-01\n" for i in range(25))
        )
        document = json.loads(fleetkey("issue", "batch", "--csv", str(csv), "--json").stdout)
        assert document["issued"] == 25
        assert len(list((initialized / "provisioning").glob("*-license.cfg"))) == 25

    def test_batch_with_a_bad_row_writes_nothing(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        csv = tmp_path / "phones.csv"
        csv.write_text("mac,features,expires\n0004f2000001,vqmon,never\n0004f2zz0002,vqmon,never\n")
        out = tmp_path / "out"
        result = fleetkey("issue", "batch", "--csv", str(csv), "--out-dir", str(out), code=1)
        assert "1 bad row(s), nothing was issued" in result.stderr
        assert "line 3: MAC '0004f2zz0002' is not a MAC address" in result.stderr
        assert not out.exists()


class TestInspect:
    def test_inspect_json_of_vendor_file_is_unverifiable(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        document = json.loads(fleetkey("inspect", str(VENDOR_FILE), "--json").stdout)
        (key,) = document["keys"]
        assert document["file"] == str(VENDOR_FILE)
        assert key["serial"] == "100000001007"
        assert key["type"] == "Site"
        assert key["version"] == "2.0"
        assert key["options"] == "00000077"
        assert key["signature"] == "unverifiable"
        assert key["key"] is None
        assert key["expires"] == "2015-03-16"
        assert [f["slot"] for f in key["features"]] == [0, 1, 2, 4, 5, 6]

    def test_inspect_works_without_a_data_directory(
        self, data_dir: Path, fleetkey: Fleetkey
    ) -> None:
        document = json.loads(fleetkey("inspect", str(VENDOR_FILE), "--json").stdout)
        assert document["keys"][0]["signature"] == "unverifiable"

    def test_inspect_several_files_prints_json_lines_and_fails_on_a_bad_one(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        bad = tmp_path / "bad.cfg"
        bad.write_bytes(b"<licenses><oops/></licenses>")
        empty = tmp_path / "empty.cfg"
        empty.write_bytes(b"<licenses/>")
        result = fleetkey("inspect", str(VENDOR_FILE), str(bad), str(empty), "--json", code=1)
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [doc["file"] for doc in lines] == [str(VENDOR_FILE), str(empty)]
        assert lines[1]["keys"] == []
        assert f"error: {bad}: element <oops> inside <licenses>" in result.stderr

    def test_inspect_reports_an_altered_file_as_invalid(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey(
            "issue",
            "site",
            "--serial",
            "100000000001",
            "--features",
            "vqmon",
            "--expires",
            "2027-01-01",
        )
        path = prov(initialized, SITE_PLACE)
        path.write_bytes(path.read_bytes().replace(b"Options='00000008'", b"Options='00000009'"))
        document = json.loads(fleetkey("inspect", str(path), "--json").stdout)
        assert document["keys"][0]["signature"] == "invalid"

    def test_missing_file_is_an_error(self, initialized: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey("inspect", "/nonexistent/x.cfg", code=1)
        assert "No such file or directory" in result.stderr


class TestVerify:
    @pytest.fixture
    def site(self, initialized: Path, fleetkey: Fleetkey) -> Path:
        fleetkey(
            "issue",
            "site",
            "--serial",
            "100000000001",
            "--features",
            "vqmon",
            "--expires",
            "2027-01-31",
        )
        return prov(initialized, SITE_PLACE)

    def test_good_file_verifies(self, site: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey("verify", str(site), "--on", "2027-01-31")
        assert result.stdout.startswith(f"ok: {site}: 1 key(s) signed by ed25519-")

    def test_expired_on_the_day_after(self, site: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey("verify", str(site), "--on", "2027-02-01", code=1)
        assert "expired on 2027-02-01 (latest term 2027-01-31)" in result.stderr

    def test_json_verdict(self, site: Path, fleetkey: Fleetkey) -> None:
        document = json.loads(
            fleetkey("verify", str(site), "--on", "2027-02-01", "--json", code=1).stdout
        )
        assert document["ok"] is False
        assert document["on"] == "2027-02-01"
        assert len(document["problems"]) == 1

    def test_phone_file_for_another_mac_fails(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey(
            "issue", "phone", "--mac", "0004f2000001", "--features", "vqmon", "--expires", "never"
        )
        source = prov(initialized, "0004f2000001-license.cfg")
        renamed = tmp_path / "0004f2000002-license.cfg"
        shutil.copy(source, renamed)
        result = fleetkey("verify", str(renamed), code=1)
        assert "Serial does not match the MAC in 0004f2000002-license.cfg" in result.stderr
        result = fleetkey("verify", str(source), "--mac", "0004f2000009", code=1)
        assert "bound to 0004f2000001, not 0004f2000009" in result.stderr

    def test_phone_key_in_site_file_fails(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey(
            "issue",
            "phone",
            "--mac",
            "0004f2000001",
            "--features",
            "vqmon",
            "--expires",
            "never",
            "--out",
            str(tmp_path / SITE_FILE),
        )
        result = fleetkey("verify", str(tmp_path / SITE_FILE), code=1)
        assert "a Phone key in 000000000000-license.cfg" in result.stderr

    def test_untrusted_signer_fails(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        path = tmp_path / "x.cfg"
        path.write_bytes(serialize_keys([make_license(signer=SigningKey.generate())]))
        result = fleetkey("verify", str(path), code=1)
        assert "does not verify against any of 1 trusted Ed25519 key(s)" in result.stderr

    def test_empty_file_fails(self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey) -> None:
        path = tmp_path / "empty.cfg"
        path.write_bytes(b"<licenses/>")
        assert "holds no license key" in fleetkey("verify", str(path), code=1).stderr

    def test_unparseable_file_fails(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        path = tmp_path / "x.cfg"
        path.write_bytes(b"<!DOCTYPE x><licenses/>")
        assert "DTD <!DOCTYPE x> is not allowed" in fleetkey("verify", str(path), code=1).stderr

    def test_bad_date_is_a_clear_error(self, site: Path, fleetkey: Fleetkey) -> None:
        assert (
            "--on 'soon' is not a date"
            in fleetkey("verify", str(site), "--on", "soon", code=1).stderr
        )


class TestRulesOfIssuedFiles:
    """Spec §2: reserved Options bits 28-31 clear, each slot's bit set exactly when its term is
    non-zero. Files signed by the trusted key that break them fail verify, key by key."""

    MAC = "0004f2000001"

    def write(self, data: Path, tmp_path: Path, *keys: tuple[int, dict[int, int]]) -> Path:
        """A phone file of keys (Options, slot -> Duration word) signed by the active key."""
        _, signer = Keyring(data / "keys").signer(PASSPHRASE.encode())
        signed = []
        for options, terms in keys:
            words = tuple(terms.get(slot, 0) for slot in range(SLOT_COUNT))
            unsigned = LicenseKey(self.MAC, LicenseType.PHONE, options, words, b"")
            signed.append(replace(unsigned, validation=signer.sign(unsigned.signed_message())))
        path = tmp_path / f"{self.MAC}-license.cfg"
        path.write_bytes(serialize_keys(signed))
        return path

    def test_reserved_option_bits_fail_verify_naming_the_key_and_bits(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        path = self.write(initialized, tmp_path, (0x0000_0001, {0: NEVER_WORD}))
        fleetkey("verify", str(path))
        path = self.write(
            initialized, tmp_path, (0x0000_0001, {0: NEVER_WORD}), (0x9000_0008, {3: NEVER_WORD})
        )
        result = fleetkey("verify", str(path), code=1)
        assert result.stderr == (
            f"error: {path} does not verify:\n"
            "  key 2 (Phone 0004f2000001): Options 90000008 sets reserved bits 28-31 "
            "(set: 28, 31), expected them clear\n"
        )

    def test_options_and_durations_that_disagree_fail_verify_slot_by_slot(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        path = self.write(initialized, tmp_path, (0b1001, {0: NEVER_WORD, 4: 0x2C1F}))
        document = json.loads(fleetkey("verify", str(path), "--json", code=1).stdout)
        assert document["ok"] is False
        assert document["problems"] == [
            "key 1 (Phone 0004f2000001): slot 3: Options bit is set but its Duration word is "
            "0000; expected the bit set exactly when the term is non-zero",
            "key 1 (Phone 0004f2000001): slot 4: Options bit is clear but its Duration word is "
            "2C1F; expected the bit set exactly when the term is non-zero",
        ]

    def test_inspect_still_shows_such_keys_flagged(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        path = self.write(initialized, tmp_path, (0x8000_0001, {0: NEVER_WORD}))
        result = fleetkey("inspect", str(path))
        assert f"warning: {path} key 1: Options 80000001 sets reserved bits" in result.stderr
        (key,) = json.loads(fleetkey("inspect", str(path), "--json").stdout)["keys"]
        assert key["signature"] == "valid"
        assert key["problems"] == [
            "Options 80000001 sets reserved bits 28-31 (set: 31), expected them clear"
        ]


class TestKeys:
    def test_rotation_keeps_old_licenses_verifying(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey(
            "issue",
            "site",
            "--serial",
            "100000000001",
            "--features",
            "vqmon",
            "--expires",
            "never",
            "--out",
            str(initialized / "old.cfg"),
        )
        fleetkey("keys", "create", "--alg", "rsa2048", "--name", "rsa-2027", "--activate")
        fleetkey(
            "issue",
            "site",
            "--serial",
            "100000000001",
            "--features",
            "vqmon",
            "--expires",
            "never",
            "--out",
            str(initialized / "new.cfg"),
        )
        old = json.loads(fleetkey("inspect", str(initialized / "old.cfg"), "--json").stdout)
        new = json.loads(fleetkey("inspect", str(initialized / "new.cfg"), "--json").stdout)
        assert old["keys"][0]["key"].startswith("ed25519-")
        assert new["keys"][0]["key"] == "rsa-2027"
        assert len(new["keys"][0]["validation"]) == 512
        listed = json.loads(fleetkey("keys", "list", "--json").stdout)
        assert [(k["name"] == "rsa-2027", k["active"]) for k in listed] == [
            (False, False),
            (True, True),
        ]

    def test_export_then_import_public_key_elsewhere(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        pem = fleetkey("keys", "export-public").stdout
        assert pem.startswith("-----BEGIN PUBLIC KEY-----")
        fleetkey(
            "issue", "site", "--serial", "100000000001", "--features", "vqmon", "--expires", "never"
        )
        other = tmp_path / "verifier"
        fleetkey("--data", str(other), "init")
        (tmp_path / "dist.pem").write_text(pem)
        fleetkey(
            "--data",
            str(other),
            "keys",
            "import-public",
            str(tmp_path / "dist.pem"),
            "--name",
            "distributor",
        )
        result = fleetkey("--data", str(other), "verify", str(prov(initialized, SITE_PLACE)))
        assert "signed by distributor" in result.stdout

    def test_importing_a_private_key_is_refused(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        key_file = next((initialized / "keys").glob("*.key.pem"))
        result = fleetkey("keys", "import-public", str(key_file), code=1)
        assert "holds a private key, expected a public key PEM" in result.stderr

    def test_activate_unknown_key_fails(self, initialized: Path, fleetkey: Fleetkey) -> None:
        assert "no key named 'nope'" in fleetkey("keys", "activate", "nope", code=1).stderr


class TestFeatures:
    def test_operator_catalog_extension_is_usable(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        (initialized / "features.toml").write_text(
            '[[feature]]\nslot = 7\nname = "h323"\ndescription = "H.323 video"\n'
        )
        names = [f["name"] for f in json.loads(fleetkey("features", "--json").stdout)]
        assert names[-1] == "h323"
        document = json.loads(
            fleetkey(
                "issue",
                "phone",
                "--mac",
                "0004f2000001",
                "--features",
                "h323",
                "--expires",
                "never",
                "--json",
            ).stdout
        )
        assert document["features"] == [{"slot": 7, "name": "h323", "expires": None}]

    def test_broken_catalog_extension_is_reported(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        (initialized / "features.toml").write_text('[[feature]]\nslot = 0\nname = "ldap"\n')
        result = fleetkey("features", code=1)
        assert "slot 0 is already 'corporate-directory', cannot also be 'ldap'" in result.stderr


class TestErrorReporting:
    def test_debug_shows_the_traceback(self, data_dir: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey("--debug", "keys", "list", code=1)
        assert "Traceback" in result.stderr
        assert "error: " in result.stderr

    def test_usage_error_exits_2(self, fleetkey: Fleetkey) -> None:
        result = fleetkey("issue", "phone", code=2)
        assert "Missing argument 'MAC'" in result.stderr
