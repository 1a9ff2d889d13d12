"""`fleetkey emulate` refuses bad options with one clear line, before any phone starts."""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest
from rich.console import Console

from fleetkey.authority.datadir import DataDir
from fleetkey.cli.context import Env
from fleetkey.cli.emulate import _show
from fleetkey.emulate.runner import ServerUrl, split_master
from fleetkey.errors import InputError

from tests.helpers import Fleetkey


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--server", "sftp://127.0.0.1:22"),
            "is not http://HOST:PORT[/prefix], https://HOST:PORT[/prefix], "
            "tftp://HOST:PORT[/prefix] or ftp://",
        ),
        (("--server", "http://"), "is not http://HOST:PORT"),
        (("--clock-start", "yesterday"), "--clock-start 'yesterday' is not an ISO date-time"),
        (("--timezone", "Mars/Olympus"), "time zone 'Mars/Olympus' is not an IANA zone"),
        (("--license-time", "2am"), "--license-time '2am' is not HH:MM"),
        (("--speed", "0"), "virtual clock speed 0.0 must be above 0 (--speed)"),
        (("--models", "--:50%,VVX_500:50%"), "'--' is not a model name"),
    ],
)
def test_bad_emulate_options_are_refused(
    initialized: Path, fleetkey: Fleetkey, args: tuple[str, ...], message: str
) -> None:
    base = ("emulate", "--server", "http://127.0.0.1:1", "--phones", "1", "--sip-port", "0")
    result = fleetkey(*base, *args, code=1)
    assert message in result.stderr


def test_a_macs_file_with_a_bad_line_names_it(
    initialized: Path, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    macs = tmp_path / "macs.txt"
    macs.write_text("mac\n0004f2000001\nnot-a-mac\n")
    result = fleetkey(
        "emulate", "--server", "http://127.0.0.1:1", "--macs", str(macs), "--phones", "2",
        "--sip-port", "0", code=1,
    )  # fmt: skip
    assert f"{macs} line 3:" in result.stderr


def test_too_few_macs_for_the_phones_asked(
    initialized: Path, fleetkey: Fleetkey, tmp_path: Path
) -> None:
    macs = tmp_path / "macs.txt"
    macs.write_text("0004f2000001\n")
    result = fleetkey(
        "emulate", "--server", "http://127.0.0.1:1", "--macs", str(macs), "--phones", "3",
        "--sip-port", "0", code=1,
    )  # fmt: skip
    assert "has 1 MACs, --phones asks for 3" in result.stderr


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("", ("", None)),
        ("/100000000001", ("/100000000001", None)),
        ("/100000000001/", ("/100000000001/", None)),
        ("/lab.cfg", ("", "lab.cfg")),
        ("/100000000001/lab.CFG", ("/100000000001", "lab.CFG")),
        ("/a.cfg", ("", "a.cfg")),
        ("/.cfg", ("/.cfg", None)),  # a master's name has at least 5 characters (domain.md §4)
        ("/dir.cfg/x", ("/dir.cfg/x", None)),
    ],
)
def test_a_server_url_may_name_the_master_configuration(
    path: str, split: tuple[str, str | None]
) -> None:
    assert split_master(path) == split


@pytest.mark.parametrize(
    ("text", "shown", "prefix", "master"),
    [
        ("ftp://u%40x:p%3Aw@127.0.0.1:2121/site/lab.cfg", "ftp://127.0.0.1:2121/site/lab.cfg",
         "/site", "lab.cfg"),
        ("http://127.0.0.1:8080/lab.cfg", "http://127.0.0.1:8080/lab.cfg", "", "lab.cfg"),
        ("http://127.0.0.1:8080/site", "http://127.0.0.1:8080/site", "/site", None),
    ],
)  # fmt: skip
def test_a_server_url_is_shown_and_saved_without_its_login(
    text: str, shown: str, prefix: str, master: str | None
) -> None:
    url = ServerUrl.parse(text, ("http", "ftp"))
    assert (url.redacted, url.prefix, url.master) == (shown, prefix, master)
    if url.scheme == "ftp":
        assert url.login == ("u@x", "p:w")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tftp://127.0.0.1:69", "--server 'tftp://127.0.0.1:69' is not http://HOST:PORT[/prefix] "
         "or ftp://[USER:PASSWORD@]HOST:PORT[/prefix]"),
        ("http://127.0.0.1:http", "--server 'http://127.0.0.1:http': Port could not be cast to "
         "integer value as 'http'"),
        ("ftp://127.0.0.1:70000", "--server 'ftp://127.0.0.1:70000': Port out of range 0-65535"),
    ],
)  # fmt: skip
def test_a_server_url_of_a_scheme_not_allowed_or_a_bad_port_is_refused(
    text: str, message: str
) -> None:
    with pytest.raises(InputError) as refused:
        ServerUrl.parse(text, ("http", "ftp"))
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("http://192.0.2.1:80", "error: 192.0.2.1 is not a loopback address: the emulated phones"),
        ("tftp://10.0.0.1:69", "error: 10.0.0.1 is not a loopback address"),
        ("ftp://[2001:db8::1]:21", "error: cannot resolve '2001:db8::1' to an IPv4 address"),
    ],
)
def test_a_server_the_loopback_phones_cannot_reach_is_refused_up_front(
    initialized: Path, fleetkey: Fleetkey, server: str, message: str
) -> None:
    """Phones on 127.x reach only this machine: another host gave "[Errno 22] Invalid
    argument" per phone (an administrator's trial)."""
    result = fleetkey("emulate", "--server", server, "--phones", "1", "--sip-port", "0", code=1)
    assert result.stderr.startswith(message)
    assert "hint: run the emulator on the server's machine" in result.stderr
    capacity = fleetkey("capacity", "measure", "--server", "http://192.0.2.1:80", code=1)
    assert capacity.stderr.startswith("error: 192.0.2.1 is not a loopback address")


def test_the_summary_wraps_long_counts_at_80_columns_and_never_cuts_them() -> None:
    out = io.StringIO()
    env = Env(DataDir(Path("unused")), out=Console(file=out, width=80, force_terminal=False))
    reasons = {
        "power-on": 10_000,
        "license-expired": 9_000,
        "check-sync": 8_000,
        "config-changed": 7_000,
        "license-poll": 6_000,
    }
    result = {
        "phones": 10_000, "booted": 9_990, "phones_failed": 10, "boots": 40_000,
        "requests": 400_000, "requests_per_s": 5_000.0, "reboots_by_reason": reasons,
        "answers_by_status": {"200": 300_000, "206": 40_000, "404": 50_000, "401": 10_000},
        "protocol": "http",
        "answers": {"GET 200": 300_000, "GET 206": 40_000, "GET 404": 50_000, "GET 401": 10_000},
        "site_license_expiry": {"2030-12-31": 9_990, "none": 10}, "firmware_downloads": 0,
        "firmware_bytes": 0, "virtual_now": "2030-12-31T02:00:00+00:00",
    }  # fmt: skip
    _show(env, result)
    shown = out.getvalue()
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    assert "…" not in shown
    flat = " ".join(line.strip("│ ") for line in shown.splitlines())
    for reason, count in reasons.items():
        assert f"{reason}: {count:,}" in flat.replace("│", " ").replace("  ", " "), shown
    assert "9,990 (failed: 10)" in shown


def test_the_summary_of_boots_over_https_names_https_and_its_user_agent_mark() -> None:
    out = io.StringIO()
    env = Env(DataDir(Path("unused")), out=Console(file=out, width=200, force_terminal=False))
    result = {
        "phones": 2, "booted": 2, "phones_failed": 0, "boots": 2, "requests": 10,
        "requests_per_s": 5.0, "reboots_by_reason": {"power-on": 2}, "protocol": "https",
        "answers": {"GET 200": 8, "PUT 201": 2}, "site_license_expiry": {"2030-12-31": 2},
        "firmware_downloads": 0, "firmware_bytes": 0, "virtual_now": "2030-12-31T02:00:00+00:00",
    }  # fmt: skip
    _show(env, result)
    shown = out.getvalue()
    assert "answers (HTTPS)" in shown
    assert "over HTTPS with a User-Agent ending Emulated/fleetkey" in shown
    assert "has no User-Agent" not in shown


@pytest.mark.parametrize("command", ["emulate", "capacity"])
def test_a_model_the_inventory_imports_is_one_emulate_and_capacity_take(
    initialized: Path, fleetkey: Fleetkey, tmp_path: Path, command: str
) -> None:
    """``phones import`` takes VVX_410 (any model name): ``emulate --models`` and ``capacity
    measure --models`` refused it as unknown. Now they get as far as the server (nothing
    listens at port 1: that is the error)."""
    (tmp_path / "phones.csv").write_text("mac,site,model\n0004f2000001,100000000001,VVX_410\n")
    fleetkey(
        "sites", "add", "100000000001", "--name", "Lab", "--tz", "UTC", "--window", "22:00-05:00"
    )
    fleetkey("phones", "import", str(tmp_path / "phones.csv"))
    shown = fleetkey("phones", "list", "--json").stdout
    assert '"VVX_410"' in shown
    args = (
        ("emulate", "--server", "http://127.0.0.1:1", "--phones", "1", "--sip-port", "0")
        if command == "emulate"
        else ("capacity", "measure", "--server", "http://127.0.0.1:1")
    )
    result = fleetkey(*args, "--models", "VVX_410:100%", code=1)
    assert "nothing listens at http://127.0.0.1:1" in result.stderr
    assert "model" not in result.stderr


@pytest.mark.parametrize(
    ("protocol", "answers", "shown", "said"),
    [
        ("tftp", {"RRQ DATA": 30, "WRQ ACK": 20}, "WRQ ACK: 20", "as RRQ and WRQ; TFTP has no"),
        ("ftp", {"RETR 226": 30, "STOR 226": 20}, "STOR 226: 20", "as RETR and STOR; FTP has no"),
        ("http", {"GET 200": 30, "PUT 201": 20}, "PUT 201: 20", "over HTTP with a User-Agent"),
    ],
)
def test_the_summary_tells_answers_and_how_they_are_recorded_in_the_protocols_words(
    protocol: str, answers: dict[str, int], shown: str, said: str
) -> None:
    """Over TFTP the table said ``PUT 201`` (the server recorded WRQ, 201 or 204) and the note
    spoke of HTTP User-Agents only."""
    out = io.StringIO()
    env = Env(DataDir(Path("unused")), out=Console(file=out, width=200, force_terminal=False))
    result = {
        "phones": 10, "booted": 10, "phones_failed": 0, "boots": 10, "requests": 50,
        "requests_per_s": 5.0, "reboots_by_reason": {"power-on": 10},
        "answers_by_status": {"200": 30, "201": 20}, "protocol": protocol, "answers": answers,
        "site_license_expiry": {"2030-12-31": 10}, "firmware_downloads": 0,
        "firmware_bytes": 0, "virtual_now": "2030-12-31T02:00:00+00:00",
    }  # fmt: skip
    _show(env, result)
    text = out.getvalue()
    assert f"answers ({protocol.upper()})" in text
    assert shown in text
    assert said in text
    if protocol != "http":
        assert "HTTP" not in text
        assert "PUT" not in text


@pytest.mark.parametrize("protocol", ["http", "ftp"])
def test_the_note_and_warning_under_the_summary_wrap_between_words_at_80_columns(
    protocol: str,
) -> None:
    """The CLI's console does not wrap what it prints (soft wrap): the ~250-character `note:`
    went out as one line."""
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False, soft_wrap=True)  # as the CLI's
    env = Env(DataDir(Path("unused")), out=console)
    result = {
        "phones": 3, "booted": 3, "phones_failed": 0, "boots": 3, "requests": 30,
        "requests_per_s": 5.0, "reboots_by_reason": {"power-on": 3},
        "answers_by_status": {"200": 30}, "protocol": protocol, "answers": {"GET 200": 30},
        "site_license_expiry": {"none": 3}, "firmware_downloads": 0,
        "firmware_bytes": 0, "virtual_now": "2030-12-31T02:00:00+00:00",
    }  # fmt: skip
    _show(env, result)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    flat = " ".join(line.rstrip() for line in lines)
    assert "warning: no phone holds a site license" in flat
    assert "models and firmware are left as they are" in flat  # the note, whole
    assert "`fleetkey fetches --path '*license.cfg'`" in flat  # no word broken


def test_a_default_emulated_boot_fits_the_servers_default_ftp_login_limit() -> None:
    """All the boots the emulator has in progress by default may be logging in at once over
    FTP (a site's phones powered on together): the server's default admits them all, so a
    default trial shows no 421 (docs/serve.md, Admission)."""
    from fleetkey.cli.emulate import emulate
    from fleetkey.cli.serve import serve

    def default(command: click.Command, name: str) -> object:
        (option,) = [p for p in command.params if p.name == name]
        return option.default

    assert default(serve, "ftp_max_logins") >= default(emulate, "concurrency")  # type: ignore[operator]
