"""``fleetkey simulate``: the summary, JSON with the hourly series, plots, HTML, comparison,
and refusals that leave nothing behind."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleetkey.clock import FixedClock
from fleetkey.store import capacity, fetches
from fleetkey.store.records import FetchRecord
from fleetkey.store.store import Store

from tests.helpers import Fleetkey

DATA = Path(__file__).resolve().parents[2] / "data" / "simulate"
LAPSE, EARLY = str(DATA / "lapse.toml"), str(DATA / "early.toml")
LAPSE_DAY = (datetime.now(UTC).date() + timedelta(days=20)).isoformat()
REPR = re.compile(r"np\.|array\(|datetime\.|<[a-zA-Z_.]+ object")


def test_the_summary_prints_as_tables(data_dir: Path, fleetkey: Fleetkey) -> None:
    shown = fleetkey("simulate", LAPSE).stdout
    assert "600 / 3" in shown  # phones / sites
    assert "corporate-directory" in shown
    assert "call-recording" in shown
    assert re.search(r"license-expired\s*│\s*600", shown)
    assert REPR.search(shown) is None


def test_json_holds_the_summary_and_a_value_per_hour(data_dir: Path, fleetkey: Fleetkey) -> None:
    document = json.loads(fleetkey("simulate", LAPSE, "--json").stdout)
    summary, hourly = document["summary"], document["hourly"]
    assert summary["phones"] == 600
    assert summary["reboots"] == {"license-expired": 600, "config-changed": 0, "check-sync": 0}
    assert summary["booted_expired_at_end"] == 600
    assert len(hourly["boots"]) == 20 * 24
    assert sum(hourly["boots"]) == 600
    assert hourly["phones_with"]["corporate-directory"][0] == 600
    assert hourly["phones_with"]["corporate-directory"][-1] == 0
    assert hourly["phones_without"]["call-recording"][-1] == 600


def test_days_shortens_the_period(data_dir: Path, fleetkey: Fleetkey) -> None:
    document = json.loads(fleetkey("simulate", LAPSE, "--days", "5", "--json").stdout)
    assert document["summary"]["days"] == 5
    assert document["summary"]["reboots"]["license-expired"] == 0  # the lapse is on day 10


def test_the_largest_seed_runs(data_dir: Path, fleetkey: Fleetkey) -> None:
    # seeds of 65536 and up once overflowed the draws' 64 bits (OverflowError)
    for seed in ("65536", str(2**20)):
        document = json.loads(
            fleetkey("simulate", LAPSE, "--days", "10", "--seed", seed, "--json").stdout
        )
        # ten days from 1 January UTC: only Tokyo's 200 phones reach the lapse's 02:00
        assert document["summary"]["reboots"]["license-expired"] == 200


def test_a_storm_still_queued_at_the_end_shows_the_longest_boot_as_a_bound(
    tmp_path: Path, data_dir: Path, fleetkey: Fleetkey
) -> None:
    # 300 phones storm at 02:00 on day 6 of 6, 12 requests each at 0.021 a second
    scenario = tmp_path / "slow.toml"
    scenario.write_text(
        "[simulation]\nstart = 2027-01-01T00:00:00Z\ndays = 6\n"
        "[server]\ncapacity = 0.021\n"
        '[[sites]]\nserial = "100000000001"\nphones = 300\ntimezones = ["UTC"]\n'
        '[[licenses]]\nname = "y"\nfeatures = ["corporate-directory"]\nexpires = 2027-01-05\n'
        '[[events]]\nat = 2027-01-01T00:00:00Z\npost = "y"\n'
    )
    summary = json.loads(fleetkey("simulate", str(scenario), "--json").stdout)["summary"]
    assert summary["longest_boot_s"] == pytest.approx(22 * 3600)
    assert summary["longest_boot_at_least"] is True
    assert summary["phones_waiting_at_end"] == 162
    shown = fleetkey("simulate", str(scenario)).stdout
    assert re.search(r"longest boot\s*│\s*≥ 79,200 s", shown)
    assert re.search(r"still waiting at end\s*│\s*162", shown)


def test_compare_runs_both_side_by_side(data_dir: Path, fleetkey: Fleetkey) -> None:
    document = json.loads(fleetkey("simulate", LAPSE, "--compare", EARLY, "--json").stdout)
    lapse, early = (entry["summary"] for entry in document["scenarios"])
    assert lapse["features"][0]["phone_hours_lost"] > 0
    assert early["features"][0]["phone_hours_lost"] == 0
    assert early["rollouts"][0]["reached"] == 600
    shown = fleetkey("simulate", LAPSE, "--compare", EARLY).stdout
    header = next(line for line in shown.splitlines() if "lapse" in line and "early" in line)
    assert header.index("lapse") < header.index("early")


def test_plot_and_html_are_written(tmp_path: Path, data_dir: Path, fleetkey: Fleetkey) -> None:
    png, page = tmp_path / "load.png", tmp_path / "report.html"
    fleetkey("simulate", LAPSE, "--compare", EARLY, "--plot", str(png), "--html", str(page))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text(encoding="utf-8")
    assert "<svg" in text
    assert "lapse" in text
    assert "early" in text
    # nothing to fetch: no scripts, stylesheets, images or fonts; url(#…) names a clip path
    assert not re.search(r"<script|<link|<img|src=|@import|url\((?!#)", text)


class TestRefusals:
    def test_a_missing_file_is_an_error(
        self, tmp_path: Path, data_dir: Path, fleetkey: Fleetkey
    ) -> None:
        result = fleetkey("simulate", str(tmp_path / "nope.toml"), code=1)
        assert result.stderr.startswith("error: ")
        assert "nope.toml" in result.stderr

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (b"[simulation", "not TOML"),
            (b"\xff\xfe[simulation]", "not UTF-8"),
            (b"[simulation]\nstart = 2027-01-01T00:00:00Z\n", "at least one site"),
            (
                b"[simulation]\nstart = 2027-01-01T00:00:00Z\ndays = 2\n"
                b'[[sites]]\nserial = "100000000001"\nphones = 1\n'
                b"[[events]]\nat = 2027-01-03T00:00:00Z\nconfig_change = true\n",
                "[[events]] 1: at 2027-01-03 00:00 UTC is not before the end of the period",
            ),
        ],
        ids=["not toml", "not utf-8", "no sites", "event after the period"],
    )
    def test_a_bad_scenario_is_an_error_and_writes_nothing(
        self, tmp_path: Path, data_dir: Path, fleetkey: Fleetkey, content: bytes, message: str
    ) -> None:
        scenario = tmp_path / "bad.toml"
        scenario.write_bytes(content)
        png, page = tmp_path / "p.png", tmp_path / "r.html"
        result = fleetkey(
            "simulate", str(scenario), "--plot", str(png), "--html", str(page), code=1
        )
        assert result.stderr.startswith("error: ")
        assert message in result.stderr
        assert not png.exists()
        assert not page.exists()
        assert not data_dir.exists()  # simulate keeps nothing

    def test_days_that_end_before_an_event_are_refused_with_a_hint(
        self, tmp_path: Path, data_dir: Path, fleetkey: Fleetkey
    ) -> None:
        png = tmp_path / "p.png"
        result = fleetkey("simulate", EARLY, "--days", "1", "--plot", str(png), code=1)
        assert "event rollout at 2027-01-02 00:00 UTC" in result.stderr
        assert "it would never happen" in result.stderr
        assert "hint: move the event into the period" in result.stderr
        assert not png.exists()

    @pytest.mark.parametrize(
        "args",
        [
            ("--days", "0"),
            ("--days", "x"),
            ("--seed", "-1"),
            ("--seed", str(2**20 + 1)),
            ("--color",),
            (),
        ],
        ids=[
            "days 0",
            "days text",
            "negative seed",
            "seed too large",
            "unknown option",
            "no scenario",
        ],
    )
    def test_usage_errors_exit_2(
        self, data_dir: Path, fleetkey: Fleetkey, args: tuple[str, ...]
    ) -> None:
        scenario = () if args == () else (LAPSE,)
        fleetkey("simulate", *scenario, *args, code=2)


class TestFromStore:
    """``--from-store``: the fleet in the store, on SQLite and PostgreSQL, and what-ifs on it."""

    @pytest.fixture
    def run(self, initialized: Path, fleetkey: Fleetkey, store_url: str, tmp_path: Path) -> Any:
        def run(*args: str, code: int = 0) -> Any:
            return fleetkey("--db", store_url, *args, code=code)

        run("db", "upgrade")
        run("sites", "add", "100000000001", "--name", "Berlin", "--tz", "Europe/Berlin",
            "--window", "01:00-05:00")  # fmt: skip
        run("sites", "add", "100000000002", "--name", "Tokyo", "--tz", "Asia/Tokyo",
            "--window", "01:00-05:00")  # fmt: skip
        rows = [f"0004f2{s}{n:05d},10000000000{s},VVX_500" for s in "12" for n in range(40)]
        csv = tmp_path / "phones.csv"
        csv.write_text("mac,site,model\n" + "\n".join(rows) + "\n")
        run("phones", "import", str(csv))
        for serial in ("100000000001", "100000000002"):
            run("issue", "site", "--serial", serial, "--features", "corporate-directory",
                "--expires", LAPSE_DAY)  # fmt: skip
        return run

    def test_the_store_fleet_lapses_as_posted(self, run: Any) -> None:
        document = json.loads(run("simulate", "--from-store", "--days", "60", "--json").stdout)
        summary = document["summary"]
        assert (summary["phones"], summary["sites"]) == (80, 2)
        assert summary["reboots"]["license-expired"] == 80
        assert summary["booted_expired_at_end"] == 80
        assert any("80 phones at 2 site(s)" in note for note in document["notes"])

    def test_a_what_if_posts_a_successor_before_the_lapse(self, run: Any, tmp_path: Path) -> None:
        whatif = tmp_path / "whatif.toml"
        whatif.write_text(
            '[[licenses]]\nname = "successor"\nfeatures = ["corporate-directory"]\n'
            "expires = 2099-12-31\n"
            f'[[events]]\nat = {LAPSE_DAY}T00:00:00Z\npost = "successor"\n'
            "[simulation]\nname = 'post early'\n"
        )
        document = json.loads(
            run("simulate", "--from-store", str(whatif), "--days", "60", "--json").stdout
        )
        summary = document["summary"]
        assert summary["name"] == "post early"
        assert summary["reboots"]["license-expired"] == 80  # they still lapse, and take it
        assert summary["booted_expired_at_end"] == 0
        assert summary["features"][0]["phones_without_at_end"] == 0

    def test_a_posted_successor_no_phone_fetched_is_not_on_the_phones(
        self, run: Any, store_url: str
    ) -> None:
        """The per-phone state says what the phones hold (as the alerts read it): the lapsing
        key they were served. A successor posted since reaches them only in the storm."""
        keys = json.loads(run("licenses", "list", "--json").stdout)
        served = {k["serial"]: k["digest"] for k in keys}
        at = datetime.now(UTC) - timedelta(days=1)
        records = [
            FetchRecord(
                path=f"/{serial}/000000000000-license.cfg",
                protocol="http",
                status=200,
                bytes=600,
                duration_ms=1.0,
                at=at,
                mac=f"0004f2{serial[-1]}{n:05d}",
                digest=digest,
            )
            for serial, digest in served.items()
            for n in range(40)
        ]
        store = Store(store_url)
        try:
            fetches.insert_records(store.engine, records)
        finally:
            store.close()
        run("issue", "site", "--serial", "100000000001", "--features", "corporate-directory",
            "--expires", "2099-12-31")  # fmt: skip
        document = json.loads(run("simulate", "--from-store", "--days", "60", "--json").stdout)
        summary = document["summary"]
        # both sites storm when the key they hold lapses; Berlin's phones take the successor
        assert summary["reboots"]["license-expired"] == 80
        assert summary["booted_expired_at_end"] == 40
        assert summary["features"][0]["phones_affected"] == 80
        assert any(
            "80 phone(s) hold the site license they were last served; 0 with none" in note
            for note in document["notes"]
        )

    def test_phones_with_no_fetch_on_record_are_taken_to_hold_the_posted_key(
        self, run: Any
    ) -> None:
        document = json.loads(run("simulate", "--from-store", "--days", "60", "--json").stdout)
        assert any(
            "0 phone(s) hold" in n and "80 with none on record" in n for n in document["notes"]
        )

    def test_the_server_answers_at_the_capacity_measured_over_what_the_phones_boot_over(
        self, run: Any, store_url: str
    ) -> None:
        """Not the newest measurement of any protocol and storm (a firmware change over HTTP,
        newest here, was once taken): the license-lapse one over FTP, as the phones boot."""
        now = datetime.now(UTC)
        records = [
            FetchRecord("/000000000000.cfg", "ftp", 200, 1, 1.0, now, mac=f"0004f2{s}{n:05d}")
            for s in "12"
            for n in range(40)
        ]
        store = Store(store_url)
        try:
            fetches.insert_records(store.engine, records)
            with store.transaction() as session:
                clock = FixedClock(now)
                capacity.record(session, clock, "ftp://x", 300.0, {"storm": "license-lapse"})
                capacity.record(session, clock, "http://x", 900.0, {"storm": "license-lapse"})
                capacity.record(session, clock, "http://x", 1.0, {"storm": "firmware-change"})
        finally:
            store.close()
        document = json.loads(run("simulate", "--from-store", "--days", "60", "--json").stdout)
        assert (
            f"capacity: 300 req/s (measured {now:%Y-%m-%d} over ftp, as 80 of the 80 phones boot)"
            in document["notes"]
        )

    def test_a_what_if_may_not_bring_sites(self, run: Any, tmp_path: Path) -> None:
        whatif = tmp_path / "sites.toml"
        whatif.write_text('[[sites]]\nserial = "100000000009"\nphones = 1\n')
        result = run("simulate", "--from-store", str(whatif), code=1)
        assert "unknown key 'sites'" in result.stderr

    def test_a_what_if_names_only_the_stores_sites(self, run: Any, tmp_path: Path) -> None:
        whatif = tmp_path / "site.toml"
        whatif.write_text(
            f"[[events]]\nat = {LAPSE_DAY}T00:00:00Z\nconfig_change = true\n"
            'sites = ["100000000009"]\n'
        )
        result = run("simulate", "--from-store", str(whatif), code=1)
        assert "site 100000000009 is not one of the scenario's sites" in result.stderr


def test_an_empty_store_is_an_error_with_a_hint(initialized: Path, fleetkey: Fleetkey) -> None:
    result = fleetkey("simulate", "--from-store", code=1)
    assert "error: the store has no site with phones to simulate" in result.stderr
    assert "hint: add sites and import phones" in result.stderr
