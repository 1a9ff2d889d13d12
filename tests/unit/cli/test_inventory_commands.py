"""Inventory upkeep through the CLI (issue 24, item 4): exact messages, exit statuses, and no
change of state when a command is refused; ``init`` that fails leaves nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import Fleetkey

FULL = (
    "mac,site,model,firmware,user,password,contact\n"
    "0004f2000001,Berlin,VVX_500,5.9.7,dev1,pw1,sip:1001@pbx.test\n"
    "0004f2000002,Berlin,SPIP_670,4.0.12,,,sip:1002@pbx.test\n"
    "0004f2000003,New York,VVX_400,,,,\n"
)


def js(fleetkey: Fleetkey, *args: str) -> object:
    return json.loads(fleetkey(*args, "--json").stdout)


def snapshot(fleetkey: Fleetkey) -> tuple[object, object, int]:
    """Sites, phones and the number of audit events: what a refused command must not change."""
    events = js(fleetkey, "audit", "list")
    assert isinstance(events, list)
    return js(fleetkey, "sites", "list"), js(fleetkey, "phones", "list"), len(events)


@pytest.fixture
def fleet(initialized: Path, tmp_path: Path, fleetkey: Fleetkey) -> Path:
    for serial, name, zone in (
        ("100000000001", "Berlin", "Europe/Berlin"),
        ("100000000002", "New York", "America/New_York"),
    ):
        fleetkey("sites", "add", serial, "--name", name, "--tz", zone, "--window", "22:00-05:00")
    csv = tmp_path / "full.csv"
    csv.write_text(FULL)
    fleetkey("phones", "import", str(csv))
    return tmp_path


class TestSitesUpdate:
    def test_update_by_name_says_what_changed(self, fleet: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey(
            "sites", "update", "berlin", "--window", "23:00-04:00", "--contact", "+49 30 1234"
        )
        assert result.stdout == (
            "updated site 100000000001 (Berlin): window '22:00-05:00' -> '23:00-04:00', "
            "contact '' -> '+49 30 1234'\n"
        )
        site = js(fleetkey, "sites", "list")[0]  # type: ignore[index]
        assert (site["window_start"], site["contact"]) == ("23:00", "+49 30 1234")
        assert fleetkey("audit", "verify").stdout.startswith("ok: ")

    def test_update_json_and_clearing_the_contact(self, fleet: Path, fleetkey: Fleetkey) -> None:
        fleetkey("sites", "update", "100000000001", "--contact", "ops")
        document = js(fleetkey, "sites", "update", "100000000001", "--contact", "")
        assert document == {
            "site": {
                "serial": "100000000001",
                "name": "Berlin",
                "timezone": "Europe/Berlin",
                "window_start": "22:00",
                "window_end": "05:00",
                "contact": None,
            },
            "changed": {"contact": {"old": "ops", "new": None}},
        }

    def test_the_same_values_are_no_change(self, fleet: Path, fleetkey: Fleetkey) -> None:
        before = snapshot(fleetkey)
        result = fleetkey("sites", "update", "Berlin", "--name", "Berlin")
        assert result.stdout == (
            "site 100000000001 (Berlin): nothing changed (it already has those values)\n"
        )
        assert snapshot(fleetkey) == before

    def test_nothing_to_change_is_a_usage_error(self, fleet: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey("sites", "update", "Berlin", code=2)
        assert "nothing to change: give --name, --tz, --window or --contact" in result.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ("Tokio", "--name", "X"),
                "error: site 'Tokio' does not exist: no site has that serial or name\n"
                "hint: `fleetkey sites list` lists the sites; `fleetkey sites add` adds one\n",
            ),
            (
                ("Berlin", "--name", "new york"),
                "error: site name 'new york' is taken by site 100000000002\n"
                "hint: sites are named by serial or by name, so names are unique\n",
            ),
            (
                ("Berlin", "--window", "25:00-04:00"),
                "error: maintenance window '25:00-04:00' is not HH:MM-HH:MM (e.g. 22:00-05:00)\n",
            ),
            (
                ("Berlin", "--tz", "Europe/Atlantis"),
                "error: time zone 'Europe/Atlantis' is not an IANA zone (e.g. Europe/Berlin)\n",
            ),
        ],
        ids=["unknown", "taken", "window", "zone"],
    )
    def test_refused_updates_change_nothing(
        self, fleet: Path, fleetkey: Fleetkey, args: tuple[str, ...], message: str
    ) -> None:
        before = snapshot(fleetkey)
        result = fleetkey("sites", "update", *args, code=1)
        assert result.stderr == message
        assert snapshot(fleetkey) == before


class TestSitesRemove:
    def test_a_site_with_phones_is_kept_saying_how_many(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        before = snapshot(fleetkey)
        result = fleetkey("sites", "remove", "Berlin", code=1)
        assert result.stderr == (
            "error: site 100000000001 (Berlin) still has 2 phones: nothing was removed (--force)\n"
            "hint: remove its phones first (`fleetkey phones remove --site 100000000001`) and "
            "revoke its keys, or give --force to remove it with its phones (keys stay recorded)\n"
        )
        assert snapshot(fleetkey) == before

    def test_force_removes_it_with_its_phones_and_warns_of_its_posted_key(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey(
            "issue", "site", "--serial", "100000000002", "--features", "vqmon", "--expires", "never"
        )
        refused = fleetkey("sites", "remove", "New York", code=1)
        assert "still has 1 phone and 1 posted key (license 1)" in refused.stderr
        result = fleetkey("sites", "remove", "New York", "--force")
        assert result.stdout == "removed site 100000000002 (New York) with its 1 phone(s)\n"
        assert result.stderr == (
            "warning: 1 posted key(s) stay posted (license 1): "
            "`fleetkey licenses revoke ID` stops serving one\n"
        )
        assert [p["mac"] for p in js(fleetkey, "phones", "list")] == [  # type: ignore[union-attr]
            "0004f2000001",
            "0004f2000002",
        ]
        assert fleetkey("audit", "verify").stdout.startswith("ok: ")

    def test_an_empty_site_is_removed_with_json(self, fleet: Path, fleetkey: Fleetkey) -> None:
        fleetkey("phones", "remove", "--site", "New York")
        document = js(fleetkey, "sites", "remove", "100000000002")
        assert document["phones_removed"] == 0  # type: ignore[index]
        assert document["posted_keys_kept"] == []  # type: ignore[index]
        assert document["site"]["name"] == "New York"  # type: ignore[index]


class TestPhonesRemove:
    def test_remove_by_mac_and_by_site_name(self, fleet: Path, fleetkey: Fleetkey) -> None:
        assert fleetkey("phones", "remove", "00:04:f2:00:00:03").stdout == (
            "removed 1 phone(s): 0004f2000003\n"
        )
        assert js(fleetkey, "phones", "remove", "--site", "berlin") == {
            "removed": ["0004f2000001", "0004f2000002"],
            "posted_keys_kept": [],
        }
        assert js(fleetkey, "phones", "list") == []
        assert fleetkey("phones", "remove", "--site", "Berlin").stdout == (
            "site 100000000001 has no phones: nothing was removed\n"
        )

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            ((), 2, "give the MACs of the phones to remove, or --site SITE"),
            (("0004f2000001", "--site", "Berlin"), 2, "or --site SITE"),
            (
                ("0004f2000001", "0004f20000ff"),
                1,
                "error: 1 phone not in the inventory (0004f20000ff): nothing was removed\n"
                "hint: `fleetkey phones list` lists the phones\n",
            ),
            (
                ("0004f2000001", "zz"),
                1,
                "error: MAC 'zz' is not a MAC address: expected 12 hex digits\n",
            ),
            (
                ("--site", "Tokio"),
                1,
                "error: site 'Tokio' does not exist: no site has that serial or name\n",
            ),
        ],
        ids=["nothing", "both", "unknown", "malformed", "unknown site"],
    )
    def test_refused_removals_change_nothing(
        self, fleet: Path, fleetkey: Fleetkey, args: tuple[str, ...], code: int, message: str
    ) -> None:
        before = snapshot(fleetkey)
        result = fleetkey("phones", "remove", *args, code=code)
        assert message in result.stderr
        if code == 1:
            assert result.stderr.startswith(message)
        assert snapshot(fleetkey) == before


class TestPhonesImport:
    def test_a_slim_reimport_keeps_contacts_and_firmware(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        slim = fleet / "slim.csv"
        slim.write_text(
            "mac,site,model\n0004f2000001,Berlin,VVX_501\n0004f2000002,Berlin,SPIP_670\n"
        )
        assert fleetkey("phones", "import", str(slim)).stdout == (
            f"imported {slim}: 0 added, 1 changed, 1 unchanged, 0 removed\n"
        )
        shown = js(fleetkey, "phones", "show", "0004f2000001")
        assert shown == shown | {  # type: ignore[operator]
            "model": "VVX_501",
            "firmware": "5.9.7",
            "prov_user": "dev1",
            "has_password": True,
            "sip_contact": "sip:1001@pbx.test",
        }

    def test_dry_run_shows_the_diff_and_changes_nothing(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        before = snapshot(fleetkey)
        csv = fleet / "next.csv"
        csv.write_text(
            "mac,site,model,contact\n"
            "0004f2000001,Berlin,VVX_501,sip:1001@pbx.test\n"
            "0004f2000004,New York,VVX_600,\n"
        )
        result = fleetkey("phones", "import", str(csv), "--dry-run", "--remove-missing")
        lines = result.stdout.splitlines()
        assert lines[0] == "phones import: what changes"
        rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if "│" in line]
        assert rows == [
            ["changed", "0004f2000001", "model", "VVX_500", "VVX_501"],
            ["added", "0004f2000004", "site", "", "100000000002"],
            ["", "", "model", "", "VVX_600"],
            ["removed", "0004f2000002", "site", "100000000001", ""],
            ["", "", "model", "SPIP_670", ""],
            ["", "", "firmware", "4.0.12", ""],
            ["", "", "contact", "sip:1002@pbx.test", ""],
            ["removed", "0004f2000003", "site", "100000000002", ""],
            ["", "", "model", "VVX_400", ""],
        ]
        assert lines[-1] == (
            f"dry run of {csv}, nothing was changed: would be 1 added, 1 changed, 0 unchanged, "
            "2 removed"
        )
        document = js(fleetkey, "phones", "import", str(csv), "--dry-run")
        assert {k: v for k, v in document.items() if k != "diff"} == {  # type: ignore[union-attr]
            "added": 1,
            "updated": 1,
            "changed": 1,
            "unchanged": 0,
            "removed": 0,
            "dry_run": True,
            "columns": ["mac", "site", "model", "contact"],
        }
        assert snapshot(fleetkey) == before

    def test_a_bad_row_names_its_line_and_imports_nothing(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        before = snapshot(fleetkey)
        csv = fleet / "bad.csv"
        csv.write_text("mac,site,model\n0004f2000001,Berlin,VVX_501\n0004f2000005,Tokio,VVX\n")
        result = fleetkey("phones", "import", str(csv), "--dry-run", code=1)
        assert result.stderr == (
            f"error: {csv}: 1 bad row(s), nothing was imported:\n"
            "  line 3: site 'Tokio' does not exist: no site has that serial or name\n"
        )
        assert snapshot(fleetkey) == before

    def test_phones_list_takes_a_site_name(self, fleet: Path, fleetkey: Fleetkey) -> None:
        listed = js(fleetkey, "phones", "list", "--site", "new york")
        assert [p["mac"] for p in listed] == ["0004f2000003"]  # type: ignore[union-attr]
        result = fleetkey("phones", "list", "--site", "Tokio", code=1)
        assert result.stderr.startswith("error: site 'Tokio' does not exist")


class TestInitLeavesNothingBehind:
    def test_without_a_passphrase_nothing_is_created(
        self, tmp_path: Path, fleetkey: Fleetkey, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        data = tmp_path / "new" / "data"
        monkeypatch.setenv("FLEETKEY_DATA", str(data))
        monkeypatch.delenv("FLEETKEY_KEY_PASSPHRASE", raising=False)
        result = fleetkey("init", code=1)
        assert result.stderr == (
            "error: FLEETKEY_KEY_PASSPHRASE is not set: the first signing key is encrypted at "
            "rest; nothing was created\n"
            "hint: export FLEETKEY_KEY_PASSPHRASE=..., or pass --unencrypted-key to store the "
            "key in clear (file mode 0600)\n"
        )
        assert not (tmp_path / "new").exists()
        monkeypatch.setenv("FLEETKEY_KEY_PASSPHRASE", "now")
        assert "created" in fleetkey("init").stdout  # and a second try just works

    def test_an_unreachable_database_leaves_no_data_directory(
        self, data_dir: Path, fleetkey: Fleetkey
    ) -> None:
        result = fleetkey("--db", "postgresql://nobody@127.0.0.1:1/none", "init", code=1)
        assert result.stderr.startswith("error: cannot open postgresql+psycopg://nobody@")
        assert not data_dir.exists()

    def test_a_failure_after_the_key_removes_the_key_and_the_database(
        self, data_dir: Path, fleetkey: Fleetkey
    ) -> None:
        # a directory where the API token's file goes: init fails writing it, last of all
        (data_dir / "keys" / "api-token.sha256" / "x").mkdir(parents=True)
        before = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*"))
        result = fleetkey("init", code=1)
        assert result.stderr.startswith("error: cannot write (Is a directory): ")
        assert sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")) == before
        assert os.listdir(data_dir) == ["keys"]
