"""Lists for people and scripts: pages that say what is left, --wide, --csv, --json; licenses
and phones shown one at a time; fetches filtered; --json on every command that changes
something."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from fleetkey.cli.main import cli
from fleetkey.clock import FixedClock
from fleetkey.core.rollout.windows import Window
from fleetkey.store import fetches, held, inventory
from fleetkey.store.records import FetchRecord, Site
from fleetkey.store.schema import PhoneRow
from fleetkey.store.store import Store

from tests.helpers import SITE_SERIAL, Fleetkey, add_site_fleet, command_at, runnable_commands

TODAY = datetime.now(UTC).date()


def js(fleetkey: Fleetkey, *args: str) -> object:
    return json.loads(fleetkey(*args, "--json").stdout)


def record(initialized: Path, *records: FetchRecord) -> None:
    store = Store(f"sqlite:///{initialized / 'fleetkey.db'}")
    fetches.insert_records(store.engine, list(records))
    store.close()


@pytest.fixture
def fleet(initialized: Path, fleetkey: Fleetkey, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Site 100000000001 with 120 phones (0004f2000000 …), at 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")
    add_site_fleet(fleetkey, initialized, phones=120)
    return initialized


class TestPages:
    def test_a_table_shows_a_page_and_says_how_to_see_the_rest(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        first = fleetkey("phones", "list").stdout
        assert "0004f2000031" in first
        assert "0004f2000032" not in first  # the 51st phone
        assert first.splitlines()[-1] == (
            "… 70 more phones; next page: `--after 0004f2000031`, all: `--limit 0`"
        )
        second = fleetkey("phones", "list", "--after", "0004f2000031").stdout
        assert "0004f2000032" in second
        assert "0004f2000031" not in second
        assert "… 20 more phones; next page: `--after 0004f2000063`" in second
        last = fleetkey("phones", "list", "--after", "00:04:F2:00:00:63").stdout
        assert "0004f2000077" in last
        assert "more phones" not in last
        whole = fleetkey("phones", "list", "--limit", "0").stdout
        assert "0004f2000000" in whole
        assert "0004f2000077" in whole
        assert "more phones" not in whole

    def test_scripts_get_every_row_unless_they_ask_for_fewer(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        assert len(js(fleetkey, "phones", "list")) == 120  # type: ignore[arg-type]
        ten = fleetkey("phones", "list", "--limit", "10", "--json")
        assert [p["mac"] for p in json.loads(ten.stdout)] == [f"0004f2{i:06x}" for i in range(10)]
        assert ten.stderr == (
            "note: 110 more phones; next page: `--after 0004f2000009`, all: `--limit 0`\n"
        )
        table = list(csv.reader(io.StringIO(fleetkey("phones", "list", "--csv").stdout)))
        assert table[0] == [
            "mac",
            "site",
            "model",
            "firmware",
            "last seen (UTC)",
            "address",
            "contact",
        ]
        assert len(table) == 121

    def test_list_and_show_say_when_and_where_the_newest_fetch_record_came_from(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        at = datetime(2026, 5, 1, 2, 3, 4, tzinfo=UTC)
        record(fleet, FetchRecord("/sip.cfg", "tftp", 200, 9, 1.0, at, mac="0004f2000001",
                                  remote_addr="10.9.8.7", user_agent="UA/6.4"))  # fmt: skip
        table = list(csv.reader(io.StringIO(fleetkey("phones", "list", "--csv").stdout)))
        assert table[2][4:6] == ["2026-05-01 02:03:04", "10.9.8.7"]
        assert table[1][4:6] == ["", ""]  # never seen
        listed = js(fleetkey, "phones", "list", "--limit", "2")
        assert listed[1]["last_seen_at"] == at.isoformat()  # type: ignore[index]
        shown = js(fleetkey, "phones", "show", "0004f2000001")
        assert (shown["last_address"], shown["last_user_agent"]) == ("10.9.8.7", "UA/6.4")  # type: ignore[index]
        assert "10.9.8.7" in fleetkey("phones", "show", "0004f2000001").stdout

    def test_what_is_not_known_of_a_phone_is_a_dash_in_list_and_show_and_empty_in_csv(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        listed = fleetkey("phones", "list", "--wide", "--limit", "1").stdout
        row = next(line for line in listed.splitlines() if "0004f2000000" in line)
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[3:] == ["-", "never", "-", "-"], listed  # firmware, seen, address, contact
        shown = fleetkey("phones", "show", "0004f2000000").stdout
        assert any(line.split() == ["firmware", "-"] for line in shown.splitlines()), shown
        table = list(csv.reader(io.StringIO(fleetkey("phones", "list", "--csv").stdout)))
        assert table[1][3:] == ["", "", "", ""]

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["--limit", "-1"], 2, "Invalid value for '--limit': -1 is not in the range x>=0."),
            (["--limit", "many"], 2, "Invalid value for '--limit': 'many' is not a valid integer"),
            (["--after", "0004f2"], 1, "error: MAC '0004f2'"),
            (["--json", "--csv"], 2, "Error: --json and --csv do not go together: choose one"),
            (["--wide", "--csv"], 2, "Error: --csv and --wide do not go together: choose one"),
        ],
    )
    def test_bad_paging_input_is_refused(
        self, fleet: Path, fleetkey: Fleetkey, args: list[str], code: int, message: str
    ) -> None:
        result = fleetkey("phones", "list", *args, code=code)
        assert message in result.stderr
        assert result.stdout == ""

    def test_wide_shows_every_column_and_csv_every_column_as_text(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        narrow = fleetkey("phones", "list", "--limit", "1").stdout
        assert "contact" not in narrow.splitlines()[1]
        assert "(contact left out at 80 columns: --wide shows every column)" in narrow
        wide = fleetkey("phones", "list", "--limit", "1", "--wide").stdout
        assert "contact" in wide.splitlines()[1]
        assert "left out" not in wide

    def test_csv_quotes_what_a_spreadsheet_would_run(self, fleet: Path, fleetkey: Fleetkey) -> None:
        at = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
        agent = '=HYPERLINK("http://evil.example","x")'
        record(fleet, FetchRecord("/a.cfg", "http", 200, 1, 1.0, at, user_agent=agent))
        rows = list(csv.reader(io.StringIO(fleetkey("fetches", "--csv").stdout)))
        assert rows[1][rows[0].index("user agent")] == "'" + agent
        assert rows[1][0] == "2026-05-01T02:00:00+00:00"

    def test_how_the_server_knew_the_phone_is_in_csv_the_export_and_wide(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        at = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
        record(
            fleet,
            FetchRecord(
                "/a.cfg", "ftp", 200, 1, 1.0, at, mac="0004f2000001", identified_by="login"
            ),
            FetchRecord("/b.cfg", "http", 404, 1, 1.0, at + timedelta(seconds=1)),
        )
        listed = list(csv.reader(io.StringIO(fleetkey("fetches", "--csv").stdout)))
        exported = list(
            csv.reader(
                io.StringIO(
                    fleetkey(
                        "fetches", "export", "--since", "2026-05-01", "--until", "2026-05-02"
                    ).stdout
                )
            )
        )
        for rows in (listed, exported):
            assert rows[0][-1] == "identified by"
            assert [row[-1] for row in rows[1:]] == ["login", ""]
        wide = fleetkey("fetches", "--wide").stdout
        assert "identified by" in wide
        assert "login" in wide
        assert [r["identified_by"] for r in js(fleetkey, "fetches")] == ["login", None]  # type: ignore[index]

    def test_records_go_newest_first_in_a_table_and_oldest_first_for_scripts(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        at = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
        record(
            fleet,
            *(
                FetchRecord(f"/f{n}.cfg", "http", 200, 1, 1.0, at + timedelta(seconds=n))
                for n in range(60)
            ),
        )
        table = fleetkey("fetches").stdout
        assert table.index("/f59.cfg") < table.index("/f58.cfg")
        assert "/f9.cfg" not in table  # the oldest ten are past the page
        assert table.splitlines()[-1] == "… 10 more older fetch records; all: `--limit 0`"
        twelve = fleetkey("fetches", "--limit", "12", "--json")
        assert [r["path"] for r in json.loads(twelve.stdout)] == [
            f"/f{n}.cfg" for n in range(48, 60)
        ]
        assert twelve.stderr == "note: 48 more older fetch records; all: `--limit 0`\n"
        events = fleetkey("audit", "list", "--limit", "2").stdout
        assert events.index("phones.import") < events.index("site.add")
        assert "… 2 more older events; next page: `--before 3`" in events
        older = js(fleetkey, "audit", "list", "--before", "3")
        assert [e["action"] for e in older] == ["init", "key.create"]  # type: ignore[union-attr,index]


class TestLicenses:
    @pytest.fixture
    def keys(self, fleet: Path, fleetkey: Fleetkey) -> Path:
        """License 1 (superseded) and 2 (posted) for the site, 3 for phone 0004f2000001."""
        site = ["issue", "site", "--serial", SITE_SERIAL]
        fleetkey(*site, "--features", "corporate-directory", "--expires", "2020-01-31", "--force")
        fleetkey(*site, "--features", "corporate-directory,conference-management",
                 "--feature", f"vqmon={TODAY + timedelta(days=10)}",
                 "--expires", str(TODAY + timedelta(days=400)))  # fmt: skip
        fleetkey("issue", "phone", "--mac", "0004f2000001", "--features", "call-recording",
                 "--expires", "never")  # fmt: skip
        return fleet

    def test_the_list_names_features_and_days_left_newest_first(
        self, keys: Path, fleetkey: Fleetkey
    ) -> None:
        shown = fleetkey("licenses", "list").stdout
        assert shown.index("0004f2000001") < shown.index("100000000001")
        lines = shown.splitlines()
        row = next(line for line in lines if line.startswith("│  2 │"))
        assert "│ posted     │       400 │ corporate-directory" in row
        assert any("vqmon until " + str(TODAY + timedelta(days=10)) in line for line in lines)
        assert "│ superseded │   expired │ corporate-directory" in next(
            line for line in lines if line.startswith("│  1 │")
        )
        assert "│ posted     │     never │ call-recording" in next(
            line for line in lines if line.startswith("│  3 │")
        )

    def test_json_terms_are_keyed_by_feature_name_and_keep_slots(
        self, keys: Path, fleetkey: Fleetkey
    ) -> None:
        second = js(fleetkey, "licenses", "list")[1]  # type: ignore[index]
        vqmon = str(TODAY + timedelta(days=10))
        last = str(TODAY + timedelta(days=400))
        assert second["terms"] == {
            "corporate-directory": last,
            "conference-management": last,
            "vqmon": vqmon,
        }
        assert second["terms_by_slot"] == {"0": last, "1": last, "3": vqmon}
        assert second["features"] == [
            {"slot": 0, "name": "corporate-directory", "expires": last, "days_left": 400},
            {"slot": 1, "name": "conference-management", "expires": last, "days_left": 400},
            {"slot": 3, "name": "vqmon", "expires": vqmon, "days_left": 10},
        ]
        assert second["days_left"] == 400
        phone = js(fleetkey, "licenses", "show", "3")
        assert phone["terms"] == {"call-recording": "never"}  # type: ignore[index]
        assert phone["days_left"] is None  # type: ignore[index]
        assert js(fleetkey, "licenses", "show", "1")["succeeded_by"] == [2]  # type: ignore[index]

    def test_show_gives_the_key_its_features_and_days_left(
        self, keys: Path, fleetkey: Fleetkey
    ) -> None:
        shown = fleetkey("licenses", "show", "2").stdout
        lines = [line.rstrip() for line in shown.splitlines()]
        assert "key           Site 100000000001" in lines
        assert "state         posted" in lines
        assert f"expires       {TODAY + timedelta(days=400)}" in lines
        assert "days left     400" in lines
        assert "succeeds      license 1" in lines
        assert "succeeded by  -" in lines
        assert (
            f"│    3 │ vqmon                 │ {TODAY + timedelta(days=10)} │        10 │" in lines
        )

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["9"], 1, "error: license 9 is not in the store\nhint: `fleetkey licenses list`"),
            (["x"], 2, "Invalid value for 'ID': 'x' is not a valid integer"),
            ([], 2, "Missing argument 'ID'"),
        ],
    )
    def test_show_refuses_what_names_no_key(
        self, keys: Path, fleetkey: Fleetkey, args: list[str], code: int, message: str
    ) -> None:
        assert message in fleetkey("licenses", "show", *args, code=code).stderr

    def test_licenses_list_pages_by_id(self, keys: Path, fleetkey: Fleetkey) -> None:
        page = fleetkey("licenses", "list", "--limit", "1").stdout
        assert "… 2 more older keys; next page: `--before 3`" in page
        assert [k["id"] for k in js(fleetkey, "licenses", "list", "--before", "3")] == [1, 2]  # type: ignore[union-attr,index]


class TestPhoneShow:
    def test_a_phone_shows_the_keys_it_should_have_and_what_it_got(
        self, fleet: Path, fleetkey: Fleetkey
    ) -> None:
        site = ["issue", "site", "--serial", SITE_SERIAL, "--features", "vqmon"]
        fleetkey(*site, "--expires", str(TODAY + timedelta(days=100)))
        fleetkey(*site, "--expires", str(TODAY + timedelta(days=200)))
        old, new = (js(fleetkey, "licenses", "show", n) for n in ("1", "2"))
        before = fleetkey("phones", "show", "0004f2000001").stdout
        assert "│ phone │       - │ no phone key posted │" in before
        assert f"│ site  │       2 │ vqmon               │ {TODAY + timedelta(days=200)} │" in (
            before
        )
        assert "│ 0004f2000001-license.cfg │ -   " in before
        assert "never asked for" in before
        at = datetime.now(UTC) - timedelta(minutes=5)
        digest = old["digest"]  # type: ignore[index]
        record(
            fleet,
            FetchRecord("/000000000000-license.cfg", "tftp", 200, 400, 1.0, at,
                        mac="0004f2000001", digest=digest),
            FetchRecord("/0004f2000001-license.cfg", "http", 404, 0, 1.0, at,
                        mac="0004f2000001"),
        )  # fmt: skip
        after = fleetkey("phones", "show", "0004f2000001").stdout
        assert "│ tftp 200 │ license 1        │" in after  # the version wraps: words whole
        assert "│ (superseded),    │" in after
        stale = js(fleetkey, "phones", "show", "0004f2000001")["licenses"][1]  # type: ignore[index]
        assert (stale["current"], stale["last_served"]["license_id"]) == (False, 1)
        assert "│ 0004f2000001-license.cfg │" in after
        assert "never served" in after
        assert "tftp 200" in after
        record(
            fleet,
            FetchRecord("/100000000001/000000000000-license.cfg", "http", 200, 400, 1.0,
                        at + timedelta(minutes=1), mac="0004f2000001",
                        digest=new["digest"]),  # type: ignore[index]
        )  # fmt: skip
        current = js(fleetkey, "phones", "show", "0004f2000001")
        site_state = current["licenses"][1]  # type: ignore[index]
        assert site_state["current"] is True
        assert site_state["posted"]["id"] == 2
        assert site_state["last_served"]["path"] == "/100000000001/000000000000-license.cfg"
        assert site_state["last_served"]["license_id"] == 2
        phone_state = current["licenses"][0]  # type: ignore[index]
        assert (phone_state["posted"], phone_state["current"]) == (None, None)
        assert phone_state["last_request"]["status"] == 404
        assert phone_state["last_served"] is None
        shown = fleetkey("phones", "show", "0004f2000001").stdout
        assert "│ http 200 │ the posted key   │" in shown
        assert "│          │ (license 2)      │" in shown

    def test_a_phone_nobody_added_is_an_error(self, fleet: Path, fleetkey: Fleetkey) -> None:
        result = fleetkey("phones", "show", "0004f2ffffff", code=1)
        assert result.stderr == (
            "error: phone 0004f2ffffff is not in the inventory\n"
            "hint: add it with `fleetkey phones import CSV`\n"
        )


class TestFetchFilters:
    @pytest.fixture
    def records(self, fleet: Path) -> Path:
        at = datetime.now(UTC) - timedelta(hours=3)
        record(
            fleet,
            FetchRecord("/0004f2000001-license.cfg", "http", 200, 1, 1.0, at, mac="0004f2000001"),
            FetchRecord(
                "/100000000001/000000000000-license.cfg",
                "tftp",
                404,
                0,
                1.0,
                at + timedelta(hours=2),
                mac="0004f2000001",
            ),
            FetchRecord("/a_b%c.cfg", "http", 503, 0, 1.0, at + timedelta(hours=2, minutes=30)),
            FetchRecord("/x\x1b[31mred.cfg", "http", 400, 0, 1.0, at + timedelta(hours=2)),
        )
        return fleet

    def paths(self, fleetkey: Fleetkey, *args: str) -> list[str]:
        return [r["path"] for r in js(fleetkey, "fetches", *args)]  # type: ignore[union-attr,index]

    def test_status_path_and_time_filters_hold_together(
        self, records: Path, fleetkey: Fleetkey
    ) -> None:
        site = "/100000000001/000000000000-license.cfg"
        assert self.paths(fleetkey, "--status", "404") == [site]
        assert len(self.paths(fleetkey, "--status", "4xx", "--status", "5XX")) == 3
        assert self.paths(fleetkey, "--path", "LICENSE.cfg", "--status", "2xx") == [
            "/0004f2000001-license.cfg"
        ]
        assert self.paths(fleetkey, "--path", "/1000*/0000") == [site]
        assert self.paths(fleetkey, "--path", "a_b%") == ["/a_b%c.cfg"]
        assert self.paths(fleetkey, "--path", "a%b") == []  # % is a character, not a wildcard
        assert self.paths(fleetkey, "--since", "2h", "--path", "license") == [site]
        assert len(self.paths(fleetkey, "--until", "2h")) == 1
        assert sorted(self.paths(fleetkey, "--since", "90m", "--until", "45m")) == [
            site,
            "/x\x1b[31mred.cfg",
        ]
        moment = (datetime.now(UTC) - timedelta(minutes=40)).isoformat()
        assert self.paths(fleetkey, "--since", moment) == ["/a_b%c.cfg"]
        day = (date.today() + timedelta(days=1)).isoformat()
        assert self.paths(fleetkey, "--since", day) == []

    def test_control_characters_are_shown_escaped(self, records: Path, fleetkey: Fleetkey) -> None:
        shown = fleetkey("fetches", "--status", "400").stdout
        assert "/x\\x1b[31mred.cfg" in shown
        assert "\x1b" not in shown

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--status", "99"], "'99' is not a status (100-599) or a class of them (1xx-5xx)"),
            (["--status", "4x"], "'4x' is not a status"),
            (["--status", "600"], "'600' is not a status"),
            (["--since", "May"], "'May' is neither an ISO date or date-time"),
            (["--until", "3 days"], "Invalid value for '--until': '3 days' is neither"),
            (["--since", "5w"], "'5w' is neither an ISO date"),
            (["--follow", "--wide"], "--wide and --follow do not go together"),
        ],
    )
    def test_bad_filters_are_usage_errors(
        self, records: Path, fleetkey: Fleetkey, args: list[str], message: str
    ) -> None:
        result = fleetkey("fetches", *args, code=2)
        assert message in result.stderr
        assert result.stdout == ""

    @pytest.mark.parametrize(
        ("args", "named"),
        [
            (["--mac", "0004f2000001", "--json"], "--mac, --json"),
            (["--status", "404"], "--status"),
            (["--limit", "0"], "--limit"),
            (["--since", "2h", "--follow"], "--since, --follow"),
            (["--csv"], "--csv"),
        ],
    )
    def test_list_options_before_replay_are_refused_and_nothing_is_written(
        self, records: Path, fleetkey: Fleetkey, tmp_path: Path, args: list[str], named: str
    ) -> None:
        unwritten = tmp_path / "fetches-unwritten.jsonl"
        at = datetime.now(UTC) - timedelta(minutes=1)
        replayed = FetchRecord("/replayed.cfg", "http", 200, 1, 1.0, at, mac="0004f2000002")
        unwritten.write_text(json.dumps(held.record_json(replayed)) + "\n")
        before = js(fleetkey, "fetches", "--limit", "0")
        result = fleetkey("fetches", *args, "replay", str(unwritten), code=2)
        assert (
            f"Error: {named}: options of the `fetches` list, not of `fetches replay`; give "
            "replay's own options after it (fleetkey fetches replay --help)"
        ) in result.stderr
        assert result.stdout == ""
        assert js(fleetkey, "fetches", "--limit", "0") == before
        done = js(fleetkey, "fetches", "replay", str(unwritten))
        assert done["written"] == 1  # type: ignore[index]
        assert "/replayed.cfg" in self.paths(fleetkey, "--mac", "0004f2000002")
        assert len(self.paths(fleetkey)) == 5  # the list still takes its options alone


def test_every_list_command_has_wide_csv_json_and_a_limit() -> None:
    lists = [path for path in runnable_commands(cli) if path[-1] == "list"]
    assert ("rollout", "list") in lists
    for path in lists:
        options = {opt for param in command_at(cli, path).params for opt in param.opts}
        assert {"--wide", "--csv", "--json"} <= options, path
    paged = [path for path in lists if path not in UNPAGED]
    for path in paged:
        options = {opt for param in command_at(cli, path).params for opt in param.opts}
        assert "--limit" in options, path


UNPAGED = {("keys", "list")}  # a handful of signing keys: never a page


class TestRolloutList:
    @pytest.fixture
    def planned(
        self, initialized: Path, fleetkey: Fleetkey, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Three rollouts of license 2 (each planned with the capacity the others left)."""
        monkeypatch.setenv("COLUMNS", "80")
        add_site_fleet(fleetkey, initialized, phones=3)
        for days in (20, 400):
            fleetkey("issue", "site", SITE_SERIAL, "--features", "corporate-directory",
                     "--expires", f"{TODAY + timedelta(days=days)}")  # fmt: skip
        for _ in range(3):
            fleetkey("rollout", "plan", "--license", "2", "--capacity", "100")

    def test_a_page_is_newest_first_and_says_how_to_see_the_rest(
        self, planned: None, fleetkey: Fleetkey
    ) -> None:
        shown = fleetkey("rollout", "list", "--limit", "2").stdout
        ids = [line.split()[1] for line in shown.splitlines() if line.startswith("│")]
        assert ids == ["3", "2"]
        assert shown.splitlines()[-1] == (
            "… 1 more older rollouts; next page: `--before 2`, all: `--limit 0`"
        )
        rest = fleetkey("rollout", "list", "--before", "2").stdout
        assert [line.split()[1] for line in rest.splitlines() if line.startswith("│")] == ["1"]
        table = list(csv.reader(io.StringIO(fleetkey("rollout", "list", "--csv").stdout)))
        assert table[0] == [
            "id", "license", "state", "phones", "confirmed", "failed", "deadline"
        ]  # fmt: skip
        assert [row[0] for row in table[1:]] == ["1", "2", "3"]
        assert [r["id"] for r in js(fleetkey, "rollout", "list")] == [1, 2, 3]  # type: ignore[union-attr,index]
        two = fleetkey("rollout", "list", "--json", "--limit", "2")
        assert [r["id"] for r in json.loads(two.stdout)] == [2, 3]
        assert (
            two.stderr == "note: 1 more older rollouts; next page: `--before 2`, all: `--limit 0`\n"
        )

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--limit", "-1"], "-1 is not in the range x>=0"),
            (["--before", "x"], "'x' is not a valid integer"),
            (["--csv", "--json"], "--json and --csv do not go together"),
        ],
    )
    def test_bad_options_are_usage_errors(
        self, planned: None, fleetkey: Fleetkey, args: list[str], message: str
    ) -> None:
        result = fleetkey("rollout", "list", *args, code=2)
        assert message in result.stderr
        assert result.stdout == ""


TERMS = ["--features", "vqmon", "--expires", "never"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["issue", "phone", "0004f2000001", "--mac", "0004f2000001", *TERMS], "MAC or --mac, not"),
        (["issue", "site", *TERMS], "Missing argument 'SERIAL'"),
        (["rollout", "plan", "1", "--license", "1"], "give LICENSE_ID or --license, not both"),
        (["rollout", "plan", "--capacity", "9"], "Missing argument 'LICENSE_ID'"),
    ],
)
def test_a_subject_given_twice_or_not_at_all_is_a_usage_error(
    fleet: Path, fleetkey: Fleetkey, args: list[str], message: str
) -> None:
    result = fleetkey(*args, code=2)
    assert "Error: " in result.stderr
    assert message in result.stderr
    assert js(fleetkey, "licenses", "list") == []


def test_the_subject_is_an_argument_as_everywhere_and_the_option_still_works(
    fleet: Path, fleetkey: Fleetkey
) -> None:
    by_argument = js(fleetkey, "issue", "phone", "0004f2000001", "--features", "vqmon",
                     "--expires", "never")  # fmt: skip
    by_option = js(fleetkey, "issue", "site", "--serial", SITE_SERIAL, "--features", "vqmon",
                   "--expires", str(TODAY + timedelta(days=30)))  # fmt: skip
    assert (by_argument["serial"], by_option["serial"]) == ("0004f2000001", SITE_SERIAL)  # type: ignore[index]
    fleetkey("issue", "site", SITE_SERIAL, "--features", "vqmon", "--expires", "never")
    planned = js(fleetkey, "rollout", "plan", "3", "--capacity", "50", "--dry-run")
    assert planned["phones"] == 120  # type: ignore[index]


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's path; the root group loads its commands lazily, so ask it for each."""
    found: list[tuple[str, ...]] = []
    context = click.Context(group)
    for name in sorted(group.list_commands(context)):
        command = group.get_command(context, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            if command.invoke_without_command:
                found.append((*prefix, name))
            found.extend(walk(command, (*prefix, name)))
        else:
            found.append((*prefix, name))
    return found


NO_JSON = {
    ("serve",): "runs until stopped; prints its listeners as lines",
}


@pytest.mark.parametrize("path", walk(cli), ids=" ".join)
def test_every_command_has_json(path: tuple[str, ...]) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None, name
        command = found
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert ("--json" in options) is (path not in NO_JSON)


def test_commands_that_change_something_print_json(
    fleet: Path, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    assert js(fleetkey, "db", "upgrade")["before"] == js(fleetkey, "db", "upgrade")["after"]  # type: ignore[index]
    issued = js(fleetkey, "issue", "site", "--serial", SITE_SERIAL, "--features", "vqmon",
                "--expires", "never", "--out", str(tmp_path / "x.cfg"))  # fmt: skip
    posted = js(fleetkey, "licenses", "post", str(issued["license_id"]))  # type: ignore[index]
    license_ = posted["license"]  # type: ignore[index]
    assert (license_["state"], license_["terms"]) == ("posted", {"vqmon": "never"})
    assert [f.endswith("000000000000-license.cfg") for f in posted["files"]] == [True]  # type: ignore[index]
    revoked = js(fleetkey, "licenses", "revoke", str(issued["license_id"]))  # type: ignore[index]
    assert revoked["license"]["state"] == "revoked"  # type: ignore[index]
    assert revoked["removed"] == posted["files"]  # type: ignore[index]
    created = js(fleetkey, "keys", "create", "--name", "second")
    assert js(fleetkey, "keys", "activate", "second")["active"] is True  # type: ignore[index]
    exported = js(fleetkey, "keys", "export-public", "second")
    assert exported["fingerprint"] == created["fingerprint"]  # type: ignore[index]
    assert exported["pem"].startswith("-----BEGIN PUBLIC KEY-----")  # type: ignore[index]
    assert js(fleetkey, "alerts", "webhook-key")["pem"].startswith("-----BEGIN PUBLIC KEY")  # type: ignore[index]


def phone_queries(fleetkey: Fleetkey, *args: str) -> tuple[str, list[tuple[str, object]]]:
    """What ``fleetkey *args`` printed, and the statements it sent that read the phones."""
    sent: list[tuple[str, object]] = []

    def capture(*event: object) -> None:  # conn, cursor, statement, parameters, context, many
        statement, parameters = event[2], event[3]
        assert isinstance(statement, str)
        if "FROM phones" in statement:
            sent.append((statement, parameters))

    sqlalchemy_event.listen(Engine, "before_cursor_execute", capture)
    try:
        shown = fleetkey(*args).stdout
    finally:
        sqlalchemy_event.remove(Engine, "before_cursor_execute", capture)
    return shown, sent


@pytest.mark.slow
def test_a_page_of_100000_phones_is_read_through_an_index_and_never_sorted(
    initialized: Path, fleetkey: Fleetkey
) -> None:
    """How fast is bench/lists.py's to say (docs/cli.md): a test on a shared machine asserts
    what makes a page cheap whatever the load, the query plan of every statement it sends."""
    database = initialized / "fleetkey.db"
    store = Store(f"sqlite:///{database}")
    with store.transaction() as session:
        for serial in ("100000000001", "100000000002"):
            window = Window.parse("22:00-05:00")
            inventory.add_site(session, FixedClock(), "t", Site(serial, serial, "UTC", window))
    rows = [
        {"mac": f"0004f2{i:06x}", "site_serial": f"10000000000{1 + i % 2}", "model": "VVX_500",
         "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
        for i in range(100_000)
    ]  # fmt: skip
    with store.engine.begin() as connection:
        connection.execute(insert(PhoneRow), rows)
    store.close()
    for index, args in (
        ("sqlite_autoindex_phones_1", ["phones", "list"]),  # the primary key, mac
        (
            "ix_phones_site_serial_mac",
            ["phones", "list", "--site", "100000000002", "--after", "0004f2011170"],
        ),
    ):
        shown, sent = phone_queries(fleetkey, *args)
        assert "more phones; next page: `--after " in shown.splitlines()[-1]
        assert sent, args
        with sqlite3.connect(database) as connection:
            for statement, parameters in sent:
                plan = [
                    row[3]
                    for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)  # type: ignore[arg-type]
                ]
                reads = [step for step in plan if "phones" in step]
                assert reads, (statement, plan)
                assert all(f"INDEX {index}" in step for step in reads), (args, plan)
                assert not [step for step in plan if "TEMP B-TREE" in step], (args, plan)
