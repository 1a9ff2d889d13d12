"""Every command that prints a table, run at 80 columns on a fleet of three sites: every MAC and
serial whole, nothing cut with an ellipsis, no Python repr anywhere in what people read."""

from __future__ import annotations

import functools
import json
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from fleetkey.cli.main import cli
from fleetkey.cli.tables import Column, Kind, Output, left_out_lines, print_rows
from fleetkey.store import fetches
from fleetkey.store.records import FetchRecord
from fleetkey.store.store import Store

from tests.helpers import PASSPHRASE, VENDOR_FILE, Fleetkey, free_port, runnable_commands

SITES = {"100000000001": "Berlin", "100000000002": "New York", "100000000003": "Tokyo"}
TZ = {"100000000001": "Europe/Berlin", "100000000002": "America/New_York", "100000000003": "UTC"}
PHONES = {f"0004f2{site[-1]}{n:05d}": site for site in SITES for n in range(1, 4)}
MACS = list(PHONES)
AGENT = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{mac}) Type/Application"
IDENTIFIER = re.compile(r"(?<![0-9a-f])(?:0004f2|10000000)[0-9a-f]*(?![0-9a-f])")
REPR = re.compile(r"\{'|\['|'\]|\bTrue\b|\bFalse\b|\bNone\b|datetime\.|object at 0x")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleetkey, Path]]:
    """Three sites (three phones each, long firmware and contacts), a site key each, two phone
    keys, the vendor's expired site file, fetch records, alerts, a rollout; COLUMNS=80."""
    root = tmp_path_factory.mktemp("narrow")
    data = root / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEETKEY_DATA", str(data))
        patch.setenv("FLEETKEY_KEY_PASSPHRASE", PASSPHRASE)
        patch.setenv("COLUMNS", "80")
        patch.delenv("FLEETKEY_DB", raising=False)
        run = Fleetkey()
        run("init")
        today = datetime.now(UTC).date()
        now = datetime.now(UTC)
        window = f"{now - timedelta(hours=1):%H}:00-{now + timedelta(hours=6):%H}:00"
        for serial, name in SITES.items():
            run(
                "sites",
                "add",
                serial,
                "--name",
                f"{name} headquarters and warehouse",
                "--tz",
                TZ[serial],
                "--window",
                window,
                "--contact",
                f"facilities desk of {name}, ask for the engineer",
            )
        csv = root / "phones.csv"
        csv.write_text(
            "mac,site,model,firmware,contact\n"
            + "".join(
                f"{mac},{site},VVX_500,5.9.7.4477-rc2-build-20260101,"
                f"sip:{mac}@pbx-{site}.example.com:5061;transport=tls\n"
                for mac, site in PHONES.items()
            )
        )
        run("phones", "import", str(csv))
        for days, serial in zip((400, 20, 2), SITES, strict=True):
            run(
                "issue",
                "site",
                "--serial",
                serial,
                "--features",
                "corporate-directory,conference-management,nway-conference",
                "--feature",
                f"vqmon={today + timedelta(days=days // 2)}",
                "--expires",
                str(today + timedelta(days=days)),
            )
        run(
            "issue",
            "site",
            "--serial",
            "100000000001",
            "--features",
            "corporate-directory",
            "--expires",
            str(today + timedelta(days=500)),
            "--force",  # it drops features: on purpose, for a successor that takes something
        )
        for mac in MACS[:2]:
            run(
                "issue",
                "phone",
                "--mac",
                mac,
                "--features",
                "vqmon,call-recording",
                "--expires",
                "never",
            )
        vendor = root / "vendor"
        vendor.mkdir()
        shutil.copy(VENDOR_FILE, vendor / "000000000000-license.cfg")
        run("licenses", "import", str(vendor))
        run(
            "issue",
            "site",
            "100000000002",
            "--features",
            "vqmon",
            "--expires",
            str(today + timedelta(days=30)),
            "--out",
            str(root / "shorter.cfg"),
        )  # license 8
        (root / "changed.csv").write_text(
            "mac,site,model,contact,firmware\n"
            + "".join(
                f"{mac},{site},VVX_500,sip:{mac}@voice-gateway-{site}.branch.example.com:5061;transport=tls,"
                "5.9.8.1234-rc1-build-20261201\n"
                for mac, site in PHONES.items()
            )
        )
        store = Store(f"sqlite:///{data / 'fleetkey.db'}")
        records = [
            FetchRecord(
                f"/{mac}-license.cfg",
                "http",
                200,
                612,
                1.25,
                now - timedelta(minutes=n),
                mac=mac,
                digest="ab" * 32,
                remote_addr=f"10.20.{n}.{n + 100}",
                user_agent=AGENT.format(mac=mac),
                identified_by="agent",
            )
            for n, mac in enumerate(MACS)
        ]
        records.append(
            FetchRecord(
                "/100000000002/000000000000-license.cfg",
                "tftp",
                404,
                0,
                0.5,
                now,
                remote_addr="10.20.99.1",
                identified_by="ambiguous",
            )
        )
        fetches.insert_records(store.engine, records)
        store.close()
        run("alerts")
        run(
            "rollout",
            "plan",
            "--license",
            "4",
            "--capacity",
            "50",
            "--boot-requests",
            "5",
            "--boot-seconds",
            "30",
        )
        yield run, root


# every command printing a table, with what it needs; the others say why they are not here
TABLES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("sites", "list"): (),
    ("phones", "list"): (),
    ("phones", "show"): (MACS[0],),
    ("licenses", "list"): (),
    ("licenses", "show"): ("1",),
    ("fetches",): (),
    ("fetches", "days"): (),
    ("audit", "list"): (),
    ("keys", "list"): (),
    ("features",): (),
    ("alerts",): (),
    ("inspect",): ("{data}/provisioning/100000000001/000000000000-license.cfg", "{vendor}"),
    ("phones", "import"): ("{root}/changed.csv", "--dry-run"),
    ("licenses", "post"): ("8", "--dry-run"),
    ("licenses", "import"): ("{root}/vendor",),
    ("issue", "site"): ("100000000003", "--features", "vqmon", "--expires", "never", "--force"),
    ("issue", "phone"): ("--mac", MACS[5], "--features", "vqmon", "--expires", "never"),
    ("rollout", "plan"): (
        "--license",
        "4",
        "--capacity",
        "50",
        "--boot-requests",
        "5",
        "--boot-seconds",
        "30",
        "--dry-run",
    ),
    ("rollout", "list"): (),
    ("rollout", "status"): ("1",),
    ("simulate",): ("{scenarios}/early.toml", "--compare", "{scenarios}/lapse.toml"),
    ("emulate",): (
        "--server",
        "http://127.0.0.1:{answering}",  # phones that reach nothing fail: exit 1, no table
        "--phones",
        "2",
        "--duration",
        "1",
        "--sip-port",
        "0",
    ),
}
NO_TABLE = {
    ("alerts", "ack"): "one line",
    ("licenses", "rollback"): "its table is licenses post's, run here with --dry-run",
    ("licenses", "trust"): "one line",
    ("phones", "remove"): "one line",
    ("rollout", "retry"): "one line",
    ("sites", "remove"): "one line",
    ("sites", "update"): "one line",
    ("alerts", "webhook-key"): "a PEM",
    ("audit", "anchor"): "one log line",
    ("audit", "verify"): "one line",
    ("capacity", "measure"): "its table holds rates, no identifier (tests/integration/emulate)",
    ("capacity", "show"): "one line",
    ("db", "current"): "one line",
    ("db", "upgrade"): "one line",
    ("fetches", "replay"): "one line",
    ("fetches", "prune"): "one line",
    ("fetches", "export"): "CSV",
    ("db", "check"): "one line",
    ("init",): "lines",
    ("issue", "batch"): "one line",
    ("keys", "activate"): "one line",
    ("keys", "create"): "one line",
    ("keys", "export-public"): "a PEM",
    ("keys", "import-public"): "one line",
    ("keys", "rewrap"): "lines",
    ("licenses", "revoke"): "one line",
    ("rollout", "cancel"): "one line",
    ("rollout", "pause"): "one line",
    ("rollout", "resume"): "one line",
    ("rollout", "run"): "its table is rollout status's (run here); it needs phones on SIP",
    ("serve",): "lines, until stopped",
    ("sites", "add"): "one line",
    ("token",): "one line",
    ("verify",): "one line",
}


def test_every_command_is_run_at_80_columns_or_prints_no_table() -> None:
    commands = set(runnable_commands(cli))
    assert commands == set(TABLES) | set(NO_TABLE), (
        "a new command: add it to TABLES (with its arguments) or to NO_TABLE (with why)"
    )


def _args(args: tuple[str, ...], root: Path) -> list[str]:
    values = {
        "root": root,
        "data": root / "data",
        "vendor": VENDOR_FILE,
        "closed": free_port(),
        "scenarios": Path(__file__).resolve().parents[2] / "data" / "simulate",
    }
    if any("{answering}" in arg for arg in args):
        values["answering"] = _answering_port()
    return [arg.format(**values) for arg in args]


class _Answering(BaseHTTPRequestHandler):
    """404 to every GET, 201 to every PUT: a provisioning server with an empty tree."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(404)

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer(201)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # the base's name
        pass


@functools.cache
def _answering_port() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()  # for the session
    return int(server.server_address[1])


@pytest.mark.parametrize("path", sorted(TABLES), ids=" ".join)
def test_every_mac_and_serial_is_whole_at_80_columns(
    fleet: tuple[Fleetkey, Path], path: tuple[str, ...]
) -> None:
    run, root = fleet
    shown = run(*path, *_args(TABLES[path], root)).stdout
    table_lines = [line for line in shown.splitlines() if line[:1] in "┃│┏┡└"]
    assert table_lines, f"fleetkey {' '.join(path)} printed no table:\n{shown}"
    assert all(len(line) <= 80 for line in table_lines), shown
    assert not [line for line in table_lines if "…" in line], shown
    cut = [found for found in IDENTIFIER.findall(shown) if len(found) != 12]
    assert cut == [], f"identifiers cut or folded: {cut}\n{shown}"
    assert REPR.search(shown) is None, shown


@pytest.mark.parametrize(
    "path",  # not those that change something, nor rollout plan (a table by site and hour)
    [
        p
        for p in sorted(TABLES)
        if p[0] not in {"issue", "emulate", "inspect", "rollout"} and p != ("phones", "import")
    ]
    # rollout list's JSON names the sites its table counts by, phones import's every column
    + [("rollout", "status")],
    ids=" ".join,
)
def test_every_identifier_of_the_json_is_in_the_table(
    fleet: tuple[Fleetkey, Path], path: tuple[str, ...]
) -> None:
    """What a table shows at 80 columns names every MAC and serial the JSON does."""
    run, root = fleet
    args = _args(TABLES[path], root)
    document = json.loads(run(*path, *args, "--json").stdout)
    if path == ("alerts",):  # the table's subjects; messages wrap as text
        document = [alert["subject"] for alert in document["alerts"]]
    shown = run(*path, *args).stdout
    assert set(IDENTIFIER.findall(json.dumps(document))) <= set(IDENTIFIER.findall(shown)), shown


def test_lines_under_a_table_wrap_at_the_terminal(fleet: tuple[Fleetkey, Path]) -> None:
    run, _ = fleet
    shown = run("fetches").stdout
    assert (
        "(method, proto, bytes, digest, ms, address, user agent, identified by left out\n"
        "at 80 columns: --wide shows every column)\n" in shown
    )
    assert all(len(line) <= 80 for line in shown.splitlines())
    licenses = run("licenses", "list").stdout  # its note was 83 characters: `column)` alone
    note = licenses[licenses.rindex("┘") + 2 :].splitlines()
    assert note[-1] == "at 80 columns: --wide shows every column)"
    assert all(len(line) <= 80 and " " in line for line in note), note


@pytest.mark.parametrize("width", [50, 60, 80, 120])
def test_the_left_out_note_fits_the_width_and_leaves_no_word_alone(width: int) -> None:
    hidden = ["method", "proto", "bytes", "digest", "ms", "address", "user agent", "identified by"]
    for count in range(1, len(hidden) + 1):
        lines = left_out_lines(hidden[:count], width)
        assert " ".join(lines) == (
            f"({', '.join(hidden[:count])} left out at {width} columns: --wide shows every column)"
        )
        assert all(len(line) <= width and " " in line for line in lines), lines


def test_commands_that_print_lines_print_no_python_repr(
    initialized: Path, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    csv = tmp_path / "phones.csv"
    csv.write_text(f"mac,site,model\n{MACS[0]},100000000001,VVX_500\n")
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    shutil.copy(VENDOR_FILE, vendor / "000000000000-license.cfg")
    runs = [
        ("db", "current"),
        ("db", "upgrade"),
        ("sites", "add", "100000000001", "--name", "HQ", "--tz", "UTC", "--window", "01:00-02:00"),
        ("phones", "import", str(csv)),
        ("issue", "site", "100000000001", "--features", "vqmon", "--expires", "never",
         "--out", str(tmp_path / "site.cfg")),
        ("licenses", "post", "1"),
        ("licenses", "import", str(vendor), "--post", "--accept-unverified", "the old server's",
         "--force"),
        ("licenses", "revoke", "1"),
        ("keys", "create", "--name", "second"),
        ("keys", "activate", "second"),
        ("keys", "rewrap"),
        ("verify", str(tmp_path / "site.cfg")),
        ("audit", "verify"),
        ("audit", "anchor"),
        ("capacity", "show"),
        ("rollout", "plan", "2", "--capacity", "10", "--dry-run"),
        ("fetches", "replay", str(tmp_path / "none.jsonl")),
    ]  # fmt: skip
    (tmp_path / "none.jsonl").write_text("")
    for args in runs:
        result = fleetkey(*args, code=1 if args[0] == "rollout" else 0)
        shown = result.stdout + result.stderr
        assert REPR.search(shown) is None, f"fleetkey {' '.join(args)}:\n{shown}"


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("/100000000003/000000000000-license.cfg", ["/100000000003/", "000000000000-license.cfg"]),
        ("sip:0004f2300003@pbx.example.com:5061", ["sip:0004f2300003@", "pbx.example.com:5061"]),
        ("/a/b/c.cfg", ["/a/b/c.cfg"]),  # fits: left whole
    ],
)
def test_a_long_path_or_contact_folds_between_its_parts_not_inside_a_name(
    text: str, lines: list[str]
) -> None:
    console = Console(width=40, force_terminal=False, color_system=None)
    with console.capture() as captured:
        print_rows(
            console,
            (Column("mac", Kind.ID), Column("path", floor=24)),
            [("0004f2000001", text)],
            Output.TABLE,
        )
    cells = [
        line.split("│")[2].strip() for line in captured.get().splitlines() if line.count("│") == 3
    ]
    assert [cell for cell in cells if cell] == lines


def test_audit_list_keeps_every_subject_that_is_an_id_whole_at_80_columns(
    fleet: tuple[Fleetkey, Path],
) -> None:
    """A key's name (``ed25519-…``), ``rollout:1``, an alert's key: whole on one line beside a
    long path (``init``'s data directory), which folds between its parts."""
    run, _ = fleet
    events = json.loads(run("audit", "list", "--json", "--limit", "50").stdout)
    ids = {e["subject"] for e in events if " " not in e["subject"] and "/" not in e["subject"]}
    assert any(subject.startswith("ed25519-") for subject in ids), ids
    shown = run("audit", "list").stdout
    cells = {line.split("│")[4].strip() for line in shown.splitlines() if line.count("│") == 6}
    assert ids <= cells, shown
