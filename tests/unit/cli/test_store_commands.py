"""Store commands end to end through the CLI: inventory, licenses, fetches, audit, db."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleetkey.authority.datadir import DataDir
from fleetkey.core.codec import parse_license_file, serialize_keys
from fleetkey.ops.delivery import webhook_key
from fleetkey.store import fetches
from fleetkey.store.records import FetchRecord
from fleetkey.store.store import Store

from tests.helpers import VENDOR_FILE, Fleetkey, WebhookReceiver
from tests.pg import PostgresServer

PHONES = (
    "mac,site,model,firmware,user,password,contact\n"
    "0004f2000001,100000000001,VVX_500,5.9.7,dev1,pw1,sip:1001@pbx.test\n"
    "0004f2000002,100000000001,SPIP_670,4.0.12,,,\n"
)


def js(fleetkey: Fleetkey, *args: str) -> object:
    return json.loads(fleetkey(*args, "--json").stdout)


@pytest.fixture
def with_phones(initialized: Path, tmp_path: Path, fleetkey: Fleetkey) -> Path:
    fleetkey(
        "sites",
        "add",
        "100000000001",
        "--name",
        "HQ",
        "--tz",
        "Europe/Berlin",
        "--window",
        "22:00-05:00",
    )
    csv = tmp_path / "phones.csv"
    csv.write_text(PHONES)
    fleetkey("phones", "import", str(csv))
    return initialized


class TestInventory:
    def test_sites_and_phones(self, with_phones: Path, fleetkey: Fleetkey) -> None:
        assert js(fleetkey, "sites", "list") == [
            {
                "serial": "100000000001",
                "name": "HQ",
                "timezone": "Europe/Berlin",
                "window_start": "22:00",
                "window_end": "05:00",
                "contact": None,
            }
        ]
        listed = js(fleetkey, "phones", "list", "--site", "100000000001")
        assert [p["mac"] for p in listed] == ["0004f2000001", "0004f2000002"]  # type: ignore[index]
        shown = js(fleetkey, "phones", "show", "00:04:f2:00:00:01")
        assert shown["has_password"] is True  # type: ignore[index]
        assert "pw1" not in json.dumps(shown)

    def test_bad_phone_csv_writes_nothing(
        self, with_phones: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        bad = tmp_path / "bad.csv"
        bad.write_text(
            "mac,site,model\n0004f2000003,100000000001,VVX\n0004f2000004,100000000999,VVX\n"
        )
        result = fleetkey("phones", "import", str(bad), code=1)
        assert "line 3: site 100000000999 does not exist" in result.stderr
        assert len(js(fleetkey, "phones", "list")) == 2  # type: ignore[arg-type]

    def test_a_model_with_no_letter_or_digit_is_refused_as_a_mix_refuses_it(
        self, with_phones: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        """One rule for a model name (``core.device.models.check_model``): what the import
        takes, ``emulate --models`` takes, and what one refuses the other does."""
        bad = tmp_path / "bad.csv"
        bad.write_text(
            "mac,site,model\n0004f2000003,100000000001,VVX_410\n0004f2000004,100000000001,--\n"
        )
        result = fleetkey("phones", "import", str(bad), code=1)
        assert "line 3: model '--' is not a model name" in result.stderr
        assert len(js(fleetkey, "phones", "list")) == 2  # type: ignore[arg-type]

    def test_bad_site_is_a_clean_error(self, initialized: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey(
            "sites",
            "add",
            "100000000001",
            "--name",
            "X",
            "--tz",
            "Nowhere/x",
            "--window",
            "22:00-05:00",
            code=1,
        )
        assert result.stderr.startswith("error: time zone 'Nowhere/x' is not an IANA zone")

    def test_a_csv_field_over_the_limit_is_an_input_error_naming_the_line(
        self, with_phones: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        huge = tmp_path / "huge.csv"
        huge.write_text("mac,site,model\n0004f2000003,100000000001," + "x" * 140_000 + "\n")
        result = fleetkey("phones", "import", str(huge), code=1)
        assert "line 2 cannot be read as CSV: field larger than field limit" in result.stderr
        assert "bug in fleetkey" not in result.stderr

    def test_site_names_are_capped_and_never_formulas(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        add = ["sites", "add", "100000000002", "--tz", "UTC", "--window", "01:00-02:00"]
        long = fleetkey(*add, "--name", "x" * 200_000, code=1)
        assert (
            long.stderr == "error: site name is 200000 characters long, at most 200 are allowed\n"
        )
        formula = fleetkey(*add, "--name", "HQ", "--contact", "=HYPERLINK(1)", code=1)
        assert "site contact '=HYPERLINK(1)' starts with '='" in formula.stderr
        assert "hint: text may not start with = + - @" in formula.stderr
        assert js(fleetkey, "sites", "list") == []

    def test_stored_text_is_printed_as_text_not_markup(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        name = "[/] HQ [red]x"
        add = ["sites", "add", "100000000002", "--tz", "UTC", "--window", "01:00-02:00"]
        assert name in fleetkey(*add, "--name", name).stdout
        assert name in fleetkey("sites", "list").stdout


class TestLicenses:
    def test_issuing_records_posts_and_supersedes(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        args = ["issue", "site", "--serial", "100000000001", "--features", "vqmon", "--expires"]
        first = js(fleetkey, *args, "2027-01-31")
        second = js(fleetkey, *args, "2028-01-31")
        listed = js(fleetkey, "licenses", "list")
        assert [(k["id"], k["state"], k["succeeds_id"]) for k in listed] == [  # type: ignore[union-attr,index]
            (first["license_id"], "superseded", None),  # type: ignore[index]
            (second["license_id"], "posted", first["license_id"]),  # type: ignore[index]
        ]
        expiring = js(fleetkey, "licenses", "list", "--expiring-within", "100000")
        assert len(expiring) == 2  # type: ignore[arg-type]

    def test_a_negative_expiry_horizon_names_the_flag(
        self, initialized: Path, fleetkey: Fleetkey
    ) -> None:
        result = fleetkey("licenses", "list", "--expiring-within", "-1", code=1)
        assert result.stderr == (
            "error: expiring within -1 days: expected a number of days, 0 or more "
            "(--expiring-within)\n"
        )

    def test_issue_to_another_path_is_issued_not_posted(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        document = js(
            fleetkey,
            "issue",
            "phone",
            "--mac",
            "0004f2000001",
            "--features",
            "vqmon",
            "--expires",
            "never",
            "--out",
            str(tmp_path / "x.cfg"),
        )
        assert document["state"] == "issued"  # type: ignore[index]

    def test_batch_is_recorded(self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey) -> None:
        csv = tmp_path / "b.csv"
        csv.write_text(
            "mac,features,expires\n"
            + "".join(f"0004f2{i:06x},vqmon,2030-01-01\n" for i in range(30))
        )
        fleetkey("issue", "batch", "--csv", str(csv))
        posted = js(fleetkey, "licenses", "list", "--state", "posted")
        assert len(posted) == 30  # type: ignore[arg-type]
        assert {k["signature"] for k in posted} == {"valid"}  # type: ignore[union-attr,index]

    def test_import_vendor_file_then_skip_it(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        folder = tmp_path / "old-server"
        folder.mkdir()
        shutil.copy(VENDOR_FILE, folder / "000000000000-license.cfg")
        document = js(
            fleetkey,
            "licenses",
            "import",
            str(folder),
            "--post",
            "--accept-unverified",
            "the vendor's site license from the old server",
            "--force",  # it expired in 2015
        )
        (key,) = document["imported"]  # type: ignore[index]
        assert (key["signature"], key["origin"], key["state"]) == (
            "unverifiable",
            "imported",
            "posted",
        )
        again = js(fleetkey, "licenses", "import", str(folder))
        assert again["imported"] == []  # type: ignore[index]
        assert again["skipped"] == [  # type: ignore[index]
            {
                "file": str(folder / "000000000000-license.cfg"),
                "key_index": 1,
                "license_id": key["id"],
                "reason": f"already in the store as license {key['id']} (posted)",
            }
        ]

    def test_import_post_never_serves_an_unverified_key_unless_accepted_with_a_reason(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        issued = js(fleetkey, "issue", "site", "--serial", "100000000001", "--features", "vqmon",
                    "--expires", "2027-01-31")  # fmt: skip
        served = Path(issued["file"]).read_bytes()  # type: ignore[index]
        (key,) = parse_license_file(served).keys
        forged = replace(key, words=tuple(0xFFFF if w else 0 for w in key.words))
        folder = tmp_path / "drop"
        folder.mkdir()
        (folder / "000000000000-license.cfg").write_bytes(serialize_keys([forged]))
        refused = fleetkey("licenses", "import", str(folder), "--post", code=1)
        assert refused.stderr.startswith(
            "error: nothing imported: posting would serve keys whose signature is not valid: "
        )
        assert "(invalid): phones may refuse such a key" in refused.stderr
        assert "(--accept-unverified)" in refused.stderr
        listed = js(fleetkey, "licenses", "list")
        assert [(k["id"], k["state"]) for k in listed] == [(issued["license_id"], "posted")]  # type: ignore[index,union-attr]
        assert Path(issued["file"]).read_bytes() == served  # type: ignore[index]
        accepted = fleetkey("licenses", "import", str(folder), "--post",
                            "--accept-unverified", "restoring the old server's file")  # fmt: skip
        assert "posted license 2 (Site 100000000001) with an invalid signature" in accepted.stderr
        event = js(fleetkey, "audit", "list")[-1]  # type: ignore[index]
        assert event["action"] == "license.post"
        assert event["details"]["accepted_unverified"] == {
            "signature": "invalid",
            "reason": "restoring the old server's file",
        }
        assert event["actor"].endswith("@cli")

    def test_post_of_an_unverified_key_needs_a_reason(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        folder = tmp_path / "old-server"
        folder.mkdir()
        shutil.copy(VENDOR_FILE, folder / "000000000000-license.cfg")
        (key,) = js(fleetkey, "licenses", "import", str(folder))["imported"]  # type: ignore[index]
        alone = fleetkey("licenses", "import", str(folder), "--accept-unverified", "x", code=2)
        assert "--accept-unverified goes with --post" in alone.stderr
        refused = fleetkey("licenses", "post", str(key["id"]), code=1)
        assert "has an unverifiable signature" in refused.stderr
        fleetkey("licenses", "post", str(key["id"]), "--accept-unverified", "vendor file",
                 "--force")  # fmt: skip
        assert js(fleetkey, "licenses", "list", "--state", "posted")[0]["id"] == key["id"]  # type: ignore[index]

    def test_import_deduplicates_by_key_not_by_file_bytes(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        issued = js(fleetkey, "issue", "phone", "--mac", "0004f2000001", "--features", "vqmon",
                    "--expires", "never", "--out", str(tmp_path / "x.cfg"))  # fmt: skip
        data = (tmp_path / "x.cfg").read_bytes()
        folder = tmp_path / "copies"
        folder.mkdir()
        for n in range(5):  # five files of one key, each with other bytes around it
            variant = data.replace(b"<licenses>", b"<!-- copy %d --><licenses>" % n)
            (folder / f"{n}-0004f2000001-license.cfg").write_bytes(variant)
        document = js(fleetkey, "licenses", "import", str(folder))
        assert document["imported"] == []  # type: ignore[index]
        assert {s["license_id"] for s in document["skipped"]} == {issued["license_id"]}  # type: ignore[index,union-attr]
        assert len(js(fleetkey, "licenses", "list")) == 1  # type: ignore[arg-type]

    def test_one_key_in_many_new_files_is_recorded_once(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        folder = tmp_path / "copies"
        folder.mkdir()
        data = VENDOR_FILE.read_bytes()
        for n in range(3):
            (folder / f"{n}-license.cfg").write_bytes(data + b"\n" * n)
        document = js(fleetkey, "licenses", "import", str(folder))
        assert len(document["imported"]) == 1  # type: ignore[arg-type,index]
        assert [s["reason"] for s in document["skipped"]] == [  # type: ignore[index,union-attr]
            "the same key as an earlier file of this import"
        ] * 2

    def test_import_refuses_a_fifo_at_once(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        folder = tmp_path / "odd"
        folder.mkdir()
        shutil.copy(VENDOR_FILE, folder / "000000000000-license.cfg")
        os.mkfifo(folder / "0004f2000001-license.cfg")
        result = subprocess.run(
            [sys.executable, "-m", "fleetkey", "licenses", "import", str(folder)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip  # a subprocess with a timeout: the FIFO used to block the import for ever
        assert result.returncode == 1
        assert result.stderr == (
            f"error: nothing imported:\n  {folder / '0004f2000001-license.cfg'}: a FIFO, "
            "not a regular file\n"
        )
        assert js(fleetkey, "licenses", "list") == []

    def test_import_refuses_file_names_the_store_cannot_keep(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        folder = tmp_path / "odd"
        folder.mkdir()
        shutil.copy(VENDOR_FILE, folder / "x\r\nSet-Cookie: a-license.cfg")
        shutil.copy(VENDOR_FILE, folder / ("y" * 60 + "-license.cfg"))
        result = fleetkey("licenses", "import", str(folder), code=1)
        assert "holds the control character U+000D" in result.stderr
        assert "file name is 72 characters long, at most 64" in result.stderr
        assert js(fleetkey, "licenses", "list") == []

    def test_a_huge_id_is_not_in_the_store(self, initialized: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey("licenses", "post", "9" * 30, code=1)
        assert result.stderr == f"error: license {'9' * 30} is not in the store\n" + (
            "hint: `fleetkey licenses list` shows the ids\n"
        )

    def test_import_refuses_a_directory_with_a_broken_file(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        folder = tmp_path / "mixed"
        folder.mkdir()
        shutil.copy(VENDOR_FILE, folder / "000000000000-license.cfg")
        (folder / "0004f2000001-license.cfg").write_text("<licenses><x/></licenses>")
        result = fleetkey("licenses", "import", str(folder), code=1)
        assert "nothing imported" in result.stderr
        assert js(fleetkey, "licenses", "list") == []

    def test_revoke_removes_the_posted_file(self, initialized: Path, fleetkey: Fleetkey) -> None:
        document = js(
            fleetkey,
            "issue",
            "phone",
            "--mac",
            "0004f2000001",
            "--features",
            "vqmon",
            "--expires",
            "never",
        )
        path = Path(document["file"])  # type: ignore[index]
        result = fleetkey("licenses", "revoke", str(document["license_id"]))  # type: ignore[index]
        assert f"removed {path}" in result.stdout
        assert not path.exists()
        assert (
            "license 99 is not in the store" in fleetkey("licenses", "revoke", "99", code=1).stderr
        )


class TestFetchesAndAudit:
    def test_fetches_listing(self, initialized: Path, fleetkey: Fleetkey) -> None:
        store = Store(f"sqlite:///{initialized / 'fleetkey.db'}")
        at = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
        fetches.insert_records(
            store.engine,
            [
                FetchRecord(
                    "/0004f2000001-license.cfg",
                    "http",
                    200,
                    450,
                    1.0,
                    at,
                    mac="0004f2000001",
                    digest="cd" * 32,
                ),
                FetchRecord("/000000000000.cfg", "tftp", 200, 1699, 3.0, at, mac="0004f2000002"),
            ],
        )
        store.close()
        found = js(fleetkey, "fetches", "--mac", "0004f2000001")
        assert [(f["path"], f["digest"]) for f in found] == [  # type: ignore[union-attr,index]
            ("/0004f2000001-license.cfg", "cd" * 32)
        ]
        assert len(js(fleetkey, "fetches", "--since", "2026-05-02")) == 0  # type: ignore[arg-type]
        refused = fleetkey("fetches", "--since", "May", code=2).stderr
        assert "Invalid value for '--since': 'May' is neither an ISO date or date-time" in refused

    def test_audit_records_every_change_and_detects_tampering(
        self, with_phones: Path, fleetkey: Fleetkey
    ) -> None:
        fleetkey("keys", "create", "--name", "second")
        actions = [e["action"] for e in js(fleetkey, "audit", "list")]  # type: ignore[union-attr,index]
        assert actions == ["init", "key.create", "site.add", "phones.import", "key.create"]
        assert "ok: 5 events, chain intact" in fleetkey("audit", "verify").stdout
        with sqlite3.connect(with_phones / "fleetkey.db") as connection:
            connection.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
        result = fleetkey("audit", "verify", code=1)
        assert "audit trail broken at event 3: event 3 was changed" in result.stderr
        verdict = json.loads(fleetkey("audit", "verify", "--json", code=1).stdout)
        assert (verdict["ok"], verdict["broken_at"]) == (False, 3)

    def test_audit_verify_finds_inventory_rows_edited_in_the_database(
        self, with_phones: Path, fleetkey: Fleetkey
    ) -> None:
        assert fleetkey("audit", "verify").stdout == (
            "ok: 4 events, chain intact; 3 licenses, sites and phones as audited\n"
        )
        with sqlite3.connect(with_phones / "fleetkey.db") as connection:
            connection.execute("UPDATE sites SET name = 'Mallory' WHERE serial = '100000000001'")
        result = fleetkey("audit", "verify", code=1)
        assert result.stderr == (
            "error: audit trail broken at event 3: site 100000000001 differs from its state "
            "audited by event 3: changed since (4 events verified before)\n"
        )


class TestAuditAnchor:
    def test_an_anchor_file_catches_a_deleted_tail_with_the_head_rewritten(
        self, with_phones: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        anchor_file = tmp_path / "elsewhere" / "anchor.json"
        anchor_file.parent.mkdir()
        line = fleetkey("audit", "anchor", "--file", str(anchor_file)).stdout
        assert line.startswith("fleetkey audit anchor: seq=4 hash=")
        document = json.loads(anchor_file.read_text())
        assert document["seq"] == 4
        assert document["database"].startswith("sqlite:///")
        with sqlite3.connect(with_phones / "fleetkey.db") as connection:
            connection.execute("DELETE FROM audit_events WHERE seq >= 3")
            connection.execute(
                "UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit_events "
                "WHERE seq = 2)"
            )
            connection.execute("DELETE FROM audit_rows")  # the rows' states go with their events
            connection.execute("DELETE FROM audit_rows_sum")
            connection.execute("DELETE FROM phones")
            connection.execute("DELETE FROM sites")
        assert "ok: 2 events, chain intact" in fleetkey("audit", "verify").stdout
        result = fleetkey("audit", "verify", "--anchor", str(anchor_file), code=1)
        assert result.stderr == (
            "error: audit trail broken at event 3: the chain ends at event 2 but the anchor "
            "records event 4: events were removed (and the head row rewritten) "
            "(2 events verified before)\n"
        )
        log = tmp_path / "cron.log"
        log.write_text(f"Dec 02 02:00 host cron[7]: {line}")
        assert (
            "the anchor records event 4"
            in fleetkey("audit", "verify", "--anchor", str(log), code=1).stderr
        )

    def test_a_chain_that_reaches_its_anchor_verifies(
        self, with_phones: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        anchor_file = tmp_path / "anchor.json"
        document = js(fleetkey, "audit", "anchor", "--file", str(anchor_file))
        assert json.loads(anchor_file.read_text()) == document
        fleetkey("keys", "create", "--name", "later")
        result = fleetkey("audit", "verify", "--anchor", str(anchor_file))
        assert result.stdout == (
            "ok: 5 events, chain intact, reaches the anchor (event 4); "
            "3 licenses, sites and phones as audited\n"
        )

    def test_no_anchor_is_made_of_a_broken_trail(
        self, with_phones: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        with sqlite3.connect(with_phones / "fleetkey.db") as connection:
            connection.execute("UPDATE phones SET model = 'X' WHERE mac = '0004f2000002'")
        result = fleetkey("audit", "anchor", "--file", str(tmp_path / "a.json"), code=1)
        assert result.stderr == (
            "error: not anchoring a broken audit trail: phone 0004f2000002 differs from its "
            "state audited by event 4: changed since\n"
        )
        assert not (tmp_path / "a.json").exists()

    def test_the_anchor_goes_to_a_webhook_signed_and_an_answer_not_2xx_is_an_error(
        self, with_phones: Path, fleetkey: Fleetkey
    ) -> None:
        with WebhookReceiver("/anchors") as receiver:
            url = receiver.url
            document = js(fleetkey, "audit", "anchor", "--webhook", url)
            receiver.answers.append(500)
            answered = fleetkey("audit", "anchor", "--webhook", url, code=1)
        assert answered.stderr.startswith(f"error: anchor not sent: HTTP 500 from {url}")
        (headers, body, _), _ = receiver.received
        assert headers["user-agent"] == "fleetkey-audit"
        assert json.loads(body) == document
        stamp, signature = headers["fleetkey-signature"].removeprefix("t=").split(",ed25519=")
        public = webhook_key(DataDir(with_phones)).public
        public.verify(base64.b64decode(signature), f"{stamp}.".encode() + body)
        refused = fleetkey("audit", "anchor", "--webhook", url, code=1)
        assert refused.stderr.startswith(f"error: anchor not sent to {url}: ConnectError")


class TestDatabase:
    def test_db_current_and_upgrade(self, initialized: Path, fleetkey: Fleetkey) -> None:
        document = js(fleetkey, "db", "current")
        assert document["up_to_date"] is True  # type: ignore[index]
        assert "already at" in fleetkey("db", "upgrade").stdout

    def test_empty_database_asks_for_an_upgrade(
        self, initialized: Path, tmp_path: Path, fleetkey: Fleetkey
    ) -> None:
        url = f"sqlite:///{tmp_path / 'other.db'}"
        result = fleetkey("--db", url, "sites", "list", code=1)
        assert "is at schema none" in result.stderr
        assert "hint: run `fleetkey db upgrade`" in result.stderr
        fleetkey("--db", url, "db", "upgrade")
        assert js(fleetkey, "--db", url, "sites", "list") == []

    @pytest.mark.postgres
    def test_postgresql_url_as_users_write_it(
        self,
        data_dir: Path,
        tmp_path: Path,
        fleetkey: Fleetkey,
        postgres_server: PostgresServer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        url = postgres_server.create_database()
        assert url.startswith("postgresql://fleetkey@127.0.0.1:")
        monkeypatch.setenv("FLEETKEY_DB", url)
        fleetkey("init")
        fleetkey(
            "sites", "add", "100000000001", "--name", "HQ", "--tz", "UTC", "--window", "01:00-04:00"
        )
        csv = tmp_path / "phones.csv"
        csv.write_text(PHONES)
        fleetkey("phones", "import", str(csv))
        fleetkey(
            "issue", "phone", "--mac", "0004f2000001", "--features", "vqmon", "--expires", "never"
        )
        assert len(js(fleetkey, "licenses", "list", "--state", "posted")) == 1  # type: ignore[arg-type]
        assert "ok: 6 events" in fleetkey("audit", "verify").stdout
        assert not (data_dir / "fleetkey.db").exists()


def test_failed_write_records_nothing(
    initialized: Path, tmp_path: Path, fleetkey: Fleetkey
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    result = fleetkey(
        "issue",
        "phone",
        "--mac",
        "0004f2000001",
        "--features",
        "vqmon",
        "--expires",
        "never",
        "--out",
        str(blocker / "x.cfg"),
        code=1,
    )
    assert result.stderr.startswith("error: ")
    assert js(fleetkey, "licenses", "list") == []
    assert [e["action"] for e in js(fleetkey, "audit", "list")] == ["init", "key.create"]  # type: ignore[union-attr,index]
