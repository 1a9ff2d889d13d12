"""Licensing an administrator can trust, through the CLI: sites kept apart in the tree, posting
judged against the posted key (force, dry run, rollback), vendor files reported and posted in
their site's place, an operator's trust, alerts silenced for a while. Each refusal is asserted
with its message and with nothing changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fleetkey.authority.files import read_license

from tests.helpers import VENDOR_FILE, Fleetkey

SITE_FILE = "000000000000-license.cfg"
BERLIN, NEW_YORK, TOKYO = "100000000001", "100000000002", "100000000003"
VENDOR_SITE = "100000001007"  # the serial of the vendor file in ../shared/interop


def js(fleetkey: Fleetkey, *args: str, code: int = 0) -> Any:
    return json.loads(fleetkey(*args, "--json", code=code).stdout)


def place(data: Path, serial: str) -> Path:
    return data / "provisioning" / serial / SITE_FILE


def default(data: Path) -> Path:
    return data / "provisioning" / SITE_FILE


def issue_site(fleetkey: Fleetkey, serial: str, expires: str, *extra: str, code: int = 0) -> Any:
    args = ["issue", "site", "--serial", serial, "--features", "corporate-directory",
            "--expires", expires, *extra]  # fmt: skip
    if code:
        return fleetkey(*args, code=code)
    return js(fleetkey, *args)


def tree_state(data: Path) -> dict[str, bytes]:
    tree = data / "provisioning"
    return {
        str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()
    }


def audit_actions(fleetkey: Fleetkey) -> list[str]:
    return [event["action"] for event in js(fleetkey, "audit", "list")]


class TestSitesApart:
    def test_three_sites_each_get_their_own_place_and_no_default(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        for serial, end in (
            (BERLIN, "2030-12-31"),
            (NEW_YORK, "2031-06-30"),
            (TOKYO, "2032-01-31"),
        ):
            issued = issue_site(fleetkey, serial, end)
            assert issued["files"] == [str(place(initialized, serial))]
        for serial in (BERLIN, NEW_YORK, TOKYO):
            (key,) = read_license(place(initialized, serial)).keys
            assert key.serial == serial
        assert not default(initialized).exists()

    def test_r7_is_judged_against_the_stores_posted_key_not_a_file(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        issue_site(fleetkey, NEW_YORK, "2031-06-30")
        issue_site(fleetkey, BERLIN, "2030-01-01")  # another site's shorter key: no matter
        place(initialized, NEW_YORK).unlink()  # the file is gone; the store still knows
        result = issue_site(fleetkey, NEW_YORK, "2030-01-20", code=1)
        assert "it lasts until 2030-01-20, license 1 until 2031-06-30" in result.stderr
        assert not place(initialized, NEW_YORK).exists()

    def test_the_default_is_written_only_on_purpose_and_follows_its_site(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        first = issue_site(fleetkey, BERLIN, "2030-12-31", "--default-site")
        assert first["files"] == [str(place(initialized, BERLIN)), str(default(initialized))]
        event = js(fleetkey, "audit", "list")[-1]
        assert (event["action"], event["details"]["default_site"], event["details"]["files"]) == (
            "license.post",
            True,
            [f"{BERLIN}/{SITE_FILE}", SITE_FILE],
        )
        issue_site(fleetkey, NEW_YORK, "2031-06-30")  # another site never touches the default
        assert read_license(default(initialized)).keys[0].serial == BERLIN
        successor = issue_site(fleetkey, BERLIN, "2031-12-31")  # the default follows Berlin
        assert successor["files"] == [str(place(initialized, BERLIN)), str(default(initialized))]
        assert default(initialized).read_bytes() == place(initialized, BERLIN).read_bytes()

    def test_a_data_directory_from_before_keeps_its_top_level_site_as_the_default(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        issue_site(fleetkey, BERLIN, "2030-12-31")
        issue_site(fleetkey, NEW_YORK, "2031-06-30")
        # as an earlier version left it: the last site issued at the top level
        shutil.move(place(initialized, NEW_YORK), default(initialized))
        issue_site(fleetkey, BERLIN, "2031-12-31")
        assert read_license(default(initialized)).keys[0].serial == NEW_YORK
        issue_site(fleetkey, NEW_YORK, "2032-06-30")
        assert default(initialized).read_bytes() == place(initialized, NEW_YORK).read_bytes()

    def test_revoking_removes_only_files_holding_that_key(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        berlin = issue_site(fleetkey, BERLIN, "2030-12-31", "--default-site")
        issue_site(fleetkey, NEW_YORK, "2031-06-30")
        tokyo = issue_site(fleetkey, TOKYO, "2032-01-31")
        kept = {place(initialized, NEW_YORK).read_bytes(), default(initialized).read_bytes()}
        revoked = js(fleetkey, "licenses", "revoke", str(tokyo["license_id"]))
        assert revoked["removed"] == [str(place(initialized, TOKYO))]
        assert {place(initialized, NEW_YORK).read_bytes(), default(initialized).read_bytes()} == (
            kept
        )
        result = fleetkey("licenses", "revoke", str(berlin["license_id"]))
        assert result.stdout == (
            f"revoked license {berlin['license_id']} (Site {BERLIN}); removed "
            f"{place(initialized, BERLIN)}; removed {default(initialized)}\n"
        )
        assert place(initialized, NEW_YORK).exists()

    @pytest.mark.parametrize(
        ("args", "code", "says"),
        [
            (["issue", "phone", "--mac", "0004f2000001", "--features", "vqmon", "--expires",
              "never", "--default-site"], 2, "No such option '--default-site'"),
            (["issue", "site", "--serial", BERLIN, "--features", "vqmon", "--expires", "never",
              "--default-site", "--out", "x.cfg"], 1,
             "a key written elsewhere (--out) is not posted, so it cannot be the tree's default"),
        ],
    )  # fmt: skip
    def test_bad_default_site_requests_change_nothing(
        self, initialized: Path, fleetkey: Fleetkey, args: list[str], code: int, says: str
    ) -> None:
        result = fleetkey(*args, code=code)
        assert says in result.stderr
        assert tree_state(initialized) == {}
        assert js(fleetkey, "licenses", "list") == []

    def test_only_a_site_key_can_be_the_default(
        self, initialized: Path, fleetkey: Fleetkey, tmp_path: Path
    ) -> None:
        phone = js(fleetkey, "issue", "phone", "--mac", "0004f2000001", "--features", "vqmon",
                   "--expires", "never", "--out", str(tmp_path / "p.cfg"))  # fmt: skip
        result = fleetkey("licenses", "post", str(phone["license_id"]), "--default-site", code=1)
        assert result.stderr == (
            "error: a Phone key (0004f2000001) cannot be the tree's default: only a site key "
            "can (--default-site)\n"
        )
        assert tree_state(initialized) == {}


class TestPostingIsSafe:
    def test_a_batch_that_would_take_from_phones_is_refused_whole(
        self, initialized: Path, fleetkey: Fleetkey, tmp_path: Path
    ) -> None:
        csv = tmp_path / "fleet.csv"
        csv.write_text("mac,features,expires\n0004f2000001,vqmon,2031-01-01\n")
        fleetkey("issue", "batch", "--csv", str(csv))
        before, actions = tree_state(initialized), audit_actions(fleetkey)
        csv.write_text(
            "mac,features,expires\n0004f2000001,vqmon,2030-01-01\n0004f2000002,vqmon,never\n"
        )
        result = fleetkey("issue", "batch", "--csv", str(csv), code=1)
        assert result.stderr.splitlines()[:3] == [
            f"error: {csv}: 1 of 2 rows (nothing was issued) would take from phones what they "
            "have:",
            "  0004f2000001: it lasts until 2030-01-01, license 1 until 2031-01-01: phones that "
            "installed license 1 ignore it (R7)",
            "  0004f2000001: vqmon would end on 2030-01-01 instead of 2031-01-01 (365 days lost)",
        ]
        assert (tree_state(initialized), audit_actions(fleetkey)) == (before, actions)
        forced = fleetkey("issue", "batch", "--csv", str(csv), "--force")
        assert "warning: forced: 0004f2000001: it lasts until 2030-01-01" in forced.stderr
        event = js(fleetkey, "audit", "list")[-1]
        assert (event["action"], len(event["details"]["forced"])) == ("license.batch", 2)

    def test_dry_run_shows_the_change_and_changes_nothing(
        self, initialized: Path, fleetkey: Fleetkey, tmp_path: Path
    ) -> None:
        issue_site(fleetkey, BERLIN, "2031-06-30")
        shorter = js(fleetkey, "issue", "site", "--serial", BERLIN, "--features",
                     "corporate-directory", "--expires", "2030-06-30", "--out",
                     str(tmp_path / "short.cfg"))  # fmt: skip
        before, actions = tree_state(initialized), audit_actions(fleetkey)
        result = fleetkey("licenses", "post", str(shorter["license_id"]), "--dry-run")
        assert result.stdout.splitlines()[0] == (
            f"would post license 2 (Site {BERLIN}) in place of license 1"
        )
        assert "│    0 │ corporate-directory │ 2031-06-30 │ 2030-06-30 │ shortened │" in (
            result.stdout
        )
        assert (
            "  needs --force: corporate-directory would end on 2030-06-30 instead of 2031-06-30 "
            "(365 days lost)"
        ) in result.stdout
        document = js(fleetkey, "licenses", "post", "2", "--dry-run")
        assert (document["dry_run"], document["needs_force"], document["replaces"]) == (
            True,
            True,
            1,
        )
        assert document["files"] == [str(place(initialized, BERLIN))]
        assert (tree_state(initialized), audit_actions(fleetkey)) == (before, actions)
        assert js(fleetkey, "licenses", "list", "--state", "issued")[0]["id"] == 2

    def test_a_key_with_fewer_features_is_refused_naming_what_is_dropped(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        features = "corporate-directory,conference-management"
        fleetkey("issue", "site", "--serial", BERLIN, "--features", features,
                 "--expires", "2031-06-30")  # fmt: skip
        before = tree_state(initialized)
        result = issue_site(fleetkey, BERLIN, "2032-06-30", code=1)
        assert result.stderr.splitlines()[:3] == [
            f"error: issuing and posting the Site key for {BERLIN} would take from phones what "
            "they have:",
            "  conference-management (until 2031-06-30) would be dropped",
            "it needs force (--force)",
        ]
        assert tree_state(initialized) == before

    def test_an_expired_key_is_refused_then_forced_and_audited(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        issue_site(fleetkey, BERLIN, "2031-06-30")
        before = tree_state(initialized)
        result = issue_site(fleetkey, BERLIN, "2020-01-01", code=1)
        assert (
            "  it expired on 2020-01-01: phones refuse an expired key (R5), and license 1 would "
            "no longer be served\n"
        ) in result.stderr
        assert tree_state(initialized) == before
        fleetkey("issue", "site", "--serial", BERLIN, "--features", "corporate-directory",
                 "--expires", "2020-01-01", "--force")  # fmt: skip
        event = js(fleetkey, "audit", "list")[-1]
        assert event["details"]["forced"][0].startswith("it expired on 2020-01-01")

    def test_rollback_posts_the_previous_key_again(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        issue_site(fleetkey, BERLIN, "2031-06-30", "--default-site")
        first = place(initialized, BERLIN).read_bytes()
        issue_site(fleetkey, BERLIN, "2030-01-20", "--force")
        assert place(initialized, BERLIN).read_bytes() != first
        result = fleetkey("licenses", "rollback", BERLIN)
        assert result.stdout.splitlines()[0] == (
            f"rolled back to license 1 (Site {BERLIN}) in place of license 2"
        )
        assert place(initialized, BERLIN).read_bytes() == first
        assert default(initialized).read_bytes() == first  # the default follows its site
        posted = js(fleetkey, "licenses", "list", "--state", "posted")
        assert [(k["id"], k["succeeds_id"]) for k in posted] == [(1, None)]
        event = js(fleetkey, "audit", "list")[-1]
        assert (event["action"], event["details"]["replaces"]) == ("license.rollback", 2)

    def test_a_site_is_named_by_its_name_to_issue_and_roll_back(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey("sites", "add", NEW_YORK, "--name", "New York", "--tz", "America/New_York",
                 "--window", "01:00-05:00")  # fmt: skip
        issued = issue_site(fleetkey, "New York", "2031-06-30")
        assert issued["serial"] == NEW_YORK
        first = place(initialized, NEW_YORK).read_bytes()
        issue_site(fleetkey, "new york", "2032-06-30")
        result = fleetkey("licenses", "rollback", "New York", "--force")  # a shorter term
        assert result.stdout.splitlines()[0] == (
            f"rolled back to license 1 (Site {NEW_YORK}) in place of license 2"
        )
        assert place(initialized, NEW_YORK).read_bytes() == first
        refused = issue_site(fleetkey, "Old York", "2031-06-30", code=1)
        assert refused.stderr.startswith("error: ")
        assert "site 'Old York' does not exist: no site has that serial or name" in refused.stderr

    @pytest.mark.parametrize(
        ("args", "code", "says"),
        [
            (["licenses", "rollback", "100000000009"], 1,
             "error: no Site key for 100000000009 is posted: there is nothing to roll back"),
            (["licenses", "rollback", "xyz"], 1,
             "error: 'xyz' is neither a site serial, a site's name nor a MAC"),
            (["licenses", "rollback", BERLIN], 1,
             "error: license 1 (Site 100000000001) is the first key posted for 100000000001"),
            (["licenses", "rollback", BERLIN, "--type", "fax"], 2, "Invalid value for '--type'"),
            (["licenses", "rollback"], 2, "Missing argument 'SERIAL'"),
            (["licenses", "post", "1", "--dry-run", "--force", "extra"], 2, "unexpected extra"),
            (["licenses", "post", "one"], 2, "'one' is not a valid integer"),
        ],
    )  # fmt: skip
    def test_bad_rollbacks_and_posts_change_nothing(
        self, initialized: Path, fleetkey: Fleetkey, args: list[str], code: int, says: str
    ) -> None:
        issue_site(fleetkey, BERLIN, "2031-06-30")
        before, actions = tree_state(initialized), audit_actions(fleetkey)
        assert says in fleetkey(*args, code=code).stderr
        assert (tree_state(initialized), audit_actions(fleetkey)) == (before, actions)


@pytest.fixture
def tokyo(initialized: Path, fleetkey: Fleetkey) -> Path:
    """Site 100000001007 (the vendor file's serial) in the inventory, as Tokyo."""
    fleetkey("sites", "add", VENDOR_SITE, "--name", "Tokyo", "--tz", "Asia/Tokyo",
             "--window", "01:00-05:00")  # fmt: skip
    return initialized


class TestVendorFiles:
    def test_a_vendor_file_alone_is_reported_expired_and_tied_to_its_site(
        self, tokyo: Path, fleetkey: Fleetkey
    ) -> None:
        result = fleetkey("licenses", "import", str(VENDOR_FILE))
        assert "│ Site 100000001007 │ Tokyo │ 2015-03-16 │ unverifiable │       1 │ imported │" in (
            result.stdout
        )
        assert result.stderr.splitlines() == [
            "warning: vendor-site-license.cfg key 1 (Site 100000001007): expired on 2015-03-16",
            "warning: vendor-site-license.cfg key 1 (Site 100000001007): signature "
            "unverifiable: no trusted RSA-2048 key",
        ]
        (report,) = js(fleetkey, "licenses", "import", str(VENDOR_FILE))["keys"]
        assert {k: report[k] for k in ("site", "site_name", "expires", "expired", "outcome")} == {
            "site": VENDOR_SITE,
            "site_name": "Tokyo",
            "expires": "2015-03-16",
            "expired": True,
            "outcome": "skipped",
        }
        stored = js(fleetkey, "licenses", "list")[0]
        assert (stored["file_name"], stored["state"]) == (SITE_FILE, "issued")

    def test_a_vendor_key_of_no_site_says_so(self, initialized: Path, fleetkey: Fleetkey) -> None:
        (report,) = js(fleetkey, "licenses", "import", str(VENDOR_FILE))["keys"]
        assert report["site"] is None
        assert report["findings"][-1] == (
            "no site 100000001007 in the inventory: phones get it only at "
            "/100000001007/000000000000-license.cfg (fleetkey sites add 100000001007 places them)"
        )

    def test_posting_an_expired_vendor_file_needs_force_and_lands_in_its_sites_place(
        self, tokyo: Path, fleetkey: Fleetkey
    ) -> None:
        args = ["licenses", "import", str(VENDOR_FILE), "--post", "--accept-unverified",
                "Polycom's file for Tokyo, ticket 7"]  # fmt: skip
        refused = fleetkey(*args, code=1)
        assert refused.stderr.startswith(
            f"error: nothing imported: posting {VENDOR_FILE} key 1 (Site 100000001007) would "
            "take from phones what they have:\n  it expired on 2015-03-16: phones refuse an "
            "expired key (R5)\nit needs force (--force)\n"
        )
        assert (js(fleetkey, "licenses", "list"), tree_state(tokyo)) == ([], {})
        document = js(fleetkey, *args, "--force")
        assert document["files"] == [str(place(tokyo, VENDOR_SITE))]
        assert tree_state(tokyo) == {f"{VENDOR_SITE}/{SITE_FILE}": VENDOR_FILE.read_bytes()}
        event = js(fleetkey, "audit", "list")[-1]
        assert (event["action"], event["details"]["accepted_unverified"]["reason"]) == (
            "license.post",
            "Polycom's file for Tokyo, ticket 7",
        )
        imported = js(fleetkey, "audit", "list")[-2]
        assert (imported["action"], imported["details"]["source"]) == (
            "license.imported",
            "vendor-site-license.cfg",
        )

    @pytest.mark.parametrize(
        ("args", "code", "says"),
        [
            (["--force"], 2, "--force goes with --post"),
            (["--accept-unverified", "x"], 2, "--accept-unverified goes with --post"),
            (["--post", "--force"], 1, "posting would serve keys whose signature is not valid"),
            (["--post", "--force", "--accept-unverified", " "], 1, "is empty"),
        ],
    )
    def test_bad_imports_change_nothing(
        self, tokyo: Path, fleetkey: Fleetkey, args: list[str], code: int, says: str
    ) -> None:
        assert says in fleetkey("licenses", "import", str(VENDOR_FILE), *args, code=code).stderr
        assert (js(fleetkey, "licenses", "list"), tree_state(tokyo)) == ([], {})

    def test_an_operator_trusts_a_vendor_key_and_its_alerts_stop(
        self, tokyo: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey("licenses", "import", str(VENDOR_FILE))
        fleetkey("licenses", "post", "1", "--force", "--accept-unverified", "vendor file")
        fired = js(fleetkey, "alerts")["fired"]
        assert {"bad-signature:1", f"bad-file:{VENDOR_SITE}/{SITE_FILE}"} <= set(fired)
        assert "error: missing option" in fleetkey("licenses", "trust", "1", code=2).stderr.lower()
        trusted = js(fleetkey, "licenses", "trust", "1", "--reason", "from Polycom via reseller")
        assert trusted["signature"] == "trusted-by-operator"
        after = js(fleetkey, "alerts")
        assert set(after["resolved"]) == {"bad-signature:1", f"bad-file:{VENDOR_SITE}/{SITE_FILE}"}
        again = fleetkey("licenses", "trust", "1", "--reason", "again", code=1)
        assert again.stderr == (
            "error: license 1 has a trusted-by-operator signature: it is trusted by an operator "
            "already\n"
        )

    def test_an_unverifiable_signature_alert_is_silenced_until_a_date(
        self, tokyo: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey("licenses", "import", str(VENDOR_FILE), "--post", "--force",
                 "--accept-unverified", "vendor file")  # fmt: skip
        js(fleetkey, "alerts")
        acked = js(fleetkey, "alerts", "ack", "bad-signature:1", "--until", "2099-12-31")
        assert acked["acked"]["until"] == "2100-01-01T00:00:00+00:00"
        listed = {a["key"]: a["acked"] for a in js(fleetkey, "alerts")["alerts"]}
        assert listed["bad-signature:1"]["until"] == "2100-01-01T00:00:00+00:00"
        assert listed[f"expired:Site:{VENDOR_SITE}:1:expired"] is None
        table = fleetkey("alerts").stdout
        assert "silenced" in table
        assert js(fleetkey, "audit", "list")[-1]["action"] == "alert.ack"

    @pytest.mark.parametrize(
        ("args", "code", "says"),
        [
            (["nope"], 1, "error: no alert has the key 'nope'\nhint: `fleetkey alerts --json`"),
            (["bad-signature:1", "--until", "2020-01-01"], 1, "that day has passed"),
            (["bad-signature:1", "--until", "31.12.2099"], 2, "'31.12.2099' is not a date"),
            ([], 2, "Missing argument 'KEY'"),
        ],
    )
    def test_bad_acks_change_nothing(
        self, tokyo: Path, fleetkey: Fleetkey, args: list[str], code: int, says: str
    ) -> None:
        fleetkey("licenses", "import", str(VENDOR_FILE), "--post", "--force",
                 "--accept-unverified", "vendor file")  # fmt: skip
        js(fleetkey, "alerts")
        actions = audit_actions(fleetkey)
        assert says in fleetkey("alerts", "ack", *args, code=code).stderr
        assert audit_actions(fleetkey) == actions
        assert all(a["acked"] is None for a in js(fleetkey, "alerts")["alerts"])


@pytest.mark.interop
def test_the_vendor_file_alone_from_import_to_a_silenced_alert(
    tokyo: Path, fleetkey: Fleetkey
) -> None:
    """The Show of issue 24: the real vendor file imported alone, reported expired, tied to its
    site, posted as 000000000000-license.cfg in that site's place, its alert silenced to a date."""
    imported = js(fleetkey, "licenses", "import", str(VENDOR_FILE))
    (report,) = imported["keys"]
    assert (report["expired"], report["expires"], report["site_name"], report["signature"]) == (
        True,
        "2015-03-16",
        "Tokyo",
        "unverifiable",
    )
    license_id = str(report["license_id"])
    posted = js(fleetkey, "licenses", "post", license_id, "--force",
                "--accept-unverified", "Polycom's site license for Tokyo")  # fmt: skip
    assert posted["files"] == [str(place(tokyo, VENDOR_SITE))]
    assert posted["losses"] == ["it expired on 2015-03-16: phones refuse an expired key (R5)"]
    assert tree_state(tokyo) == {f"{VENDOR_SITE}/{SITE_FILE}": VENDOR_FILE.read_bytes()}
    alerts = {a["key"]: a for a in js(fleetkey, "alerts")["alerts"]}
    assert alerts[f"bad-signature:{license_id}"]["severity"] == "critical"
    acked = js(fleetkey, "alerts", "ack", f"bad-signature:{license_id}", "--until", "2099-06-30")
    assert (acked["acked"]["until"], acked["acked"]["by"].endswith("@cli")) == (
        "2099-07-01T00:00:00+00:00",
        True,
    )
    again = {a["key"]: a["acked"] for a in js(fleetkey, "alerts")["alerts"]}
    assert again[f"bad-signature:{license_id}"] is not None
